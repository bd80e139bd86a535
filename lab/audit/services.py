"""Checkpoints (verified, signed, witnessed outside the database), verification from the database, and exports
of the audit chain. The signing and record keys come from settings (outside the database); auditors pin the
published public key and keep their own copy of the witness log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import NoReturn, overload

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import DatabaseError, transaction
from django.db.models import Q, QuerySet

from lab.audit.canonical import GENESIS_HASH, encode_canonical, utc_timestamp
from lab.audit.chain_checks import verify_checkpoints, verify_records
from lab.audit.chain_walk import VerifyResult
from lab.audit.checkpoints import (
    Checkpoint,
    RestoreMark,
    checkpoint_is_settled,
    checkpoint_lanes,
    checkpoint_signature_is_valid,
    sign_checkpoint,
)
from lab.audit.keys import KeyRing, key_id_of, load_private_key, load_public_key, load_record_key
from lab.audit.lane_heads import LaneHead, lanes_checkpoint_head, lanes_from_json, lanes_to_json
from lab.audit.models import AuditCheckpoint, AuditHead, AuditRecord
from lab.audit.problems import ChainProblem, problem_rank
from lab.audit.reading import first_record_time, records_in_seq_order
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.audit.restore_marks import Restore, first_settled_after, loses_one_of, restores_in, superseded_by
from lab.audit.settling import RecordWatch, settle
from lab.audit.verify import write_export
from lab.audit.witness import (
    BackdatingCheck,
    FileWitness,
    WitnessError,
    WitnessSink,
    check_witness,
    parse_timestamp,
    unsettled_checkpoint_problem,
    witness_from_url,
)
from lab.lib.clock import database_now
from lab.lib.mail import MailNotSent, mail_send

logger = logging.getLogger(__name__)


class AuditChainBroken(Exception):
    """The chain, or the witness it is signed into, failed the signer's check: nothing was signed."""

    def __init__(self, problem: ChainProblem) -> None:
        super().__init__(f"{problem.kind} {problem.place}: {problem.message}")
        self.problem = problem


@cache
def _signing_key(raw: str) -> Ed25519PrivateKey:
    return load_private_key(raw)


def signing_key() -> Ed25519PrivateKey:
    return _signing_key(settings.AUDIT_SIGNING_KEY)


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def key_id() -> str:
    return key_id_of(public_key())


@cache
def _retired_public_keys(texts: tuple[str, ...]) -> tuple[Ed25519PublicKey, ...]:
    return tuple(load_public_key(text) for text in texts)


def key_ring(current: Ed25519PublicKey | None = None) -> KeyRing:
    """The keys checkpoints are checked with: the signer's own (or the pinned one, `current`) and those
    AUDIT_RETIRED_PUBLIC_KEYS names, so that the checkpoints a rotated key signed still verify, each with
    the key its key_id names."""
    return KeyRing(current or public_key(), _retired_public_keys(tuple(settings.AUDIT_RETIRED_PUBLIC_KEYS)))


@cache
def _record_key(raw: str) -> bytes:
    return load_record_key(raw)


def record_key() -> bytes:
    return _record_key(settings.AUDIT_RECORD_KEY)


def witness_sink() -> WitnessSink:
    return witness_from_url(settings.AUDIT_WITNESS)


# --- the signer ---------------------------------------------------------------------------------------


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
    # The heads are read after the walk: a record and its lane's head move commit together, so a head is at
    # or past every genuine record the walk saw in its lane; past it only by records committed since, which
    # must now be there.
    walked = {**starts, **result.lanes}
    for lane, position, head_hash in AuditHead.objects.order_by("id").values_list("id", "seq", "hash"):
        problem = _head_problem(lane, position, head_hash, walked.get(lane))
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


def _head_problem(lane: int, position: int, head_hash: str, walked: LaneHead | None) -> ChainProblem | None:
    """The head row of a lane against the last record the walk verified in it."""
    walked_position, walked_seq, walked_hash = (
        (walked[1], walked[2], walked[3]) if walked else (0, 0, GENESIS_HASH)
    )
    if position == walked_position and head_hash != walked_hash:
        return ChainProblem(
            walked_seq or None,
            None,
            "head_mismatch",
            f"lane {lane}'s head row does not hold the hash of its record #{position} (seq {walked_seq}):"
            " the head row was changed",
            lane,
        )
    if position < walked_position or (
        position > walked_position and not _lane_records(lane).filter(lane_seq=walked_position + 1).exists()
    ):
        return ChainProblem(
            walked_seq + 1,
            None,
            "head_mismatch",
            f"lane {lane}'s head row says #{position} but its records end at #{walked_position}"
            f" (seq {walked_seq}): the head row was reset or the records after seq {walked_seq} were removed",
            lane,
        )
    return None


