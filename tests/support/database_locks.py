"""Row locks seen from PostgreSQL: whether another session is waiting for a lock that this one holds, so a
concurrency test lets its other side go on once the wait is observed, never after a fixed sleep. And a write
committed by another session at the worst moment: right after this one checked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection


def holds_up_another_session() -> bool:
    """True while another database session waits for a lock that this session holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks"
            " WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def until_another_session_waits(*, timeout: float = 10.0) -> bool:
    """Wait (polling pg_locks) until another session waits for one of this session's locks; False when none
    did within `timeout`."""
    deadline = time.monotonic() + timeout
    while not holds_up_another_session():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def until_sessions_wait_for_locks(count: int, *, timeout: float = 10.0) -> None:
    """Wait until `count` other sessions of this database wait for a lock, whoever holds it (a second waiter
    for a row queues behind the first, not behind the holder, so pg_blocking_pids would not name us)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = cursor.fetchone()
            if row and row[0] >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} sessions never waited for a lock")
            time.sleep(0.01)


@contextmanager
def committed_right_after_the_check(value: str, commit: Callable[[], object]) -> Iterator[None]:
    """While in effect, right after this session's first SELECT whose parameters hold `value` (a form's or a
    serializer's "is it taken?" check), `commit` runs in a session of its own and commits there, as another
    web process saving the same value at the same moment would."""
    done = False

    def elsewhere() -> None:
        try:
            commit()
        finally:
            connection.close()  # the thread's own session, so the test database can be dropped

    def after_the_check(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal done
        result = execute(sql, params, many, context)
        if not done and value in str(params) and sql.lstrip().startswith("SELECT"):
            done = True
            other = threading.Thread(target=elsewhere)
            other.start()
            other.join()
        return result

    with connection.execute_wrapper(after_the_check):
        yield


@contextmanager
def committed_right_before(statement: Callable[[str], bool], commit: Callable[[], object]) -> Iterator[None]:
    """While in effect, right before this session's first statement for which `statement(sql)` is true (a
    form's save, after every check the page made), `commit` runs in a session of its own and commits there, as
    another web process finishing at that moment would."""
    done = False

    def elsewhere() -> None:
        try:
            commit()
        finally:
            connection.close()  # the thread's own session, so the test database can be dropped

    def before_the_statement(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        nonlocal done
        if not done and statement(sql):
            done = True
            other = threading.Thread(target=elsewhere)
            other.start()
            other.join()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(before_the_statement):
        yield
