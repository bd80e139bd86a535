"""Checkpoints (verified, signed, witnessed outside the database), verification from the database, and exports
of the audit chain. The signing and record keys come from settings (outside the database); auditors pin the
published public key and keep their own copy of the witness log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.mail import send_mail
from django.db import DatabaseError, transaction
from django.utils import timezone

from lab.audit import chain
from lab.audit.models import AuditCheckpoint, AuditHead, AuditRecord
from lab.audit.records import Entry, RequestMeta, audit_append, record_as_chain_dict
from lab.audit.verify import write_export
from lab.audit.witness import FileWitness, WitnessSink, check_witness, witness_from_url

logger = logging.getLogger(__name__)


class AuditChainBroken(Exception):
    """The chain failed the signer's check: nothing was signed."""

    def __init__(self, problem: chain.ChainProblem) -> None:
        super().__init__(f"{problem.kind} at seq {problem.seq}: {problem.message}")
        self.problem = problem


@cache
def _signing_key(raw: str) -> Ed25519PrivateKey:
    return chain.load_private_key(raw)


def signing_key() -> Ed25519PrivateKey:
    return _signing_key(settings.AUDIT_SIGNING_KEY)


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def key_id() -> str:
    return chain.public_key_fingerprint(public_key())[:16]


@cache
def _record_key(raw: str) -> bytes:
    return chain.load_record_key(raw)


def record_key() -> bytes:
    return _record_key(settings.AUDIT_RECORD_KEY)


def witness_sink() -> WitnessSink:
    return witness_from_url(settings.AUDIT_WITNESS)


# --- the signer ---------------------------------------------------------------------------------------


def checkpoint_write(*, reason: str = "schedule") -> AuditCheckpoint:
    """Verify the chain from the last witnessed checkpoint to the head, then sign it, append the checkpoint
    to the witness and store it. Also when nothing happened since the last one (a silent gap shows). Never
    signs what it did not verify: on a problem nothing is signed, an alert goes out, AuditChainBroken."""
    sink = witness_sink()
    with sink.lock():
        last = sink.last()
        verified = _verify_since(last)
        if verified.problem is not None:
            _alert(verified.problem)
            raise AuditChainBroken(verified.problem)
        signed = chain.sign_checkpoint(
            private_key=signing_key(),
            key_id=key_id(),
            seq=verified.head_seq,
            head_hash=verified.head_hash,
            signed_at=chain.utc_timestamp(timezone.now()),
        )
        sink.append(signed)
    row = AuditCheckpoint.objects.create(
        seq=signed.seq,
        head_hash=signed.head_hash,
        signed_at=signed.signed_at,
        key_id=signed.key_id,
        signature=signed.signature,
        reason=reason,
    )
    logger.info("audit checkpoint signed seq=%s witness=%s", signed.seq, sink.location)
    _mail_checkpoint(signed)
    return row


def audit_chain_check() -> chain.ChainProblem | None:
    """The signer's check on its own, signing nothing: the chain from the last witnessed checkpoint on."""
    sink = witness_sink()
    with sink.lock():
        return _verify_since(sink.last()).problem