def _lane_records(lane: int) -> QuerySet[AuditRecord]:
    """The records of a lane; lane 1 includes the records from before lanes."""
    if lane == 1:
        return AuditRecord.objects.filter(Q(lane=1) | Q(lane_seq__isnull=True))
    return AuditRecord.objects.filter(lane=lane, lane_seq__isnull=False)


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
            present = _lane_records(lane).order_by("-seq").values_list("seq", flat=True).first() or 0
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
    """A last checkpoint signed as not settled after a settled one (witness.unsettled_checkpoint_problem):
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


def _alert(problem: ChainProblem) -> None:
    logger.error(
        "audit chain check failed, checkpoint NOT signed: kind=%s seq=%s line=%s",
        problem.kind,
        problem.seq,
        problem.line,
    )
    if not settings.AUDIT_ALERT_EMAILS:
        return
    subject = f"[{settings.LAB_NAME}] audit checkpoint refused: {problem.kind} {problem.place}"
    message = EmailMessage(
        subject=" ".join(subject.split()),
        body=f"The signer refused to sign the audit chain.\n\n{problem.kind} {problem.place}:"
        f" {problem.message}\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(settings.AUDIT_ALERT_EMAILS),
    )
    # The refusal (AuditChainBroken, the export's problem) is the outcome, whatever becomes of the mail.
    _mail_or_warn(message, what="alert", about=f"kind={problem.kind}")


def _mail_or_warn(message: EmailMessage, *, what: str, about: str) -> str | None:
    """Send an audit mail; one that fails is a warning that names no address (smtplib's refusal names every
    recipient, so neither it nor its traceback is logged), never an error of what sent it. Why it was not
    sent (None: sent)."""
    try:
        mail_send(message)
    except MailNotSent as error:  # MailRefused is one: a server's refusal, or an address it cannot encode
        logger.warning("audit %s e-mail could not be sent %s reason=%s", what, about, error)
        return str(error)
    except Exception as error:
        logger.warning("audit %s e-mail could not be sent %s error=%s", what, about, type(error).__name__)
        return type(error).__name__
    return None


def mail_checkpoint(checkpoint: Checkpoint) -> str | None:
    """Mail a witnessed checkpoint (or restore marker) to the auditors (AUDIT_WITNESS_EMAILS), for their copy
    of the witness; a mail that fails is a warning, and why is returned (None: sent, or nobody to send to)."""
    return _mail_checkpoint(checkpoint)


def _mail_checkpoint(checkpoint: Checkpoint) -> str | None:
    if not settings.AUDIT_WITNESS_EMAILS:
        return None
    message = EmailMessage(
        subject=f"[{settings.LAB_NAME}] audit {'restore marker' if checkpoint.restore else 'checkpoint'}"
        f" seq {checkpoint.seq}",
        body=checkpoint.to_line() + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(settings.AUDIT_WITNESS_EMAILS),
    )
    # The witness log is the durable copy and the checkpoint is already in it and stored: a lost mail is a
    # warning, not a failed checkpoint. Before, an address Django cannot encode raised UnicodeError out of
    # checkpoint_write: every export answered 500, every scheduled checkpoint failed.
    return _mail_or_warn(message, what="checkpoint", about=f"seq={checkpoint.seq}")


# --- after a database restore ------------------------------------------------------------------------


def restore_point_in_database(
    witnessed: Sequence[Checkpoint], restores: Sequence[Restore], key: KeyRing
) -> int | None:
    """The index of the last witnessed checkpoint the database holds in full (every lane head it signs, with
    the signed hash), among those no restore marker superseded and none at or after a marker that names lost a
    record the database holds (and no marker after it, up to that checkpoint, kept: a backup older than that
    marker, restored again); None: none."""
    lost = [restore.mark for restore in restores]
    present: list[tuple[int, int]] = []
    if lost:
        in_lost = Q()
        for mark in lost:
            in_lost |= Q(seq__range=(mark.lost_from, mark.lost_to))
        rows = AuditRecord.objects.filter(in_lost).values_list("seq", "lane", "lane_seq")
        present = [(seq, lane if lane_seq is not None else 1) for seq, lane, lane_seq in rows]
    for index in range(len(witnessed) - 1, -1, -1):
        checkpoint = witnessed[index]
        if any(superseded_by(restore, index) for restore in restores):
            continue
        if loses_one_of(restores, index, present):
            continue
        heads = checkpoint_lanes(checkpoint)
        if not heads or not checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=key):
            continue
        stored = dict(
            AuditRecord.objects.filter(seq__in=[head[2] for head in heads]).values_list("seq", "hash")
        )
        if all(stored.get(seq) == head_hash for _, _, seq, head_hash in heads):
            return index
    return None


@dataclass(frozen=True)
class RecordsDeleted:
    """What no restore leaves: the database lacks records of a witnessed checkpoint after the restore point
    (restore_marks.first_settled_after) yet holds a record numbered after it was signed."""

    checkpoint: Checkpoint
    floor: int  # the seq no record of a backup lacking it can be above
    missing: LaneHead | None  # a lane head it signs that the database does not hold with its hash
    record_seq: int  # the first record the database holds above floor

    @property
    def message(self) -> str:
        checkpoint = self.checkpoint
        what = "restore marker" if checkpoint.restore is not None else "checkpoint"
        lacks = (
            f"lacks lane {self.missing[0]} #{self.missing[1]} (seq {self.missing[2]}), which the witnessed"
            f" {what} of seq {checkpoint.seq} signed at {checkpoint.signed_at} signs"
            if self.missing is not None
            else f"holds records the witnessed {what} of seq {checkpoint.seq} signed at"
            f" {checkpoint.signed_at} names lost (a backup from before it)"
        )
        return (
            f"the database {lacks}, yet holds seq {self.record_seq}, numbered after that was signed (above"
            f" {self.floor}): no backup holds records written after a checkpoint whose records it lacks:"
            " records were deleted"
        )


def deleted_past(
    witnessed: Sequence[Checkpoint], restores: Sequence[Restore], point: int, key: KeyRing
) -> RecordsDeleted | None:
    """The deletion the database shows past the restore point at index point (RecordsDeleted), or None."""
    later = first_settled_after(witnessed, restores, point, public_key=key)
    if later is None:
        return None
    index, floor = later
    above = AuditRecord.objects.filter(seq__gt=floor).order_by("seq").values_list("seq", flat=True).first()
    if above is None:
        return None
    checkpoint = witnessed[index]
    heads = checkpoint_lanes(checkpoint)
    stored = dict(AuditRecord.objects.filter(seq__in=[head[2] for head in heads]).values_list("seq", "hash"))
    missing = next((head for head in heads if stored.get(head[2]) != head[3]), None)
    return RecordsDeleted(checkpoint, floor, missing, above)


# --- verification from the database -------------------------------------------------------------------


def _as_checkpoint(row: AuditCheckpoint) -> Checkpoint:
    """The row as a checkpoint; ValueError when its lanes are not a checkpoint's lanes in JSON, or its restore
    not a restore marker's mark."""
    try:
        lanes = lanes_from_json(json.loads(row.lanes)) if row.lanes else ()
        restore = RestoreMark.from_json(json.loads(row.restore)) if row.restore else None
    except RecursionError as error:  # brackets nested too deeply
        raise ValueError(str(error)) from error
    if restore is not None and not lanes:
        raise ValueError("a restore marker signs lane heads")
    return Checkpoint(
        seq=row.seq,
        head_hash=row.head_hash,
        signed_at=row.signed_at,
        key_id=row.key_id,
        signature=row.signature,
        lanes=lanes,
        restore=restore,
    )


