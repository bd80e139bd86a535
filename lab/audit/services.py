"""Checkpoints, verification from the database, and exports of the audit chain.

The signing key comes from settings (outside the database); auditors pin the published public key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lab.audit import chain
from lab.audit.models import AuditCheckpoint, AuditHead, AuditRecord
from lab.audit.records import Entry, RequestMeta, audit_append, record_as_chain_dict
from lab.audit.verify import write_export


@cache
def _signing_key(raw: str) -> Ed25519PrivateKey:
    return chain.load_private_key(raw)


def signing_key() -> Ed25519PrivateKey:
    return _signing_key(settings.AUDIT_SIGNING_KEY)


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def key_id() -> str:
    return chain.public_key_fingerprint(public_key())[:16]


def checkpoint_write(*, reason: str = "schedule") -> AuditCheckpoint:
    """Sign the current head, also when nothing happened since the last one (a silent gap shows)."""
    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(
            id=1, defaults={"seq": 0, "hash": chain.GENESIS_HASH}
        )
        signed = chain.sign_checkpoint(
            private_key=signing_key(),
            key_id=key_id(),
            seq=head.seq,
            head_hash=head.hash,
            signed_at=chain.utc_timestamp(timezone.now()),
        )
        return AuditCheckpoint.objects.create(
            seq=signed.seq,
            head_hash=signed.head_hash,
            signed_at=signed.signed_at,
            key_id=signed.key_id,
            signature=signed.signature,
            reason=reason,
        )


def _as_checkpoint(row: AuditCheckpoint) -> chain.Checkpoint:
    return chain.Checkpoint(
        seq=row.seq,
        head_hash=row.head_hash,
        signed_at=row.signed_at,
        key_id=row.key_id,
        signature=row.signature,
    )


def _records() -> Iterator[dict[str, object]]:
    for record in AuditRecord.objects.order_by("seq").iterator(chunk_size=5000):
        yield record_as_chain_dict(record)


@dataclass(frozen=True)
class DatabaseVerification:
    count: int
    head_seq: int
    checkpoints: int
    problem: chain.ChainProblem | None


def audit_verify_database(*, pinned_public_key: Ed25519PublicKey | None = None) -> DatabaseVerification:
    """Recompute the whole chain and every checkpoint; name the first broken record."""
    result = chain.verify_records(_records())
    if result.problem is not None:
        return DatabaseVerification(result.count, result.head_seq, 0, result.problem)
    checkpoints = [_as_checkpoint(row) for row in AuditCheckpoint.objects.order_by("pk")]
    heads = dict(AuditRecord.objects.filter(seq__in=[c.seq for c in checkpoints]).values_list("seq", "hash"))
    heads[0] = chain.GENESIS_HASH
    problem = chain.verify_checkpoints(
        checkpoints, public_key=pinned_public_key or public_key(), heads=heads, head_seq=result.head_seq
    )
    return DatabaseVerification(result.count, result.head_seq, len(checkpoints), problem)


def audit_export(
    *, path: Path, actor_id: str | None, actor_role: str, meta: RequestMeta | None = None
) -> Path:
    """Write the whole chain and its checkpoints; the export itself is recorded and then signed."""
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
    checkpoint_write(reason="export")
    checkpoints = [_as_checkpoint(row) for row in AuditCheckpoint.objects.order_by("pk")]
    last = checkpoints[-1].seq
    write_export(
        path=path,
        records=(r for r in _records() if int(r["seq"]) <= last),  # type: ignore[call-overload]
        checkpoints=[c for c in checkpoints if c.seq <= last],
    )
    return path
