"""Appending to a lane on PostgreSQL: lock a free lane, then move its head and insert the record.
The round trips an append costs, and the prepared statements that keep the server's share small.

An append is two round trips inside the caller's transaction (plus that transaction's COMMIT): the lane lock,
which reads the lane's head, the next seq and the current policy version, then one statement that moves the
head and inserts the record. The hash and the mac are computed here between the two: the chain link needs
the head and the seq only the locked lane gives, and the record key never leaves the application. When the
append is the first statement of its transaction, the transaction's BEGIN goes in the same message as the
lane lock, so opening the transaction costs no round trip of its own. When the record is the last thing its
transaction writes (the caller says so: `commits`), the COMMIT goes in the same message as the insert
(libpq's pipeline mode), so the transaction costs no round trip of its own either: two in all.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

import psycopg
from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from psycopg import generators, pq
from psycopg.errors import DuplicatePreparedStatement, InvalidSqlStatementName

from lab.audit.canonical import EXPORT_FIELDS_LANED, GENESIS_HASH, seal_record, utc_timestamp
from lab.audit.lane_heads import LANES


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


_COLUMNS = EXPORT_FIELDS_LANED
# The database's clock in microseconds since the epoch (an integer: exact in either wire format) is the
# record's occurred_at, so records are timed on one clock whichever host writes them. clock_timestamp(), not
# statement_timestamp(): these expressions are evaluated in the outer SELECT, for the row the MATERIALIZED
# CTE has locked, so the time is read once the lane is held. A writer that waited for its lane (behind the
# signer, which holds every lane while it settles the log) is then timed after the checkpoint it follows,
# as the backdating rule needs (backdating.BackdatingCheck); timed at its statement's start, it was not. The
# clock and the sequence are named in pg_catalog: a function of the same name earlier in the role's
# search_path (a public.clock_timestamp() set up by whoever administers the database) must not time the
# record (settings pins the search_path too).
_NEXT_SEQ_AND_POLICY = (
    "pg_catalog.nextval('audit_auditrecord_seq'), (SELECT p.version FROM accounts_policyversion p"
    " ORDER BY p.published_at DESC, p.id DESC LIMIT 1), EXISTS (SELECT 1 FROM audit_auditrecord),"
    " (extract(epoch FROM pg_catalog.clock_timestamp()) * 1000000)::bigint"
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
# An empty log (a new lab, a restored empty database, a test's rolled-back records) starts again at seq 1:
# under a transaction-scoped advisory lock, so that writers who all found it empty take turns, and each
# looks again (a fresh snapshot) once it holds the lock; a writer that comes after a rewind takes a fresh seq.
# Only a role that may rewind the sequence does (UPDATE on it, setval); the app's role in production has
# USAGE only (nextval), and its first record simply takes the next seq.
_EMPTY_LOG_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s)"
_EMPTY_LOG_LOCK_KEY = 0x61756469745F7331  # "audit_s1"
_FIRST_SEQ_SQL = (
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM audit_auditrecord)"
    " OR NOT has_sequence_privilege('audit_auditrecord_seq', 'UPDATE') THEN nextval('audit_auditrecord_seq')"
    " ELSE setval('audit_auditrecord_seq', 1) END"
)
# The head moves and the record is inserted in one statement. The record's hash is the one the UPDATE wrote,
# read from it: a head that did not move from the position this writer locked leaves none, and then
# audit_head_not_moved() (migration audit/0008) raises, so the statement fails (and a COMMIT sent behind it
# never runs) rather than commit a transaction without its record; its error names no field of the record.
# The column names are this module's constants, not input.
_HASH_MOVED = "COALESCE(moved.hash, audit_head_not_moved())"
_MOVE_AND_INSERT_SQL = (
    "WITH moved AS (UPDATE audit_audithead SET seq = %s, hash = %s WHERE id = %s AND seq = %s RETURNING hash)"  # noqa: S608
    f" INSERT INTO audit_auditrecord ({', '.join(_COLUMNS)})"
    f" SELECT {', '.join(_HASH_MOVED if name == 'hash' else '%s' for name in _COLUMNS)}"
    " FROM (SELECT 1) AS one LEFT JOIN moved ON TRUE"
)
_INSERTED_COLUMNS = [name for name in _COLUMNS if name != "hash"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OCCURRED_AT = 4 + _COLUMNS.index("occurred_at")

# The free-lane lock as an SQL-level prepared statement, so that it can share a simple-protocol message with
# BEGIN (the extended protocol carries one statement per message) and still be planned once per session.
_LOCK_STATEMENT = "audit_lane_lock"
_PREPARE_LOCK = f"PREPARE {_LOCK_STATEMENT} AS {_LOCK_FREE_LANE_SQL}"
_BEGIN_AND_LOCK = f"BEGIN; EXECUTE {_LOCK_STATEMENT}"
_PREPARE_BEGIN_AND_LOCK = f"{_PREPARE_LOCK}; {_BEGIN_AND_LOCK}"

# Per database session (psycopg connection): the appends' cursor (a new psycopg cursor per append costs more
# than the statement it sends), whether the lock statement was prepared there, and whether SQL-level prepared
# statements do not stick there (a transaction-pooling PgBouncer hands each transaction another server).
_CURSORS: WeakKeyDictionary[psycopg.Connection[Any], CursorWrapper] = WeakKeyDictionary()
_LOCK_PREPARED: WeakSet[psycopg.Connection[Any]] = WeakSet()
_LOCK_NOT_PREPARABLE: WeakSet[psycopg.Connection[Any]] = WeakSet()

# (lane, its records so far, the hash of its last one, seq, policy version or None, whether the log has any
# record, the database's clock in microseconds since the epoch): what the lane lock reads.
LaneLock = tuple[int, int, str, int, str | None, bool, int]


def append_postgresql(
    connection: BaseDatabaseWrapper,
    fields: dict[str, object],
    record_key: bytes,
    *,
    commits: bool = False,
) -> tuple[dict[str, object], datetime]:
    """Append one record in the transaction open on connection (Django's atomic block): lock a lane, seal
    the record there (hash and mac), move the lane's head and insert it. fields: the record's hashed fields
    but occurred_at, seq, prev_hash, lane, lane_seq and policy_version. commits: the transaction ends with
    this record and is committed here, its COMMIT in the insert's round trip (the caller's atomic block then
    finds nothing left to commit); otherwise the caller commits. Returns the sealed record and its time, the
    database's clock as the lane was locked."""
    cursor = _append_cursor(connection)
    lane, position, head_hash, seq, policy_version, has_records, micros = _lock_lane(connection, cursor)
    occurred_at = record_time(_EPOCH + timedelta(microseconds=micros))
    fields["occurred_at"] = utc_timestamp(occurred_at)
    if not has_records:
        cursor.execute(_EMPTY_LOG_LOCK_SQL, [_EMPTY_LOG_LOCK_KEY])
        cursor.execute(_FIRST_SEQ_SQL)
        (seq,) = cursor.fetchone()
    if policy_version is None:
        from lab.accounts.services import policy_current

        policy_version = policy_current().version
    fields["policy_version"] = policy_version
    sealed = seal_record(
        fields, seq=seq, prev_hash=head_hash, record_key=record_key, lane=lane, lane_seq=position + 1
    )
    parameters: list[Any] = [position + 1, sealed["hash"], lane, position]
    parameters += [sealed[name] for name in _INSERTED_COLUMNS]
    parameters[_OCCURRED_AT] = occurred_at
    if commits:
        _insert_and_commit(connection, cursor, parameters)
    else:
        cursor.execute(_MOVE_AND_INSERT_SQL, parameters)
    return sealed, occurred_at


