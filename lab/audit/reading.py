"""Reading the audit records back from the database in the chain's canonical shape (what is hashed and
exported), for the signer, `audit_verify` and the export, whatever a superuser left in the rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import BigIntegerField, F, Q, QuerySet
from django.db.models.expressions import RawSQL

from lab.audit.canonical import EXPORT_FIELDS_LANED, utc_timestamp
from lab.audit.chain_checks import Unreadable
from lab.audit.lane_heads import LaneHead
from lab.audit.models import AuditRecord

# A record's columns but its time, which is read as microseconds since the epoch (NULL when infinite): a time
# PostgreSQL holds but no datetime can (infinity, a BC date, year 10000 or later; the app never writes one)
# made psycopg raise a DataError on the whole read, naming no record, so audit_verify died with a traceback,
# the signer stopped without an alert and an export was cut short. Read this way, such a time cannot fail.
_COLUMNS_BUT_TIME = tuple(name for name in EXPORT_FIELDS_LANED if name != "occurred_at")
_TIME_AS_MICROSECONDS = (
    "CASE WHEN isfinite(occurred_at) THEN (extract(epoch FROM occurred_at) * 1000000)::bigint END"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _with_readable_time(records: QuerySet[AuditRecord]) -> QuerySet[AuditRecord]:
    """The records with their time as `stored_time`: microseconds since the epoch on PostgreSQL (None: not
    finite), the datetime elsewhere (the embedded SQLite stores what the app wrote, a time Python made)."""
    if connection.vendor != "postgresql":
        return records.annotate(stored_time=F("occurred_at"))
    # Constant SQL, no input in it.
    return records.annotate(stored_time=RawSQL(_TIME_AS_MICROSECONDS, (), output_field=BigIntegerField()))  # noqa: S611


def _utc_text(stored_time: object) -> str | None:
    """A stored time (from _with_readable_time) as records hash it, or None when no datetime can hold it."""
    try:
        if isinstance(stored_time, int):
            return utc_timestamp(_EPOCH + timedelta(microseconds=stored_time))
        if isinstance(stored_time, datetime):
            return utc_timestamp(stored_time)
    except OverflowError:
        return None
    return None


def _time_as_found(seq: int) -> str:
    """A record's time as the database spells it (only ever read for one the readers cannot take)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT occurred_at::text FROM audit_auditrecord WHERE seq = %s", [seq])
        row = cursor.fetchone()
    return str(row[0]) if row else ""


def _unreadable(record: Mapping[str, object]) -> Unreadable:
    """A record whose time no datetime can hold, as the walk names it: bad_time at its seq."""
    seq, lane, position = int(str(record["seq"])), record["lane"], record["lane_seq"]
    where = f"lane {lane} #{position}" if position is not None else "from before lanes"
    return Unreadable(
        seq,
        "bad_time",
        f"record seq {seq} ({where}) holds the time {_time_as_found(seq)!r}, which no reader can take and the"
        " app never writes (it writes the database's clock): set in the database",
        int(str(lane)) if position is not None else None,
    )


def records_in_seq_order(
    *, after: Mapping[int, LaneHead] | None = None, as_found: bool = False
) -> Iterator[dict[str, object] | Unreadable]:
    """Every record in seq order, or those after the given head of each lane (records of lanes not given:
    all of them), in the chain's canonical shape (with lane and lane_seq for a laned record). A record whose
    time no datetime can hold is given as Unreadable ("bad_time" at its seq) or, as_found (what an
    export writes), with its time as the database spells it, which its hash then does not cover."""
    records = AuditRecord.objects.order_by("seq")
    if after:
        wanted = Q(lane_seq__isnull=False) & ~Q(lane__in=list(after))
        if 1 not in after:
            wanted |= Q(lane_seq__isnull=True)
        for lane, (_, position, seq, _) in after.items():
            # The lane's (lane, lane_seq) index finds them; lane 1 also holds the records from before lanes.
            wanted |= Q(lane=lane, lane_seq__gt=position)
            if lane == 1:
                wanted |= Q(lane_seq__isnull=True, seq__gt=seq)
        records = records.filter(wanted)
    rows = _with_readable_time(records).values_list(*_COLUMNS_BUT_TIME, "stored_time")
    for row in rows.iterator(chunk_size=5000):
        record: dict[str, object] = dict(zip(_COLUMNS_BUT_TIME, row, strict=False))
        occurred_at = _utc_text(row[-1])
        if occurred_at is None:
            if not as_found:
                yield _unreadable(record)
                continue
            occurred_at = _time_as_found(int(str(record["seq"])))
        record["occurred_at"] = occurred_at
        if record["lane_seq"] is None:
            del record["lane"], record["lane_seq"]
        yield record


def first_record_time() -> str | None:
    """The first record's time (None: no record, or a time no reader can take, which the walk names)."""
    if connection.vendor != "postgresql":
        return _utc_text(AuditRecord.objects.order_by("seq").values_list("occurred_at", flat=True).first())
    with connection.cursor() as cursor:
        # Constant SQL, no input in it.
        cursor.execute(f"SELECT {_TIME_AS_MICROSECONDS} FROM audit_auditrecord ORDER BY seq LIMIT 1")  # noqa: S608
        row = cursor.fetchone()
    return None if row is None else _utc_text(row[0])
