"""Appending to the audit chains: the only code that writes AuditRecord rows.

The log is LANES hash chains ("lanes", lab/audit/chain.py). A writer locks the head row of a lane no other
transaction holds (`FOR UPDATE SKIP LOCKED`; when every lane is busy it waits for one), takes the next global
seq from the database sequence and appends at that lane's next position, linked to the lane's head: every
lane stays linear and gap-free however many writers there are, and writers in different lanes commit in
parallel instead of queueing behind one head row. The record is written inside the caller's transaction,
with its hash and its mac (HMAC with AUDIT_RECORD_KEY, which the database never sees).

On PostgreSQL an append is two statements, both prepared once per connection: lock a lane (reading the next
seq and the current policy version with it), then move the lane's head and insert the record in one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import F, Max
from django.utils import timezone

from lab.audit import chain
from lab.audit.models import AuditHead, AuditRecord, Purpose
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
    meta = entry.meta
    # Choices enums are str subclasses; the chain hashes plain strings only.
    fields: dict[str, object] = {
        "occurred_at": chain.utc_timestamp(occurred_at),
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
    # No savepoint: the caller's transaction is the unit, and a savepoint would cost two more round trips.
    with AUDIT_APPEND_SECONDS.time(), transaction.atomic(savepoint=False):
        connection = transaction.get_connection()
        if connection.vendor == "postgresql":
            sealed = _append_postgresql(connection, fields, occurred_at)
        else:
            sealed = _append_portable(fields, occurred_at)
    # As if read back from the database (positional values: cheaper than keyword arguments).
    return AuditRecord.from_db(
        connection.alias,
        _ATTNAMES,
        [occurred_at if name == "occurred_at" else sealed[name] for name in _ATTNAMES],
    )


def _text(value: str | None) -> str | None:
    return None if value is None else str(value)


def _record_key() -> bytes:
    return _load_record_key(settings.AUDIT_RECORD_KEY)


@cache
def _load_record_key(text: str) -> bytes:
    return chain.load_record_key(text)


class _PreparingCursor(psycopg.Cursor[Any]):
    """A server-binding cursor that prepares every statement it executes."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: Any = None
    ) -> Any:
        return super().execute(query, params, prepare=True, binary=binary)


# psycopg prepares nothing on a connection whose prepare_threshold is None (Django's default): a threshold no
# statement reaches by count lets this module's cursor prepare its statements and nothing else.
_PREPARE_ONLY_WHEN_ASKED = 2**31 - 1