def checkpoint_store(checkpoint: Checkpoint, *, reason: str) -> AuditCheckpoint:
    """Store a signed (and witnessed) checkpoint as a row."""
    return AuditCheckpoint.objects.create(
        seq=checkpoint.seq,
        head_hash=checkpoint.head_hash,
        signed_at=checkpoint.signed_at,
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
        reason=reason,
        lanes=lanes_to_json(checkpoint.lanes),
        restore=encode_canonical(checkpoint.restore.to_json()) if checkpoint.restore is not None else "",
    )


def _stored_checkpoints(
    rows: QuerySet[AuditCheckpoint],
) -> tuple[list[Checkpoint], ChainProblem | None]:
    """The checkpoint rows in pk order as checkpoints, leaving out those that cannot be read, and the problem
    of the first of these: a row the app's role inserted with junk for lanes crashed every verification and
    export for good, since rows can be inserted but not deleted by it."""
    checkpoints: list[Checkpoint] = []
    problem: ChainProblem | None = None
    for line, row in enumerate(rows.order_by("pk"), start=1):
        try:
            checkpoints.append(_as_checkpoint(row))
        except ValueError as error:
            problem = problem or ChainProblem(
                row.seq,
                line,
                "malformed",
                f"checkpoint row {row.pk} (seq {row.seq}, signed at {row.signed_at!r}): its lanes are not a"
                f" checkpoint's ({error}): the signer did not store it",
            )
    return checkpoints, problem


