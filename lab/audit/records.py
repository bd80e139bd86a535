"""Appending to the audit chain: the only code that writes AuditRecord rows.

Writers lock the single AuditHead row, so records get gap-free sequence numbers and a linear chain even
with many concurrent writers; the record is written inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from lab.audit import chain
from lab.audit.models import AuditHead, AuditRecord


@dataclass(frozen=True)
class RequestMeta:
    client_ip: str | None = None
    user_agent: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class Entry:
    action: str
    actor_id: str | None
    actor_role: str
    outcome: str
    rule: str
    purpose: str = ""
    justification: str = ""
    asset_id: str | None = None
    order_ref: str | None = None
    context_type: str = ""
    context_id: str = ""
    content_sha256: str = ""
    meta: RequestMeta = field(default_factory=RequestMeta)


def audit_append(entry: Entry) -> AuditRecord:
    """Append one record; must run inside the transaction of the decision it records."""
    from lab.accounts.services import policy_current

    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(
            id=1, defaults={"seq": 0, "hash": chain.GENESIS_HASH}
        )
        occurred_at = timezone.now()
        fields: dict[str, object] = {
            "occurred_at": chain.utc_timestamp(occurred_at),
            "actor_id": entry.actor_id,
            "actor_role": entry.actor_role,
            "action": entry.action,
            "asset_id": entry.asset_id,
            "order_ref": entry.order_ref,
            "purpose": entry.purpose,
            "justification": entry.justification[:500],
            "context_type": entry.context_type,
            "context_id": entry.context_id,
            "outcome": entry.outcome,
            "rule": entry.rule,
            "client_ip": entry.meta.client_ip,
            "user_agent": entry.meta.user_agent[:300],
            "request_id": entry.meta.request_id,
            "content_sha256": entry.content_sha256,
            "policy_version": policy_current().version,
        }
        # Choices enums are str subclasses; the chain hashes plain strings only.
        fields = {name: str(value) if isinstance(value, str) else value for name, value in fields.items()}
        sealed = chain.seal_record(fields, seq=head.seq + 1, prev_hash=head.hash)
        record = AuditRecord.objects.create(**{**sealed, "occurred_at": occurred_at})
        head.seq, head.hash = record.seq, record.hash
        head.save(update_fields=["seq", "hash"])
    return record


def record_as_chain_dict(record: AuditRecord) -> dict[str, object]:
    """The record in the chain's canonical shape (what is hashed and exported)."""
    values: dict[str, object] = {name: getattr(record, name) for name in chain.EXPORT_FIELDS}
    values["occurred_at"] = chain.utc_timestamp(record.occurred_at)
    return values
