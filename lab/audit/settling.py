"""Settling the log before a checkpoint, and what the walks read besides the chains: the seq up to which every
record is written or never will be, the clock then, and the records a settled checkpoint may sign.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from lab.audit import canonical, chain_checks, lane_heads, problems
from lab.audit.backdating import BackdatingCheck
from lab.audit.models import AuditHead, AuditRecord
from lab.lib.clock import database_now

# Settling: every lane's head row locked in id order (waiting for the appends in flight: each holds its
# lane's row until it commits or rolls back, and takes its seq and reads its time only once it holds it),
# then the sequence's value and the database's clock. No seq at or below that value can still be committed.
# An empty log may rewind its sequence at the next append (lanes._FIRST_SEQ_SQL): nothing is settled then. A
# sequence never called since its setval (a lab migrated to lanes that has not appended since) has handed
# out no seq above the records'.
_LOCK_EVERY_LANE_SQL = "SELECT id FROM audit_audithead ORDER BY id FOR UPDATE"
_SETTLED_SQL = (
    "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM audit_auditrecord) THEN 0"
    " ELSE COALESCE(pg_sequence_last_value('audit_auditrecord_seq'),"
    " (SELECT max(seq) FROM audit_auditrecord)) END, pg_catalog.clock_timestamp()"
)


def settle() -> tuple[int, datetime]:
    """The seq up to which the log is settled (every record at or below it committed, or never to be) and
    the database's clock then, in a transaction of its own that lets the lanes go as soon as it has read
    them: appends wait for it only while it waits for those already in flight.

    Every record committed later takes its lane after this, so its seq is above the settled one and its time
    (read after its lane's lock: lanes._NEXT_SEQ_AND_POLICY) not before the clock read here, which is what
    a settled checkpoint signs and what backdating.BackdatingCheck holds the next records to."""
    if connection.vendor != "postgresql":
        # The embedded SQLite: one writer at a time; the head row's no-op update takes the database's write
        # lock, which an append holds from its own no-op update to its commit (records._append_portable).
        with transaction.atomic():
            AuditHead.objects.filter(id=1).update(seq=F("seq"))
            settled = AuditRecord.objects.aggregate(last=Max("seq"))["last"] or 0
            return int(settled), timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOCK_EVERY_LANE_SQL)
        cursor.execute(_SETTLED_SQL)
        row = cursor.fetchone()
    assert row is not None and isinstance(row[1], datetime)
    return int(row[0]), row[1]


class RecordWatch:
    """What the walk's records say besides their chain, read as the walk reads them: the backdating rule
    (backdating.BackdatingCheck) and, for the signer, each lane's last record at or below the settled seq.

    Made before the walk and asked for its problem after it: a record no checkpoint covers is judged against
    the database's clock then (every record the walk read was committed, and timed, before it), so one
    appended during the walk is no false alarm and one dated ahead of the clock is "future_dated"."""

    def __init__(self, backdating: BackdatingCheck | None, settled_seq: int | None = None) -> None:
        self.backdating = backdating
        self.settled_seq = settled_seq
        self.settled_heads: dict[int, lane_heads.LaneHead] = {}
        self._finished = False
        if backdating is not None:
            backdating.start(database_now())

    def watch(
        self, records: Iterator[dict[str, object] | chain_checks.Unreadable]
    ) -> Iterator[dict[str, object] | chain_checks.Unreadable]:
        for line, record in enumerate(records, start=1):
            if isinstance(record, dict):
                seq = int(str(record["seq"]))
                is_laned = canonical.is_laned(record)
                lane = int(str(record["lane"])) if is_laned else 1
                lane_seq = int(str(record["lane_seq"])) if is_laned else seq
                if self.backdating is not None:
                    self.backdating.see(
                        seq=seq,
                        lane=lane,
                        lane_seq=lane_seq,
                        occurred_at=str(record["occurred_at"]),
                        line=line,
                    )
                if self.settled_seq is not None and seq <= self.settled_seq:
                    self.settled_heads[lane] = (lane, lane_seq, seq, str(record["hash"]))
            yield record

    @property
    def problem(self) -> problems.ChainProblem | None:
        if self.backdating is None:
            return None
        if not self._finished:
            self._finished = True
            self.backdating.finish(database_now())
        return self.backdating.problem
