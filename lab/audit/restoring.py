"""After the database was restored from a backup: `manage.py audit_restore`, the audit log's honest way on.

The restored database holds the chain up to some witnessed checkpoint (the restore point), while the witness,
outside it, also holds the checkpoints signed since, whose heads the database no longer reaches; and the
record sequence was restored too, so new records would take seqs the witness already vouched for. The signer
then refuses for good (truncated_after_checkpoint, and later checkpoint_mismatch), which is right: nothing
tells a restore from a deletion. This module moves the sequence past every seq the witness named and signs,
with the checkpoint key the database never holds, a restore marker (checkpoints.RESTORE_FORMAT): a settled
checkpoint of the heads the database holds, naming the restore point, the witness's last checkpoint (which it
supersedes), the seqs lost and who ran it; it is appended to the witness (and mailed to the auditors) like
any checkpoint, and stored. What the verifiers accept across it, and what not: lab/audit/restore_marks.py.

It refuses (RestoreRefused) when the database holds none of the witness's checkpoints in full, and when the
log, with the marker, does not verify as audit_verify will verify it (a record changed, forged or missing up
to the restore point, a record kept past it that is not the one the witness signed, a head row that does not
match its lane): a restore removes the records after a point; it never makes a changed one right. And when
the database holds a record numbered after the first settled checkpoint past the restore point, whose records
it lacks (restore_point.deleted_past): a backup is a snapshot, so none holds a record written after a
checkpoint whose records it lacks; records were deleted. A deletion of every lane's tail past a witnessed
checkpoint cannot be told from a restore: then the marker names the range and the key, in the open.

The restore point skips every checkpoint at or after a restore marker that names lost a record the database
holds (restore_point.restore_point_in_database): a second restore from a backup older than the first marker
continues from a checkpoint before it, and its marker keeps, in a lost range reaching every seq named, the
records that backup holds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DatabaseError, connection, transaction

from lab.audit.auditor_mail import mail_checkpoint
from lab.audit.canonical import utc_timestamp
from lab.audit.chain_checks import verify_records
from lab.audit.checkpoint_rows import _stored_checkpoints, checkpoint_store
from lab.audit.checkpoints import Checkpoint, RestoreMark, sign_checkpoint
from lab.audit.configured import key_id, key_ring, record_key, signing_key, witness_sink
from lab.audit.database_verify import database_verification
from lab.audit.head_rows import head_rows_problem
from lab.audit.lane_heads import lanes_checkpoint_head
from lab.audit.models import AuditCheckpoint
from lab.audit.problems import ChainProblem, problem_rank
from lab.audit.reading import records_in_seq_order
from lab.audit.restore_marks import named_top, restores_in
from lab.audit.restore_point import deleted_past, restore_point_in_database
from lab.audit.settling import RecordWatch, settle
from lab.audit.signer import AuditChainBroken, checkpoint_write
from lab.audit.witness import WitnessError, WitnessSink

logger = logging.getLogger(__name__)

_SEQUENCE_LAST_SQL = "SELECT pg_catalog.pg_sequence_last_value('audit_auditrecord_seq')"
# Never backwards: past every seq the witness named, the sequence's own value and every record's seq.
_SEQUENCE_PAST_SQL = (
    "SELECT pg_catalog.setval('audit_auditrecord_seq', GREATEST(%s,"
    " COALESCE(pg_catalog.pg_sequence_last_value('audit_auditrecord_seq'), 0),"
    " COALESCE((SELECT max(seq) FROM audit_auditrecord), 0)))"
)


# A record past the restore point that is not the one the witness signed: most likely the lab ran between the
# restore and audit_restore, and its records took seqs the restored sequence handed out again.
_SEQS_TAKEN_AGAIN = (
    " (the database holds a record at a seq past the restore point that the witness knows as another: if"
    " processes ran after the restore, their records took seqs the witness had vouched for; restore the"
    " backup again and run audit_restore before starting any process)"
)


class RestoreRefused(Exception):
    """Nothing was signed: why (problem, when the log or the witness failed a check)."""

    def __init__(self, message: str, problem: ChainProblem | None = None) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class RestoreOutcome:
    """restore_point: the witnessed checkpoint the chain continues from; marker: the restore marker signed now
    (None: there was nothing to restore: the database holds the witness's last line in full); sequence: the
    record sequence's value before and after (equal: not moved); checkpoint: the checkpoint signed after the
    marker (the signer's first; None when none was signed)."""

    restore_point: Checkpoint
    marker: Checkpoint | None
    sequence: tuple[int | None, int]
    checkpoint: AuditCheckpoint | None = None
    # Why the marker's e-mail to the auditors (AUDIT_WITNESS_EMAILS) failed; None: sent, or nobody to send to.
    # The marker is witnessed and stored all the same; their copy lacks it until they are sent its line.
    mail_failed: str | None = None


def audit_restore(*, by: str) -> RestoreOutcome:
    """Sign the restore marker (see the module's docstring) and then a checkpoint after it, as the signer
    does; by: who ran it ("staff:<public id>" or "os:<user>"). Safe to run again: once the witness's last
    line is held in full, there is nothing to do (but a checkpoint after a marker that has none yet)."""
    if connection.vendor != "postgresql":
        raise RestoreRefused(
            "audit_restore needs PostgreSQL: the embedded database numbers records one past its last, so a"
            " seq lost in a restore cannot be kept from being taken again"
        )
    sink = witness_sink()
    try:
        with sink.lock():
            outcome = _restore(sink, by=by)
    except WitnessError as unusable:
        raise RestoreRefused(_described(unusable.problem), unusable.problem) from unusable
    last = outcome.marker or outcome.restore_point
    if last.restore is None:
        return outcome
    # The signer's first checkpoint after the marker, so that what is signed next (a privacy receipt's
    # anchor: the newest checkpoint row) is a checkpoint, and to show the signer takes the log on from it.
    try:
        signed = checkpoint_write(reason="restore")
    except AuditChainBroken as broken:
        raise RestoreRefused(
            "the restore marker is witnessed, but the checkpoint after it was refused:"
            f" {_described(broken.problem)}",
            broken.problem,
        ) from broken
    return dataclasses.replace(outcome, checkpoint=signed)


def _restore(sink: WitnessSink, *, by: str) -> RestoreOutcome:
    sink.last()  # a torn or unreadable last line is refused (WitnessError) before anything is read
    witnessed, problem = sink.read_all()
    if problem is not None:
        raise RestoreRefused(_described(problem), problem)
    if not witnessed:
        raise RestoreRefused(
            f"the witness {sink.location} holds no checkpoint: there is nothing to restore from"
        )
    key = key_ring()
    restores, problem = restores_in(witnessed, public_key=key, is_witness=True)
    if problem is not None:
        raise RestoreRefused(_described(problem), problem)
    point = restore_point_in_database(witnessed, restores, key)
    if point is None:
        raise RestoreRefused(
            f"the database holds none of the {len(witnessed)} checkpoints of the witness {sink.location} in"
            " full (every lane head it signs, with the signed hash): a backup older than the witness, or a"
            " log changed since; nothing to continue from"
        )
    if point == len(witnessed) - 1:
        return RestoreOutcome(witnessed[point], None, _move_sequence(named_top(witnessed)))
    settled_seq, settled_at = settle()
    restore_point, superseded = witnessed[point], witnessed[-1]
    signed_at = utc_timestamp(settled_at)
    if signed_at < superseded.signed_at:
        raise RestoreRefused(
            f"the database's clock ({signed_at}) is behind the witness's last checkpoint (signed at"
            f" {superseded.signed_at}): a marker cannot be signed before it; set the database server's clock"
        )
    watch = RecordWatch(None, settled_seq)
    walked = verify_records(watch.watch(records_in_seq_order()), record_key=record_key())
    if walked.problem is not None:
        raise RestoreRefused(_described(walked.problem), walked.problem)
    problem = head_rows_problem(walked.lanes)
    if problem is not None:
        raise RestoreRefused(_described(problem), problem)
    heads = tuple(watch.settled_heads[lane] for lane in sorted(watch.settled_heads))
    seq, head_hash = lanes_checkpoint_head(heads)
    marker = sign_checkpoint(
        private_key=signing_key(),
        key_id=key_id(),
        seq=seq,
        head_hash=head_hash,
        signed_at=signed_at,
        lanes=heads,
        restore=RestoreMark(
            from_seq=restore_point.seq,
            from_signed_at=restore_point.signed_at,
            from_hash=restore_point.head_hash,
            superseded_seq=superseded.seq,
            superseded_signed_at=superseded.signed_at,
            superseded_hash=superseded.head_hash,
            lost_from=restore_point.seq + 1,
            lost_to=named_top(witnessed),
            by=by,
        ),
    )
    rows, problem = _stored_checkpoints(AuditCheckpoint.objects.all())
    if problem is not None:
        raise RestoreRefused(_described(problem), problem)
    # The log with the marker, as audit_verify will see it once it is appended (a problem of the signer's
    # liveness before the restore, a coverage gap, is the auditors' to judge, not a reason to stay stuck).
    verified = database_verification(
        rows=[*rows, marker],
        rows_problem=None,
        witnessed=[*witnessed, marker],
        witness_read_problem=None,
        key=key,
        judged_at=settled_at,
    )
    if verified.problem is not None and problem_rank(verified.problem) == 0:
        problem = verified.problem
        lost = problem.seq is not None and restore_point.seq < problem.seq <= named_top(witnessed)
        raise RestoreRefused(_described(problem) + (_SEQS_TAKEN_AGAIN if lost else ""), problem)
    # After the checks above, so that records taken again after a restore are named as such.
    deleted = deleted_past(witnessed, restores, point, key)
    if deleted is not None:
        missing = deleted.missing
        problem = ChainProblem(
            missing[2] if missing is not None else deleted.record_seq,
            None,
            "truncated_after_checkpoint",
            f"not a restore: {deleted.message}",
            missing[0] if missing is not None else None,
        )
        raise RestoreRefused(_described(problem), problem)
    # Before the marker is witnessed: once it is, a record at a seq it names lost is "backdated".
    sequence = _move_sequence(named_top(witnessed))
    sink.append(marker)
    checkpoint_store(marker, reason="restore")
    logger.warning(
        "audit restore marker signed seq=%s continues_from=%s lost=%s..%s by=%s witness=%s",
        marker.seq,
        restore_point.seq,
        restore_point.seq + 1,
        named_top(witnessed),
        by,
        sink.location,
    )
    mail_failed = mail_checkpoint(marker)
    if mail_failed is not None:
        logger.error(
            "audit restore marker seq=%s signed at %s could not be mailed to the auditors: their copy of the"
            " witness lacks it until they are sent its line",
            marker.seq,
            marker.signed_at,
        )
    return RestoreOutcome(restore_point, marker, sequence, mail_failed=mail_failed)


def _move_sequence(top: int) -> tuple[int | None, int]:
    """Move the record sequence past top (never back); its value before (None: never used) and after."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_SEQUENCE_LAST_SQL)
            before = _one(cursor.fetchone())
            cursor.execute(_SEQUENCE_PAST_SQL, [top])
            after = _one(cursor.fetchone())
    except DatabaseError as error:
        raise RestoreRefused(
            f"the record sequence audit_auditrecord_seq cannot be moved past seq {top} ({error}): run"
            " audit_restore as the database role migrations run as (the app's role may only take seqs)"
        ) from error
    assert after is not None
    return before, after


def _one(row: Sequence[object] | None) -> int | None:
    value = row[0] if row else None
    return int(str(value)) if value is not None else None


def _described(problem: ChainProblem) -> str:
    return f"{problem.kind} {problem.place}: {problem.message}"
