"""The signer: settle the log, verify every lane from the witness's last checkpoint to its head, then sign,
witness, store and mail a checkpoint of the heads; or refuse, alert and sign nothing (AuditChainBroken).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import NoReturn, overload

from lab.audit.auditor_mail import _alert, _mail_checkpoint
from lab.audit.backdating import BackdatingCheck, unsettled_checkpoint_problem
from lab.audit.canonical import GENESIS_HASH, utc_timestamp
from lab.audit.chain_checks import verify_records
from lab.audit.chain_walk import VerifyResult
from lab.audit.checkpoint_rows import checkpoint_store
from lab.audit.checkpoints import (
    Checkpoint,
    checkpoint_is_settled,
    checkpoint_lanes,
    checkpoint_signature_is_valid,
    sign_checkpoint,
)
from lab.audit.configured import key_id, key_ring, record_key, signing_key, witness_sink
from lab.audit.database_verify import _first
from lab.audit.head_rows import head_rows_problem, lane_records
from lab.audit.lane_heads import LaneHead, lanes_checkpoint_head
from lab.audit.models import AuditCheckpoint, AuditRecord
from lab.audit.problems import ChainProblem
from lab.audit.reading import records_in_seq_order
from lab.audit.restore_marks import restores_in
from lab.audit.restore_point import deleted_past, restore_point_in_database
from lab.audit.settling import RecordWatch, settle
from lab.audit.witness import WitnessError, WitnessSink
from lab.audit.witness_check import parse_timestamp
from lab.lib.clock import database_now

logger = logging.getLogger(__name__)


class AuditChainBroken(Exception):
    """The chain, or the witness it is signed into, failed the signer's check: nothing was signed."""

    def __init__(self, problem: ChainProblem) -> None:
        super().__init__(f"{problem.kind} {problem.place}: {problem.message}")
        self.problem = problem


@overload
def checkpoint_write(*, reason: str = ..., due_after: None = ...) -> AuditCheckpoint: ...


@overload
def checkpoint_write(*, reason: str = ..., due_after: timedelta) -> AuditCheckpoint | None: ...


def checkpoint_write(
    *, reason: str = "schedule", due_after: timedelta | None = None
) -> AuditCheckpoint | None:
    """Settle the log (lab/audit/settling.py), verify every lane from the last witnessed checkpoint to its
    head, then sign the lane heads as they were settled in one checkpoint (CHECKPOINT_FORMAT_SETTLED),
    append it to the witness and store it. Also when nothing happened since the last one (a silent gap
    shows). Never signs what it did not verify: on a problem nothing is signed, an alert goes out,
    AuditChainBroken.

    due_after (beat's task, sent several times an interval: workers/tasks.py): sign only when the witness's
    last checkpoint is at least that old on the database's clock, or there is none; otherwise return None,
    settling and signing nothing. A send beat lost or a run that failed then costs one
    tick, not an interval: sent once an interval, the next checkpoint came two intervals after the last, a
    coverage_gap the verifiers report for good. Every other caller (exports, commands) signs now."""
    sink = witness_sink()
    try:
        return _checkpoint_sign(sink, reason=reason, due_after=due_after)
    except WitnessError as unusable:
        # A witness that cannot be locked, read or appended to stops the signing as a broken chain does, and
        # as loudly: it used to raise before anyone was told, and beat retried into the same error every
        # interval.
        _refuse(unusable.problem)