def _verify_since(last: chain.Checkpoint | None) -> chain.VerifyResult:
    """Walk the records after the last witnessed checkpoint (all of them when there is none): hashes, links
    and macs; then check the head row against the last of them."""
    start_seq, start_hash = 0, chain.GENESIS_HASH
    if last is not None:
        problem = _witnessed_start_problem(last)
        if problem is not None:
            return chain.VerifyResult(0, last.seq, last.head_hash, problem)
        start_seq, start_hash = last.seq, last.head_hash
    result = chain.verify_records(
        _records(after=start_seq),
        start_prev_hash=start_hash,
        start_seq=start_seq + 1,
        record_key=record_key(),
    )
    if result.problem is not None:
        return result
    # The head is read after the walk: a record and its head move commit together, so the head is at or past
    # every genuine record the walk saw; past it only by records committed since, which must now be there.
    head_seq, head_hash = AuditHead.objects.filter(id=1).values_list("seq", "hash").first() or (
        0,
        chain.GENESIS_HASH,
    )
    problem = None
    if head_seq == result.head_seq and head_hash != result.head_hash:
        problem = chain.ChainProblem(
            head_seq,
            None,
            "head_mismatch",
            f"the head row's hash is not that of record seq {head_seq}: the head row was changed",
        )
    elif head_seq < result.head_seq or (
        head_seq > result.head_seq and not AuditRecord.objects.filter(seq=result.head_seq + 1).exists()
    ):
        problem = chain.ChainProblem(
            min(head_seq, result.head_seq) + 1,
            None,
            "head_mismatch",
            f"the head row says seq {head_seq} but the records end at seq {result.head_seq}:"
            f" the head row was reset or the records after seq {result.head_seq} were removed",
        )
    if problem is not None:
        return chain.VerifyResult(result.count, result.head_seq, result.head_hash, problem)
    return result


def _witnessed_start_problem(last: chain.Checkpoint) -> chain.ChainProblem | None:
    if not chain.checkpoint_signature_is_valid(checkpoint=last, public_key=public_key()):
        return chain.ChainProblem(
            last.seq,
            None,
            "bad_checkpoint_signature",
            f"the witness's last checkpoint (seq {last.seq}) is not signed by this signer's key:"
            " the signing key was replaced, or the witness line forged",
        )
    stored = (
        chain.GENESIS_HASH
        if last.seq == 0
        else AuditRecord.objects.filter(seq=last.seq).values_list("hash", flat=True).first()
    )
    if stored is None:
        first_missing = (AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0) + 1
        return chain.ChainProblem(
            first_missing,
            None,
            "truncated_after_checkpoint",
            f"the witness signed seq {last.seq} at {last.signed_at} but the records end before it:"
            f" seq {first_missing} onwards removed",
        )
    if stored != last.head_hash:
        return chain.ChainProblem(
            last.seq,
            None,
            "checkpoint_mismatch",
            f"record seq {last.seq} does not have the hash the witness signed at {last.signed_at}:"
            f" the chain up to seq {last.seq} was rewritten",
        )
    return None


def _alert(problem: chain.ChainProblem) -> None:
    logger.error("audit chain check failed, checkpoint NOT signed: kind=%s seq=%s", problem.kind, problem.seq)
    if not settings.AUDIT_ALERT_EMAILS:
        return
    try:
        send_mail(
            subject=f"[{settings.LAB_NAME}] audit checkpoint refused: {problem.kind} at seq {problem.seq}",
            message=f"The signer refused to sign the audit chain.\n\n{problem.kind} at seq {problem.seq}:"
            f" {problem.message}\n",
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=settings.AUDIT_ALERT_EMAILS,
        )
    except OSError:
        logger.exception("audit alert e-mail could not be sent")


def _mail_checkpoint(checkpoint: chain.Checkpoint) -> None:
    if not settings.AUDIT_WITNESS_EMAILS:
        return
    try:
        send_mail(
            subject=f"[{settings.LAB_NAME}] audit checkpoint seq {checkpoint.seq}",
            message=checkpoint.to_line() + "\n",
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=settings.AUDIT_WITNESS_EMAILS,
        )
    except OSError:
        # The witness log is the durable copy; a lost mail is a warning, not a missing checkpoint.
        logger.warning("audit checkpoint e-mail could not be sent seq=%s", checkpoint.seq)


# --- verification from the database -------------------------------------------------------------------


def _as_checkpoint(row: AuditCheckpoint) -> chain.Checkpoint:
    return chain.Checkpoint(
        seq=row.seq,
        head_hash=row.head_hash,
        signed_at=row.signed_at,
        key_id=row.key_id,
        signature=row.signature,
    )


