"""Appending to the audit chain: the only code that writes AuditRecord rows.

Writers lock the single AuditHead row, so records get gap-free sequence numbers and a linear chain even
with many concurrent writers; the record is written inside the caller's transaction, with its hash and its
mac (HMAC with AUDIT_RECORD_KEY, which the database never sees). On PostgreSQL an append is two statements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from lab.audit import chain
from lab.audit.models import AuditHead, AuditRecord
from lab.lib.metrics import AUDIT_APPEND_SECONDS


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
    """Append one record; must run inside the transaction of the decision it records (a failure here fails
    that transaction: no record, no decision)."""
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
    }
    # Choices enums are str subclasses; the chain hashes plain strings only.
    fields = {name: str(value) if isinstance(value, str) else value for name, value in fields.items()}
    # No savepoint: the caller's transaction is the unit, and a savepoint would cost two more round trips.
    with AUDIT_APPEND_SECONDS.time(), transaction.atomic(savepoint=False):
        connection = transaction.get_connection()
        if connection.vendor == "postgresql":
            sealed = _append_postgresql(connection, fields)
        else:
            sealed = _append_portable(fields)
    record = AuditRecord(**{**sealed, "occurred_at": occurred_at})
    record._state.adding = False
    record._state.db = connection.alias
    return record


def _record_key() -> bytes:
    return _load_record_key(settings.AUDIT_RECORD_KEY)


@cache
def _load_record_key(text: str) -> bytes:
    return chain.load_record_key(text)


_COLUMNS = (*chain.EXPORT_FIELDS,)
_LOCK_HEAD_SQL = (
    "SELECT h.seq, h.hash, (SELECT p.version FROM accounts_policyversion p"
    " ORDER BY p.published_at DESC, p.id DESC LIMIT 1)"
    " FROM audit_audithead h WHERE h.id = 1 FOR UPDATE OF h"
)
# The head moves and the record is inserted in one statement; the INSERT reads from the UPDATE, so without
# a head that moved from the seq this writer locked there is no record either.
# The column names are this module's constants, not input.
_MOVE_AND_INSERT_SQL = (
    "WITH moved AS (UPDATE audit_audithead SET seq = %s, hash = %s WHERE id = 1 AND seq = %s RETURNING 1)"  # noqa: S608
    f" INSERT INTO audit_auditrecord ({', '.join(_COLUMNS)})"
    f" SELECT {', '.join(['%s'] * len(_COLUMNS))} FROM moved"
)


def _append_postgresql(connection: BaseDatabaseWrapper, fields: dict[str, object]) -> dict[str, object]:
    """Two statements: lock the head (reading the current policy version with it), then move the head and
    insert the record."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_HEAD_SQL)
        row = cursor.fetchone()
        if row is None:
            # A database emptied since its migration (a restore, a test flush): the head comes back at zero.
            AuditHead.objects.get_or_create(id=1, defaults={"seq": 0, "hash": chain.GENESIS_HASH})
            cursor.execute(_LOCK_HEAD_SQL)
            row = cursor.fetchone()
        head_seq, head_hash, policy_version = row
        if policy_version is None:
            from lab.accounts.services import policy_current

            policy_version = policy_current().version
        fields["policy_version"] = policy_version
        sealed = chain.seal_record(fields, seq=head_seq + 1, prev_hash=head_hash, record_key=_record_key())
        parameters: list[Any] = [sealed["seq"], sealed["hash"], head_seq]
        parameters += [sealed[name] for name in _COLUMNS]
        parameters[3 + _COLUMNS.index("occurred_at")] = _occurred_at(fields)
        cursor.execute(_MOVE_AND_INSERT_SQL, parameters)
        if cursor.rowcount != 1:
            raise DatabaseError("the audit head moved under its lock")
    return sealed


def _occurred_at(fields: dict[str, object]) -> datetime:
    return datetime.strptime(str(fields["occurred_at"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _append_portable(fields: dict[str, object]) -> dict[str, object]:
    from lab.accounts.services import policy_current

    head, _ = AuditHead.objects.select_for_update().get_or_create(
        id=1, defaults={"seq": 0, "hash": chain.GENESIS_HASH}
    )
    fields["policy_version"] = policy_current().version
    sealed = chain.seal_record(fields, seq=head.seq + 1, prev_hash=head.hash, record_key=_record_key())
    AuditRecord.objects.create(**{**sealed, "occurred_at": _occurred_at(fields)})
    head.seq, head.hash = int(str(sealed["seq"])), str(sealed["hash"])
    head.save(update_fields=["seq", "hash"])
    return sealed


def record_as_chain_dict(record: AuditRecord) -> dict[str, object]:
    """The record in the chain's canonical shape (what is hashed and exported)."""
    values: dict[str, object] = {name: getattr(record, name) for name in chain.EXPORT_FIELDS}
    values["occurred_at"] = chain.utc_timestamp(record.occurred_at)
    return values