def _checkpoint_sign(
    sink: WitnessSink, *, reason: str, due_after: timedelta | None = None
) -> AuditCheckpoint | None:
    with sink.lock():
        last = sink.last()
        # Judged under the witness's lock, on the clock checkpoints are signed on: a second signer that held
        # the lock first has just signed, so this one is not due.
        if due_after is not None and last is not None and not _is_due(last, due_after):
            return None
        settled_seq, settled_at = settle()
        verified = _verify_since(sink, last, settled_seq=settled_seq)
        if verified.result.problem is not None:
            _refuse(verified.result.problem)
        # Every lane's head as settled: those the walk reached up to the settled seq, and those of lanes
        # nothing was written to since. Records committed after the settling were verified by the walk too
        # but are left to the next checkpoint: signed here, they could give this checkpoint a seq above that
        # of a record still in flight, which the next checkpoint would then cover below this one's seq.
        lanes = {head[0]: head for head in (checkpoint_lanes(last) if last is not None else ())}
        lanes.update(verified.settled_heads)
        heads = tuple(lanes[lane] for lane in sorted(lanes))
        seq, head_hash = lanes_checkpoint_head(heads)
        signed = sign_checkpoint(
            private_key=signing_key(),
            key_id=key_id(),
            seq=seq,
            head_hash=head_hash,
            # The database's clock, as the records' (freshness and coverage compare the two), read while
            # every lane was held: every record this checkpoint does not cover was timed after it.
            signed_at=utc_timestamp(settled_at),
            lanes=heads,
            is_settled=True,
        )
        # Not witnessed (WitnessError), so not stored either: the database holds only what the witness does.
        sink.append(signed)
        # Stored under the witness's lock too, so the rows (by pk) are in the witness's order, which
        # verify_checkpoints requires: stored once the lock was released, a second signer could store its
        # later checkpoint first, a rollback for good. An INSERT that fails leaves a witnessed checkpoint
        # the database lacks, which no check minds (the witness must hold every row, not the reverse) and
        # the next signer continues from.
        row = checkpoint_store(signed, reason=reason)
    logger.info("audit checkpoint signed seq=%s witness=%s", signed.seq, sink.location)
    _mail_checkpoint(signed)
    return row


def audit_chain_check() -> ChainProblem | None:
    """The signer's check on its own, signing nothing: the chain from the last witnessed checkpoint on (or
    the witness's own problem, when it cannot be read)."""
    sink = witness_sink()
    try:
        with sink.lock():
            return _verify_since(sink, sink.last()).result.problem
    except WitnessError as unusable:
        return unusable.problem


@dataclass(frozen=True)
class _Verified:
    result: VerifyResult
    # Each lane's last record at or below the settled seq the walk verified (lanes it reached only).
    settled_heads: Mapping[int, LaneHead]


def _verify_since(sink: WitnessSink, last: Checkpoint | None, *, settled_seq: int | None = None) -> _Verified:
    """Walk the records after the last witnessed checkpoint, lane by lane from the heads it signs (all of
    them when there is none): hashes, links, macs, and the backdating rule against it; then check every
    lane's head row against the walk. settled_seq: also note each lane's last record at or below it."""
    starts: dict[int, LaneHead] = {}
    if last is not None:
        problem = _witnessed_start_problem(last, sink) or _unsettled_last_problem(sink, last)
        if problem is not None:
            return _Verified(VerifyResult(0, last.seq, last.head_hash, problem), {})
        starts = {head[0]: head for head in checkpoint_lanes(last)}
    records = RecordWatch(
        BackdatingCheck(_since_restore(sink, last), public_key=key_ring()) if last is not None else None,
        settled_seq,
    )
    result = verify_records(
        records.watch(records_in_seq_order(after=starts)), record_key=record_key(), lane_starts=starts
    )
    problem = _first([result.problem, records.problem])
    if problem is not None:
        return _Verified(replace(result, problem=problem), {})
    problem = head_rows_problem({**starts, **result.lanes})
    if problem is not None:
        return _Verified(replace(result, problem=problem), {})
    return _Verified(result, records.settled_heads)


def _since_restore(sink: WitnessSink, last: Checkpoint) -> list[Checkpoint]:
    """What the records after the witness's last line are judged by: that line, after the last restore marker
    before it when there is one (a record must then have a seq above the marker's lost range, which a
    checkpoint signed since with nothing new signs a seq below)."""
    if last.restore is not None:
        return [last]
    witnessed, _ = sink.read_all()
    for checkpoint in reversed(witnessed[:-1]):
        if checkpoint.restore is not None and checkpoint_signature_is_valid(
            checkpoint=checkpoint, public_key=key_ring()
        ):
            return [checkpoint, last]
    return [last]