def record_time(database_time: datetime) -> datetime:
    """The time a record bears: the database's clock as its lane was locked. Also the embedded SQLite path's
    (records._append_portable), and the one place the tests that put records at chosen moments set what the
    clock read (tests/builders/audit.py)."""
    return database_time


def _insert_and_commit(connection: BaseDatabaseWrapper, cursor: CursorWrapper, parameters: list[Any]) -> None:
    """The insert and the COMMIT in one message (pipeline mode: one Sync for both). A failed insert aborts
    the pipeline, so the COMMIT is skipped and the transaction is left failed for the caller's block to
    roll back; its error is raised here as Django's."""
    raw: psycopg.Connection[Any] = connection.connection
    with connection.wrap_database_errors, raw.pipeline():
        cursor.execute(_MOVE_AND_INSERT_SQL, parameters)
        cursor.execute("COMMIT")


def _append_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    connection.ensure_connection()
    raw = connection.connection
    cursor = _CURSORS.get(raw)
    if cursor is None or cursor.db is not connection:
        cursor = _CURSORS[raw] = prepared_cursor(connection)
    return cursor


def _lock_lane(connection: BaseDatabaseWrapper, cursor: CursorWrapper) -> LaneLock:
    raw: psycopg.Connection[Any] = connection.connection
    row: Sequence[Any] | None = None
    is_locked_with_begin = False
    if _opens_with_plain_begin(raw) and raw not in _LOCK_NOT_PREPARABLE:
        is_locked_with_begin, row = _begin_and_lock_free_lane(connection, raw, cursor)
    if not is_locked_with_begin:
        cursor.execute(_LOCK_FREE_LANE_SQL)
        row = cursor.fetchone()
    if row is None:
        cursor.execute(_LOCK_LANE_SQL, [random.randint(1, LANES)])  # spreading waiters, not secrecy
        row = cursor.fetchone()
    if row is None:
        # A database emptied since its migration (a restore, a test flush): the lanes come back empty.
        cursor.execute(_CREATE_LANES_SQL, [GENESIS_HASH, LANES])
        cursor.execute(_LOCK_FREE_LANE_SQL)
        row = cursor.fetchone()
    if row is None:
        raise DatabaseError("no audit lane could be locked")
    lane, position, head_hash, seq, policy_version, has_records, micros = row
    return lane, position, head_hash, seq, policy_version, has_records, micros


