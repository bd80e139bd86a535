"""What an append costs on the wire, and that it stays in its caller's transaction: an append that opens its
transaction sends BEGIN in the same message as the lane lock (three round trips with the insert and the
COMMIT); after a rollback (psycopg then deallocates the session's prepared statements) the lane lock is
prepared again; where SQL-level prepared statements do not stick (a transaction pooler) a lane is locked the
ordinary way; with every lane busy an append waits for one. Every record still verifies."""

from __future__ import annotations

import itertools
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, connections, transaction
from psycopg import pq

from lab.audit.database_verify import audit_verify_database
from lab.audit.lane_heads import LANES
from lab.audit.models import AuditHead, AuditRecord
from lab.audit.records import Entry, audit_append
from tests.builders import preview_entry
from tests.support.celery_worker import database_url

pytestmark = pytest.mark.django_db(transaction=True)

LOCK = "EXECUTE audit_lane_lock"


def _entry(name: str) -> Entry:
    return preview_entry(name, asset_id=f"asset-{name}", order_ref="PL-TRIPS")


def _append(name: str) -> AuditRecord:
    with transaction.atomic():
        return audit_append(_entry(name))


@contextmanager
def _statements() -> Iterator[list[str]]:
    """The statements (messages) sent through Django's execute wrappers meanwhile."""
    sent: list[str] = []

    def capture(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        yield sent


def _round_trips(action: Callable[[], object]) -> list[str]:
    """The messages that end a round trip (Query, Sync) the libpq connection sends while action runs: a
    simple-protocol query with its text, or "Sync" for an extended-protocol statement."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            action()
        finally:
            pgconn.untrace()
        trace.seek(0)
        lines = trace.read().decode().splitlines()
    sent = [line.split("\t") for line in lines if line.startswith("F\t")]
    return [
        fields[3].strip(' "') if fields[2] == "Query" else "Sync"
        for fields in sent
        if fields[2] in ("Query", "Sync")
    ]


def _lane_statement_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = 'audit_lane_lock'")
        (count,) = cursor.fetchone()
    return bool(count)


def _assert_linear_and_verified(records: int) -> None:
    lanes: dict[int, list[int | None]] = {}
    for lane, position in AuditRecord.objects.order_by("seq").values_list("lane", "lane_seq"):
        lanes.setdefault(lane, []).append(position)
    assert all(positions == list(range(1, len(positions) + 1)) for positions in lanes.values())
    assert sum(len(positions) for positions in lanes.values()) == records
    assert audit_verify_database().problem is None


def test_an_append_that_opens_its_transaction_costs_three_round_trips() -> None:
    # given a log with a record (the lane lock prepared on this connection)
    _append("first")
    # when the next append opens its own transaction
    trips = _round_trips(lambda: _append("second"))
    # then BEGIN goes with the lane lock, then the insert, then the commit: three round trips
    assert trips == [f"BEGIN; {LOCK}", "Sync", "COMMIT"]
    assert list(AuditRecord.objects.order_by("seq").values_list("actor_id", "lane", "lane_seq")) == [
        ("first", 1, 1),
        ("second", 1, 2),
    ]


def test_an_append_inside_a_transaction_already_begun_locks_with_a_prepared_statement() -> None:
    # given a transaction that has already run a statement (once before, so every statement is prepared)
    _append("first")

    def append_after_a_read(name: str) -> None:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            audit_append(_entry(name))

    append_after_a_read("second")
    # when an append runs in it
    trips = _round_trips(lambda: append_after_a_read("third"))
    # then no BEGIN of its own: the read opened the transaction (psycopg's BEGIN), the lane lock and the
    # insert are prepared statements, and the caller commits
    assert trips == ["BEGIN", "SELECT 1", "Sync", "Sync", "COMMIT"]
    _assert_linear_and_verified(3)


def test_the_record_is_written_in_the_callers_transaction_and_rolls_back_with_it() -> None:
    # given a first record
    _append("first")
    heads = list(AuditHead.objects.order_by("id").values_list("id", "seq", "hash"))
    # when an append opens a transaction that then fails
    with pytest.raises(RuntimeError), transaction.atomic():
        record = audit_append(_entry("rolled-back"))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT xmin = pg_current_xact_id()::xid FROM audit_auditrecord WHERE seq = %s", [record.seq]
            )
            (inserted_by_this_transaction,) = cursor.fetchone()
        raise RuntimeError("the decision failed after its record was written")
    # then the record had been inserted by the caller's transaction, and went with it: no record, no head
    # moved
    assert inserted_by_this_transaction is True
    assert list(AuditRecord.objects.values_list("actor_id", flat=True)) == ["first"]
    assert list(AuditHead.objects.order_by("id").values_list("id", "seq", "hash")) == heads
    # and the next append takes the position the rolled-back one had (its seq stays unused)
    after = _append("after")
    assert (after.lane, after.lane_seq, after.seq) == (1, 2, record.seq + 1)
    _assert_linear_and_verified(2)


def test_after_a_rollback_the_lane_lock_is_prepared_again() -> None:
    # given a connection whose lane lock is prepared, then a rolled-back transaction: psycopg deallocates
    # every prepared statement of the session after a rollback
    _append("first")
    assert _lane_statement_exists()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_append(_entry("rolled-back"))
        raise RuntimeError("rolled back")
    assert not _lane_statement_exists()
    # when the next append opens its transaction
    with _statements() as sent:
        record = _append("second")
    # then the missing statement is prepared again, in the message that rolls back the failed attempt
    assert sent[0] == f"BEGIN; {LOCK}"
    assert sent[1].startswith("ROLLBACK; PREPARE audit_lane_lock AS WITH lane AS MATERIALIZED")
    assert sent[1].endswith(f"; BEGIN; {LOCK}")
    assert sent[2].startswith("WITH moved AS (UPDATE audit_audithead")
    assert len(sent) == 3
    assert (record.lane, record.lane_seq) == (1, 2)
    # and the one after that needs no preparing
    with _statements() as sent:
        _append("third")
    assert sent[0] == f"BEGIN; {LOCK}"
    assert len(sent) == 2
    _assert_linear_and_verified(3)


def test_where_prepared_statements_do_not_stick_a_lane_is_locked_the_ordinary_way() -> None:
    # given a session where an SQL-level prepared statement is never there when executed, as behind a
    # transaction-pooling PgBouncer (each transaction may get another server)
    names = itertools.count()

    def pooler(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        return execute(sql.replace(LOCK, f"{LOCK}_elsewhere_{next(names)}"), params, many, context)

    try:
        _append("first")
        # when appends open their transactions there
        with _statements() as sent, connection.execute_wrapper(pooler):
            first = _append("second")
            second = _append("third")
        # then the first tries twice (the second time preparing it again, refused as it is there), gives
        # up on prepared statements for this session and locks its lane in the transaction psycopg opens;
        # the next goes that way at once
        free_lane = "WITH lane AS MATERIALIZED (SELECT id, seq, hash FROM audit_audithead ORDER BY id LIMIT 1"
        assert sent[0] == f"BEGIN; {LOCK}"
        assert sent[1].startswith("ROLLBACK; PREPARE audit_lane_lock AS")
        insert = "WITH moved AS (UPDATE audit_audithead SET seq = %s"
        kinds = [
            "lock" if sql.startswith(free_lane) else "insert" if sql.startswith(insert) else sql
            for sql in sent[2:]
        ]
        assert kinds == ["lock", "insert", "lock", "insert"]
        assert [(r.lane, r.lane_seq) for r in (first, second)] == [(1, 2), (1, 3)]
        _assert_linear_and_verified(3)
    finally:
        # The session's "not preparable" mark goes with its connection.
        connection.close()


def test_with_every_lane_busy_an_append_waits_for_one() -> None:
    # given a first record, then another session holding every lane's head row
    _append("first")
    holder = psycopg.connect(database_url(connection.settings_dict))
    holder.execute("SELECT id FROM audit_audithead FOR UPDATE")
    done: list[AuditRecord] = []

    def append_elsewhere() -> None:
        try:
            done.append(_append("waiting"))
        finally:
            connections.close_all()

    try:
        # when an append opens its transaction meanwhile
        thread = threading.Thread(target=append_elsewhere)
        thread.start()
        # then it waits on a lane's row lock (no lane was free for its first attempt)
        with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as observer:
            waiting = []
            for _ in range(600):
                waiting = observer.execute(
                    "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE"
                    " 'WITH lane AS MATERIALIZED (SELECT id, seq, hash FROM audit_audithead WHERE id =%%'"
                ).fetchall()
                if waiting or not thread.is_alive():
                    break
                threading.Event().wait(0.05)
        assert len(waiting) == 1
        assert done == []
    finally:
        holder.commit()
        holder.close()
    # and once the lanes are free again it appends to the lane it waited for
    thread.join(timeout=30)
    assert not thread.is_alive()
    (record,) = done
    assert 1 <= record.lane <= LANES
    assert record.lane_seq == (2 if record.lane == 1 else 1)
    _assert_linear_and_verified(2)


def _append_ending(name: str) -> AuditRecord:
    with transaction.atomic():
        return audit_append(_entry(name), ends_transaction=True)


def _committed_actors() -> list[str | None]:
    """The records another session sees: what is committed."""
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as observer:
        rows = observer.execute("SELECT actor_id FROM audit_auditrecord ORDER BY seq").fetchall()
    return [actor for (actor,) in rows]


def test_an_append_that_ends_its_transaction_commits_in_the_insert_s_round_trip() -> None:
    # given a log with a record (the lane lock prepared on this connection)
    _append("first")
    committed: list[list[str | None]] = []

    def ending() -> None:
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(_committed_actors()))
            audit_append(_entry("second"), ends_transaction=True)
            # already committed before the block ends: another session sees the record
            committed.append(_committed_actors())

    # when an append that ends its transaction opens it
    trips = _round_trips(ending)
    # then BEGIN goes with the lane lock, and the COMMIT with the insert (one Sync for both): two round
    # trips, the record committed before the block's end, and the block's on_commit callbacks run after
    assert trips == [f"BEGIN; {LOCK}", "Sync"]
    assert committed == [["first", "second"], ["first", "second"]]
    assert connection.connection.pgconn.transaction_status == pq.TransactionStatus.IDLE
    # and the next append goes on in the same lane, the ordinary way or not
    _append("third")
    _append_ending("fourth")
    _assert_linear_and_verified(4)


def test_an_append_that_ends_a_block_inside_a_bigger_transaction_leaves_the_commit_to_it() -> None:
    # given a first record
    _append("first")
    # when an append that ends its block runs inside another block (a savepoint in a bigger transaction),
    # which then fails
    with pytest.raises(RuntimeError), transaction.atomic():
        with transaction.atomic():
            audit_append(_entry("inner"), ends_transaction=True)
        assert _committed_actors() == ["first"]
        raise RuntimeError("the bigger transaction failed")
    # then nothing was committed by the append: the record went with the bigger transaction
    assert _committed_actors() == ["first"]
    _assert_linear_and_verified(1)


def test_a_head_that_did_not_move_fails_the_append_and_commits_nothing_of_its_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a first record, and a lane lock that reports a position the head is not at (as a head moved by
    # someone else would look)
    from django.contrib.auth.models import Group

    from lab.audit import lanes

    _append("first")
    lock = lanes._lock_lane

    def stale_position(*args: Any) -> lanes.LaneLock:
        lane, position, *rest = lock(*args)
        return (lane, position + 5, *rest)  # type: ignore[return-value]

    monkeypatch.setattr(lanes, "_lock_lane", stale_position)
    # when a transaction that wrote something appends a record that ends it
    with pytest.raises(DatabaseError, match="head moved under its lock") as raised, transaction.atomic():
        Group.objects.create(name="written before the record")
        audit_append(_entry("lost"), ends_transaction=True)
    # then the insert failed (with an error that names no field of the record: PostgreSQL logs it), its
    # COMMIT never ran, and the transaction's other write went with it
    assert "lost" not in str(raised.value) and "Failing row" not in str(raised.value)
    assert _committed_actors() == ["first"]
    assert not Group.objects.filter(name="written before the record").exists()
    monkeypatch.undo()
    _append("after")
    _assert_linear_and_verified(2)