def _is_due(last: Checkpoint, due_after: timedelta) -> bool:
    """Whether the witness's last checkpoint is at least `due_after` old on the database's clock. Its date is
    believed only once its signature holds, and only when it is not ahead of that clock: a line appended with
    a date ahead (forged, or signed before the database's clock was stepped back) kept the scheduled signer
    quiet for good, without an alert. Such a line is due, and the signing that follows refuses it and alerts
    (bad_checkpoint_signature; the witness refusing to go back in time)."""
    if not checkpoint_signature_is_valid(checkpoint=last, public_key=key_ring()):
        return True
    try:
        age = database_now() - parse_timestamp(last.signed_at)
    except ValueError:  # a date of the right form that is no date: the signing names the line
        return True
    return age < timedelta(0) or age >= due_after


# What the operator of a database restored from a backup does about the signer's refusal.
_AFTER_A_RESTORE = (
    " (after a database restore: stop every process and run `manage.py audit_restore`, which signs a restore"
    " marker naming the seqs lost)"
)


def _after_a_restore(sink: WitnessSink) -> str:
    """What the signer's refusal of a lane head the records no longer hold adds: the advice to run
    audit_restore only when the database looks restored (it holds a witnessed checkpoint in full, and no
    record written after a later one whose records it lacks: deleted_past); the deletion, when it does not."""
    witnessed, problem = sink.read_all()
    if problem is not None:
        return ""
    key = key_ring()
    restores, problem = restores_in(witnessed, public_key=key, is_witness=True)
    if problem is not None:
        return ""
    point = restore_point_in_database(witnessed, restores, key)
    if point is None:
        return ""
    deleted = deleted_past(witnessed, restores, point, key)
    if deleted is not None:
        return f" (not a database restore: {deleted.message})"
    return _AFTER_A_RESTORE


def _witnessed_start_problem(last: Checkpoint, sink: WitnessSink) -> ChainProblem | None:
    if not checkpoint_signature_is_valid(checkpoint=last, public_key=key_ring()):
        return ChainProblem(
            last.seq,
            None,
            "bad_checkpoint_signature",
            f"the witness's last checkpoint (seq {last.seq}) is not signed by this signer's key (nor by a"
            " retired one it names): the signing key was replaced, or the witness line forged",
        )
    for lane, position, seq, head_hash in checkpoint_lanes(last):
        stored = AuditRecord.objects.filter(seq=seq).values_list("hash", flat=True).first()
        if stored is None:
            present = lane_records(lane).order_by("-seq").values_list("seq", flat=True).first() or 0
            return ChainProblem(
                present + 1,
                None,
                "truncated_after_checkpoint",
                f"the witness signed lane {lane} up to #{position} (seq {seq}) at {last.signed_at} but the"
                f" lane's records end before it: seq {present + 1} onwards removed{_after_a_restore(sink)}",
                lane if last.lanes else None,
            )
        if stored != head_hash:
            return ChainProblem(
                seq,
                None,
                "checkpoint_mismatch",
                f"record seq {seq} (lane {lane} #{position}) does not have the hash the witness signed at"
                f" {last.signed_at}: the chain up to seq {seq} was rewritten{_after_a_restore(sink)}",
                lane if last.lanes else None,
            )
    if last.seq == 0 and last.head_hash != GENESIS_HASH:
        return ChainProblem(
            0,
            None,
            "checkpoint_mismatch",
            f"the witness's checkpoint of the empty log (signed at {last.signed_at}) does not sign the"
            " genesis hash",
        )
    return None


def _unsettled_last_problem(sink: WitnessSink, last: Checkpoint) -> ChainProblem | None:
    """A last checkpoint signed as not settled after a settled one (backdating.unsettled_checkpoint_problem):
    signed by someone else holding the key, so that the backdating rule, judged against it alone, skipped
    the record backdated after it. The whole witness is read only when the last one is not settled (a log
    from before settling, until the first settled checkpoint)."""
    if checkpoint_is_settled(checkpoint=last, public_key=key_ring()):
        return None
    witnessed, problem = sink.read_all()
    return problem or unsettled_checkpoint_problem(witnessed, public_key=key_ring())


def _refuse(problem: ChainProblem) -> NoReturn:
    _alert(problem)
    raise AuditChainBroken(problem)