def _records(*, after: int = 0) -> Iterator[dict[str, object]]:
    for record in AuditRecord.objects.filter(seq__gt=after).order_by("seq").iterator(chunk_size=5000):
        yield record_as_chain_dict(record)


@dataclass(frozen=True)
class DatabaseVerification:
    count: int
    head_seq: int
    checkpoints: int
    problem: chain.ChainProblem | None
    witnessed: int = 0


def audit_verify_database(
    *,
    pinned_public_key: Ed25519PublicKey | None = None,
    witness_path: Path | None = None,
    now: datetime | None = None,
) -> DatabaseVerification:
    """Recompute the whole chain with every record's mac, every checkpoint, and the chain against the witness
    log (the configured one, or witness_path: an auditor's copy); name the first broken seq or range."""
    key = pinned_public_key or public_key()
    result = chain.verify_records(_records(), record_key=record_key())
    rows = [_as_checkpoint(row) for row in AuditCheckpoint.objects.order_by("pk")]
    witness = FileWitness(witness_path) if witness_path is not None else witness_sink()
    witnessed, witness_read_problem = witness.read_all()
    wanted = {checkpoint.seq for checkpoint in [*rows, *witnessed]}
    heads = dict(AuditRecord.objects.filter(seq__in=wanted).values_list("seq", "hash"))
    heads[0] = chain.GENESIS_HASH
    last_good = result.head_seq
    checkpoint_problem = chain.verify_checkpoints(
        [c for c in rows if result.problem is None or c.seq <= last_good],
        public_key=key,
        heads=heads,
        head_seq=None if result.problem is not None else last_good,
    )
    problems = [result.problem, checkpoint_problem, witness_read_problem]
    if witness_read_problem is None:
        problems.append(
            check_witness(
                witnessed,
                public_key=key,
                heads=heads,
                head_seq=last_good,
                first_record_at=_first_record_at(),
                now=now or timezone.now(),
                interval_seconds=settings.AUDIT_CHECKPOINT_SECONDS,
                known=[c for c in rows if chain.checkpoint_signature_is_valid(checkpoint=c, public_key=key)],
                is_chain_whole=result.problem is None,
            )
        )
    return DatabaseVerification(result.count, result.head_seq, len(rows), _first(problems), len(witnessed))


def _first_record_at() -> str | None:
    first = AuditRecord.objects.filter(seq=1).values_list("occurred_at", flat=True).first()
    return None if first is None else chain.utc_timestamp(first)


def _first(problems: list[chain.ChainProblem | None]) -> chain.ChainProblem | None:
    """The problem at the lowest seq; on a tie (or no seq), the one found first (records before
    checkpoints before the witness)."""
    found = [problem for problem in problems if problem is not None]
    if not found:
        return None
    return min(found, key=lambda problem: problem.seq if problem.seq is not None else -1)


# --- export -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOutcome:
    path: Path
    records: int
    checkpoints: int
    problem: chain.ChainProblem | None  # why the export could not be recorded or signed, if it could not


def audit_export(
    *, path: Path, actor_id: str | None, actor_role: str, meta: RequestMeta | None = None
) -> ExportOutcome:
    """Write the whole chain and every checkpoint the database holds; the export itself is recorded and then
    signed. When the chain is broken (e.g. a forged record holds the next seq) the export is still written,
    unsigned past the last good checkpoint, and the problem is returned."""
    # Nothing is appended to a chain that fails the signer's check: the export shows it as it was found.
    problem = audit_chain_check()
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
            checkpoint_write(reason="export")
        except AuditChainBroken as broken:
            problem = broken.problem
    checkpoints = [_as_checkpoint(row) for row in AuditCheckpoint.objects.order_by("pk")]
    written = 0

    def counted() -> Iterator[dict[str, object]]:
        nonlocal written
        for record in _records():
            written += 1
            yield record

    write_export(path=path, records=counted(), checkpoints=checkpoints)
    return ExportOutcome(path=path, records=written, checkpoints=len(checkpoints), problem=problem)