@dataclass(frozen=True)
class DatabaseVerification:
    count: int
    head_seq: int
    checkpoints: int
    problem: ChainProblem | None
    witnessed: int = 0
    lanes: int = 0  # lanes holding records
    restores: tuple[Restore, ...] = ()  # the restore markers the log went through (reported, not problems)


def audit_verify_database(
    *,
    pinned_public_key: Ed25519PublicKey | None = None,
    witness_path: Path | None = None,
    now: datetime | None = None,
) -> DatabaseVerification:
    """Recompute the whole chain with every record's mac, every checkpoint, and the chain against the witness
    log (the configured one, or witness_path: an auditor's copy); name the first broken seq or range.
    now: what the witness's freshness is judged at; by default the database's clock, which records and
    checkpoints are timed on, whatever this host's clock says."""
    key = key_ring(pinned_public_key)
    witness = FileWitness(witness_path) if witness_path is not None else witness_sink()
    # The checkpoint rows, then the witness (which must then hold them all), then the records: every head
    # they sign was committed before them, so the walk, which reads the records as they are when it starts,
    # holds it; a checkpoint signed during a long walk is left out, not taken for a truncation. The records
    # after the last checkpoint read are then the unsigned tail of a live log. The witness is also what the
    # backdating rule judges by (a record no checkpoint of it covers is judged against its last one), and
    # its freshness is judged when it was read.
    rows, rows_problem = _stored_checkpoints(AuditCheckpoint.objects.all())
    witnessed, witness_read_problem = witness.read_all()
    return database_verification(
        rows=rows,
        rows_problem=rows_problem,
        witnessed=witnessed,
        witness_read_problem=witness_read_problem,
        key=key,
        judged_at=now or database_now(),
    )


def database_verification(
    *,
    rows: list[Checkpoint],
    rows_problem: ChainProblem | None,
    witnessed: list[Checkpoint],
    witness_read_problem: ChainProblem | None,
    key: KeyRing,
    judged_at: datetime,
) -> DatabaseVerification:
    """audit_verify_database on checkpoint rows and witness lines read before (lab/audit/restoring.py also
    checks a restore marker it has not appended yet this way)."""
    records = RecordWatch(BackdatingCheck(witnessed, public_key=key))
    result = verify_records(records.watch(records_in_seq_order()), record_key=record_key())
    wanted = {checkpoint.seq for checkpoint in [*rows, *witnessed]}
    wanted.update(head[2] for checkpoint in [*rows, *witnessed] for head in checkpoint_lanes(checkpoint))
    heads = dict(AuditRecord.objects.filter(seq__in=wanted).values_list("seq", "hash"))
    heads[0] = GENESIS_HASH
    last_good = result.head_seq
    is_whole = result.problem is None
    checkpoint_problem = verify_checkpoints(
        [c for c in rows if is_whole or c.seq <= last_good],
        public_key=key,
        heads=heads,
        head_seq=None if not is_whole else last_good,
        lane_heads=result.lanes if is_whole else None,
        absent=result.absent,
    )
    problems = [result.problem, records.problem, checkpoint_problem, rows_problem, witness_read_problem]
    if witness_read_problem is None:
        problems.append(
            check_witness(
                witnessed,
                public_key=key,
                heads=heads,
                head_seq=last_good,
                first_record_at=first_record_time(),
                now=judged_at,
                interval_seconds=settings.AUDIT_CHECKPOINT_SECONDS,
                known=[c for c in rows if checkpoint_signature_is_valid(checkpoint=c, public_key=key)],
                is_chain_whole=is_whole,
                lane_heads=result.lanes,
                absent=result.absent,
            )
        )
    restores = (
        restores_in(witnessed, public_key=key, is_witness=True)[0] if witness_read_problem is None else []
    )
    return DatabaseVerification(
        result.count,
        result.head_seq,
        len(rows),
        _first(problems),
        len(witnessed),
        len(result.lanes),
        tuple(restores),
    )


