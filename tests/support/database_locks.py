"""Row locks seen from PostgreSQL: whether another session is waiting for a lock that this one holds, so a
concurrency test lets its other side go on once the wait is observed, never after a fixed sleep."""

from __future__ import annotations

import time

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
