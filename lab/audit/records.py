"""Appending to the audit chains: the only code that writes AuditRecord rows.

The log is LANES hash chains (lab/audit/lane_heads.py). A writer locks the head row of a lane no other
transaction holds (`FOR UPDATE SKIP LOCKED`; when every lane is busy it waits for one), takes the next global
seq from the database sequence and appends at that lane's next position, linked to the lane's head: every
lane stays linear and gap-free however many writers there are, and writers in different lanes commit in
parallel instead of queueing behind one head row. The record is written inside the caller's transaction,
with its hash and its mac (HMAC with AUDIT_RECORD_KEY, which the database never sees).

On PostgreSQL an append is two round trips in the caller's transaction (lab/audit/lanes.py): lock a lane,
reading the next seq and the current policy version with it (in the same message as the transaction's BEGIN
when the append opens it), then move the lane's head and insert the record in one prepared statement.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Max
from django.http import HttpRequest
from django.utils import timezone

from lab.audit import lanes
from lab.audit.canonical import (
    EXPORT_FIELDS,
    EXPORT_FIELDS_LANED,
    GENESIS_HASH,
    compute_mac,
    seal_record,
    utc_timestamp,
)
from lab.audit.keys import load_record_key
from lab.audit.lanes import append_postgresql
from lab.audit.lanes import prepared_cursor as prepared_cursor  # the gate's facts query prepares with it
from lab.audit.models import AuditHead, AuditRecord, Purpose
from lab.lib.client_ip import client_ip
from lab.lib.metrics import AUDIT_APPEND_SECONDS


@dataclass(frozen=True)
class RequestMeta:
    client_ip: str | None = None
    user_agent: str = ""
    request_id: str = ""


def request_meta(request: HttpRequest) -> RequestMeta:
    """Who asked, as an audit record names it: the client's address, its user agent, the request's id."""
    return RequestMeta(
        client_ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", "")[:300],
        request_id=getattr(request, "request_id", ""),
    )


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


def audit_append(entry: Entry, *, ends_transaction: bool = False) -> AuditRecord:
    """Append one record; must run inside the transaction of the decision it records (a failure here fails
    that transaction: no record, no decision).

    ends_transaction: the caller writes nothing after this record in its atomic block. When that block is
    the outermost one (no savepoint around it), the transaction is committed with the record, its COMMIT in
    the insert's round trip on PostgreSQL; the block's own exit then has nothing left to commit (its on_commit
    callbacks run as usual). A statement run after it in the block would run in a transaction of its own."""
    meta = entry.meta
    # Choices enums are str subclasses; the chain hashes plain strings only.
    fields: dict[str, object] = {
        "actor_id": _text(entry.actor_id),
        "actor_role": str(entry.actor_role),
        "action": str(entry.action),
        "asset_id": _text(entry.asset_id),
        "order_ref": _text(entry.order_ref),
        "purpose": str(entry.purpose),
        "justification": str(entry.justification[:500]),
        "context_type": str(entry.context_type),
        "context_id": str(entry.context_id),
        "outcome": str(entry.outcome),
        "rule": str(entry.rule),
        "client_ip": _text(meta.client_ip),
        "user_agent": str(meta.user_agent[:300]),
        "request_id": str(meta.request_id),
        "content_sha256": str(entry.content_sha256),
    }
    connection = transaction.get_connection()
    commits = ends_transaction and _in_outermost_block(connection)
    # No savepoint: the caller's transaction is the unit, and a savepoint would cost two more round trips.
    with AUDIT_APPEND_SECONDS.time(), transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            sealed, occurred_at = append_postgresql(connection, fields, _record_key(), commits=commits)
        else:
            sealed, occurred_at = _append_portable(fields)
    # As if read back from the database (positional values: cheaper than keyword arguments).
    return AuditRecord.from_db(
        connection.alias,
        _ATTNAMES,
        [occurred_at if name == "occurred_at" else sealed[name] for name in _ATTNAMES],
    )


def _in_outermost_block(connection: BaseDatabaseWrapper) -> bool:
    """Whether the caller's atomic block is the transaction itself (the only block open: no savepoint in a
    bigger one), and not one already condemned to roll back."""
    return len(connection.atomic_blocks) == 1 and not connection.needs_rollback


def _text(value: str | None) -> str | None:
    return None if value is None else str(value)


def _record_key() -> bytes:
    return _load_record_key(settings.AUDIT_RECORD_KEY)


@cache
def _load_record_key(text: str) -> bytes:
    return load_record_key(text)


# The model's fields in its order (what from_db takes); every one of them is in a sealed record.
_ATTNAMES = [field.attname for field in AuditRecord._meta.concrete_fields]


def _append_portable(fields: dict[str, object]) -> tuple[dict[str, object], datetime]:
    """Other databases (the embedded SQLite): one writer at a time anyway, so lane 1, and seq one past the
    last. The no-op head update first takes the database's write lock before anything is read, the time
    included (as on PostgreSQL, a record is timed once it holds its lane: settling.settle). The embedded
    lab is one host: its clock is the database's."""
    from lab.accounts.services import policy_current

    AuditHead.objects.get_or_create(id=1, defaults={"seq": 0, "hash": GENESIS_HASH})
    AuditHead.objects.filter(id=1).update(seq=F("seq"))
    occurred_at = lanes.record_time(timezone.now())
    fields["occurred_at"] = utc_timestamp(occurred_at)
    head = AuditHead.objects.get(id=1)
    seq = (AuditRecord.objects.aggregate(last=Max("seq"))["last"] or 0) + 1
    fields["policy_version"] = policy_current().version
    sealed = seal_record(
        fields, seq=seq, prev_hash=head.hash, record_key=_record_key(), lane=1, lane_seq=head.seq + 1
    )
    AuditRecord.objects.create(**{**sealed, "occurred_at": occurred_at})
    head.seq, head.hash = head.seq + 1, str(sealed["hash"])
    head.save(update_fields=["seq", "hash"])
    return sealed, occurred_at


def record_as_chain_dict(record: AuditRecord) -> dict[str, object]:
    """The record in the chain's canonical shape (what is hashed and exported): with lane and lane_seq for
    a laned record, without them for one from before lanes."""
    names = EXPORT_FIELDS_LANED if record.lane_seq is not None else EXPORT_FIELDS
    values: dict[str, object] = {name: getattr(record, name) for name in names}
    values["occurred_at"] = utc_timestamp(record.occurred_at)
    return values


def record_mac_holds(record: AuditRecord, key: bytes) -> bool:
    """True when the stored record carries the mac the record key gives it: written by the lab, not inserted
    or changed in the database alone."""
    try:
        expected = compute_mac(record_as_chain_dict(record), record_key=key)
    except ValueError:  # a record no reader can take (a time out of range, a lone surrogate)
        return False
    return hmac.compare_digest(expected, record.mac)


def system_image_access(*, asset_id: str, job_id: int, order_ref: str) -> None:
    """A worker reads a photo for production: recorded as system access with purpose `production`.

    Here, with the log, not in the gate: no person sees the bytes, so there is nothing to decide, only to
    record (and the production pipeline sits below the gate)."""
    audit_append(
        Entry(
            action="image.read.system",
            actor_id=None,
            actor_role="system",
            outcome="done",
            rule="production_pipeline",
            purpose=Purpose.PRODUCTION,
            asset_id=asset_id,
            order_ref=order_ref,
            context_type="print_job",
            context_id=str(job_id),
        )
    )