def prepared_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """A cursor (PostgreSQL) whose statements the server parses and plans once per connection: a prepared
    statement is reused on every later execution. Django's own cursors bind parameters on the client and
    never prepare; this one goes through Django's wrappers (errors, execute_wrapper) all the same."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _PREPARE_ONLY_WHEN_ASKED
    return CursorWrapper(_PreparingCursor(raw), connection)


_COLUMNS = chain.EXPORT_FIELDS_LANED
# The model's fields in its order (what from_db takes); every one of them is a column of _COLUMNS.
_ATTNAMES = [field.attname for field in AuditRecord._meta.concrete_fields]
_NEXT_SEQ_AND_POLICY = (
    "nextval('audit_auditrecord_seq'), (SELECT p.version FROM accounts_policyversion p"
    " ORDER BY p.published_at DESC, p.id DESC LIMIT 1), EXISTS (SELECT 1 FROM audit_auditrecord)"
)
# An empty log (a new lab, a restored empty database, a test's rolled-back records) starts again at seq 1:
# under a transaction-scoped advisory lock, so that writers who all found it empty take turns, and each
# looks again (a fresh snapshot) once it holds the lock.
_EMPTY_LOG_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s)"
_EMPTY_LOG_LOCK_KEY = 0x61756469745F7331  # "audit_s1"
_FIRST_SEQ_SQL = (
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM audit_auditrecord) THEN nextval('audit_auditrecord_seq')"
    " ELSE setval('audit_auditrecord_seq', 1) END"
)
# A lane no other transaction holds (the first free one, so that a quiet lab writes one lane); the CTE is
# materialized so that nextval runs once, for the lane locked, not for every row looked at.
_LOCK_FREE_LANE_SQL = (
    "WITH lane AS MATERIALIZED (SELECT id, seq, hash FROM audit_audithead ORDER BY id LIMIT 1"  # noqa: S608
    f" FOR UPDATE SKIP LOCKED) SELECT lane.id, lane.seq, lane.hash, {_NEXT_SEQ_AND_POLICY} FROM lane"
)
# Every lane busy (more concurrent writers than lanes): wait for one.
_LOCK_LANE_SQL = (
    "WITH lane AS MATERIALIZED (SELECT id, seq, hash FROM audit_audithead WHERE id = %s FOR UPDATE)"  # noqa: S608
    f" SELECT lane.id, lane.seq, lane.hash, {_NEXT_SEQ_AND_POLICY} FROM lane"
)
_CREATE_LANES_SQL = (
    "INSERT INTO audit_audithead (id, seq, hash) SELECT lane, 0, %s FROM generate_series(1, %s) AS lane"
    " ON CONFLICT (id) DO NOTHING"
)
# The head moves and the record is inserted in one statement; the INSERT reads from the UPDATE, so without
# a head that moved from the position this writer locked there is no record either.
# The column names are this module's constants, not input.
_MOVE_AND_INSERT_SQL = (
    "WITH moved AS (UPDATE audit_audithead SET seq = %s, hash = %s WHERE id = %s AND seq = %s RETURNING 1)"  # noqa: S608
    f" INSERT INTO audit_auditrecord ({', '.join(_COLUMNS)})"
    f" SELECT {', '.join(['%s'] * len(_COLUMNS))} FROM moved"
)


def _append_postgresql(
    connection: BaseDatabaseWrapper, fields: dict[str, object], occurred_at: datetime
) -> dict[str, object]:
    """Two statements: lock a lane (reading the next seq and the current policy version with it), then move
    the lane's head and insert the record."""
    with prepared_cursor(connection) as cursor:
        row = _lock_lane(cursor)
        lane, position, head_hash, seq, policy_version, has_records = row
        if not has_records:
            cursor.execute(_EMPTY_LOG_LOCK_SQL, [_EMPTY_LOG_LOCK_KEY])
            cursor.execute(_FIRST_SEQ_SQL)
            (seq,) = cursor.fetchone()
        if policy_version is None:
            from lab.accounts.services import policy_current

            policy_version = policy_current().version
        fields["policy_version"] = policy_version
        sealed = chain.seal_record(
            fields, seq=seq, prev_hash=head_hash, record_key=_record_key(), lane=lane, lane_seq=position + 1
        )
        parameters: list[Any] = [position + 1, sealed["hash"], lane, position]
        parameters += [sealed[name] for name in _COLUMNS]
        parameters[4 + _COLUMNS.index("occurred_at")] = occurred_at
        cursor.execute(_MOVE_AND_INSERT_SQL, parameters)
        if cursor.rowcount != 1:
            raise DatabaseError("the audit lane's head moved under its lock")
    return sealed


def _lock_lane(cursor: CursorWrapper) -> Sequence[Any]:
    cursor.execute(_LOCK_FREE_LANE_SQL)
    row: Sequence[Any] | None = cursor.fetchone()
    if row is not None:
        return row
    cursor.execute(_LOCK_LANE_SQL, [random.randint(1, chain.LANES)])  # spreading waiters, not secrecy
    row = cursor.fetchone()
    if row is None:
        # A database emptied since its migration (a restore, a test flush): the lanes come back empty.
        cursor.execute(_CREATE_LANES_SQL, [chain.GENESIS_HASH, chain.LANES])
        cursor.execute(_LOCK_FREE_LANE_SQL)
        row = cursor.fetchone()
    if row is None:
        raise DatabaseError("no audit lane could be locked")
    return row


def _append_portable(fields: dict[str, object], occurred_at: datetime) -> dict[str, object]:
    """Other databases (the embedded SQLite): one writer at a time anyway, so lane 1, and seq one past the
    last. The no-op head update first takes the database's write lock before anything is read."""
    from lab.accounts.services import policy_current

    AuditHead.objects.get_or_create(id=1, defaults={"seq": 0, "hash": chain.GENESIS_HASH})
    AuditHead.objects.filter(id=1).update(seq=F("seq"))
    head = AuditHead.objects.get(id=1)
    seq = (AuditRecord.objects.aggregate(last=Max("seq"))["last"] or 0) + 1
    fields["policy_version"] = policy_current().version
    sealed = chain.seal_record(
        fields, seq=seq, prev_hash=head.hash, record_key=_record_key(), lane=1, lane_seq=head.seq + 1
    )
    AuditRecord.objects.create(**{**sealed, "occurred_at": occurred_at})
    head.seq, head.hash = head.seq + 1, str(sealed["hash"])
    head.save(update_fields=["seq", "hash"])
    return sealed


def record_as_chain_dict(record: AuditRecord) -> dict[str, object]:
    """The record in the chain's canonical shape (what is hashed and exported): with lane and lane_seq for
    a laned record, without them for one from before lanes."""
    names = chain.EXPORT_FIELDS_LANED if record.lane_seq is not None else chain.EXPORT_FIELDS
    values: dict[str, object] = {name: getattr(record, name) for name in names}
    values["occurred_at"] = chain.utc_timestamp(record.occurred_at)
    return values


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