def _first(problems: list[ChainProblem | None]) -> ChainProblem | None:
    """A problem of the log's integrity before one of the signer's liveness (problem_rank: a
    coverage_gap one lost checkpoint left must not hide a later deletion or rewrite), then the one at the
    lowest seq; on a tie (or no seq), the one found first (records before checkpoints before the witness)."""
    found = [problem for problem in problems if problem is not None]
    if not found:
        return None
    return min(
        found,
        key=lambda problem: (problem_rank(problem), problem.seq if problem.seq is not None else -1),
    )


# --- export -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOutcome:
    path: Path
    records: int
    checkpoints: int
    problem: ChainProblem | None  # why the export could not be recorded or signed, if it could not


def audit_export(
    *, path: Path, actor_id: str | None, actor_role: str, meta: RequestMeta | None = None
) -> ExportOutcome:
    """Write the chain and the checkpoints the database holds, up to the checkpoint that signs the export: the
    export itself is recorded and then signed. When the chain is broken (e.g. a forged record holds the next
    seq) the whole chain is still written, unsigned past the last good checkpoint, and the problem is
    returned."""
    # Nothing is appended to a chain that fails the signer's check: the export shows it as it was found.
    signed: AuditCheckpoint | None = None
    # A checkpoint row that cannot be read is left out of the export, which is then not signed either.
    problem = audit_chain_check() or _stored_checkpoints(AuditCheckpoint.objects.all())[1]
    if problem is not None:
        _alert(problem)
    else:
        try:
            with transaction.atomic():
                audit_append(
                    Entry(
                        action="audit.export",
                        actor_id=actor_id,
                        actor_role=actor_role,
                        outcome="done",
                        rule="auditor_export",
                        purpose="audit",
                        meta=meta or RequestMeta(),
                    )
                )
        except DatabaseError:
            # E.g. a record forged since the check holds the next seq; the signer below names it.
            logger.error("audit export could not be recorded: the chain's next seq is taken")
        try:
            signed = checkpoint_write(reason="export")
        except AuditChainBroken as broken:
            problem = broken.problem
    rows = AuditCheckpoint.objects.all()
    # Signed, the export ends at the checkpoint it just signed: the records appended since (while the signer
    # walked, wrote the witness and mailed it) and the checkpoints signed since are the next export's; in it,
    # no checkpoint covered them and the offline verifier named them an unsigned tail.
    covered = _covered_by(_as_checkpoint(signed)) if signed is not None else None
    checkpoints, rows_problem = _stored_checkpoints(rows.filter(pk__lte=signed.pk) if signed else rows)
    problem = problem or rows_problem
    written = 0

    def counted() -> Iterator[dict[str, object]]:
        nonlocal written
        for record in records_in_seq_order(as_found=True):
            # As found, nothing is Unreadable; the guard is for the type checker.
            if isinstance(record, dict) and (covered is None or covered(record)):
                written += 1
                yield record

    write_export(path=path, records=counted(), checkpoints=checkpoints)
    return ExportOutcome(path=path, records=written, checkpoints=len(checkpoints), problem=problem)


def _covered_by(checkpoint: Checkpoint) -> Callable[[Mapping[str, object]], bool]:
    """Whether a record (as records_in_seq_order gives it) is at or below the head the checkpoint signs of
    its lane; a record from before lanes is in lane 1, up to its head's seq."""
    heads = {lane: (position, seq) for lane, position, seq, _ in checkpoint_lanes(checkpoint)}

    def covered(record: Mapping[str, object]) -> bool:
        if "lane_seq" not in record:
            return 1 in heads and int(str(record["seq"])) <= heads[1][1]
        head = heads.get(int(str(record["lane"])))
        return head is not None and int(str(record["lane_seq"])) <= head[0]

    return covered