def _opens_with_plain_begin(raw: psycopg.Connection[Any]) -> bool:
    """Whether the next statement opens the transaction, with the plain BEGIN psycopg would send (no isolation
    level, read-only or deferrable setting of its own: those would need them in the BEGIN)."""
    return (
        not raw.autocommit
        and raw.pgconn.transaction_status == pq.TransactionStatus.IDLE
        and raw.isolation_level is None
        and raw.read_only is None
        and raw.deferrable is None
    )


def _begin_and_lock_free_lane(
    connection: BaseDatabaseWrapper, raw: psycopg.Connection[Any], cursor: CursorWrapper
) -> tuple[bool, LaneLock | None]:
    """The append opens its transaction: psycopg would send BEGIN and wait for its answer before the lane
    lock; here both go in one message (one round trip). The transaction is the caller's all the same: Django's
    atomic block commits or rolls it back, and psycopg sends no BEGIN of its own once the server is in one.
    Returns whether the free-lane lock ran, and the lane it locked (None: none was free). It did not run when
    this session keeps no SQL-level prepared statement: the caller then locks a lane the ordinary way, in the
    transaction psycopg opens."""
    outcome = _send(
        connection, raw, cursor, _BEGIN_AND_LOCK if raw in _LOCK_PREPARED else _PREPARE_BEGIN_AND_LOCK
    )
    if isinstance(outcome, _NOT_PREPARED):
        # Gone (psycopg deallocates all of a session's prepared statements after a rollback), or there already
        # (this is not the session it was prepared in): once more, after rolling back what the failed message
        # opened (nothing of the caller's was in it yet).
        again = _PREPARE_BEGIN_AND_LOCK if isinstance(outcome, InvalidSqlStatementName) else _BEGIN_AND_LOCK
        outcome = _send(connection, raw, cursor, _after_rollback(raw, again))
        if isinstance(outcome, _NOT_PREPARED):
            _LOCK_NOT_PREPARABLE.add(raw)
            if _after_rollback(raw, ""):
                _raise_if_error(connection, _send(connection, raw, cursor, "ROLLBACK"))
            return False, None
    results = _raise_if_error(connection, outcome)
    _LOCK_PREPARED.add(raw)
    row = results[-1]
    if row.status != pq.ExecStatus.TUPLES_OK or row.ntuples != 1:
        return True, None
    lane, position, head_hash, seq, policy_version, has_records, micros = (
        row.get_value(0, i) for i in range(7)
    )
    if lane is None or position is None or head_hash is None or seq is None or has_records is None:
        raise DatabaseError("the audit lane lock read a lane without its head")
    if micros is None:
        raise DatabaseError("the audit lane lock read no time")
    # Text format: the integers and strings as the server spells them, booleans as t or f.
    return True, (
        int(lane),
        int(position),
        head_hash.decode(),
        int(seq),
        None if policy_version is None else policy_version.decode(),
        has_records == b"t",
        int(micros),
    )


_NOT_PREPARED = (InvalidSqlStatementName, DuplicatePreparedStatement)


def _after_rollback(raw: psycopg.Connection[Any], sql: str) -> str:
    """sql, after a ROLLBACK of the transaction a failed message left open (it failed after its BEGIN)."""
    if raw.pgconn.transaction_status == pq.TransactionStatus.INERROR:
        return f"ROLLBACK; {sql}" if sql else "ROLLBACK"
    return sql


def _send(
    connection: BaseDatabaseWrapper, raw: psycopg.Connection[Any], cursor: CursorWrapper, sql: str
) -> list[pq.abc.PGresult] | psycopg.Error:
    """Send one simple-protocol message (several statements) through Django's execute wrappers, as the
    cursor's statements go. Returns its results, or the error it ended with."""

    def send(sql: str, params: object, many: bool, context: dict[str, Any]) -> list[pq.abc.PGresult]:
        # As psycopg sends its own BEGIN and COMMIT: on its libpq connection, under its lock, waiting the way
        # it waits (interruptible). tests/audit/test_append_round_trips.py pins what goes over the wire.
        with raw.lock:
            raw.pgconn.send_query(sql.encode())
            return raw.wait(generators.execute(raw.pgconn))

    executor: Callable[..., list[pq.abc.PGresult]] = send
    for wrapper in reversed(connection.execute_wrappers):
        executor = functools.partial(wrapper, executor)
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        results = executor(sql, None, False, {"connection": connection, "cursor": cursor})
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            return psycopg.errors.error_from_result(result, encoding=raw.info.encoding)
    return results


def _raise_if_error(
    connection: BaseDatabaseWrapper, outcome: list[pq.abc.PGresult] | psycopg.Error
) -> list[pq.abc.PGresult]:
    if isinstance(outcome, psycopg.Error):
        # As Django's cursors raise it: a django.db error, the psycopg one as its cause.
        with connection.wrap_database_errors:
            raise outcome
    return outcome
