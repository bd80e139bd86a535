"""The readiness checks behind /readyz: database, broker, storage and, on a print host, its CUPS.

All checks run at once in threads, each given READYZ_CHECK_TIMEOUT_SECONDS: a dependency that hangs makes the
answer 503 in about that time instead of holding a load balancer's probe (and a web worker) for minutes.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connections

Check = Callable[[], None]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "failed" or "timeout"
    duration_ms: float
    error: str = ""  # the exception's class only: messages may hold URLs with passwords

    @property
    def is_ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, object]:
        answer: dict[str, object] = {"status": self.status, "duration_ms": round(self.duration_ms, 1)}
        if self.error:
            answer["error"] = self.error
        return answer


def check_database() -> None:
    """A fresh connection (the request's own may be stale) and SELECT 1: no table, no personal data."""
    connection = connections.create_connection("default")
    if connection.vendor == "postgresql":
        timeout_seconds = max(2, int(settings.READYZ_CHECK_TIMEOUT_SECONDS + 1))  # libpq's minimum is 2
        options = {**connection.settings_dict.get("OPTIONS", {}), "connect_timeout": timeout_seconds}
        connection.settings_dict = {**connection.settings_dict, "OPTIONS": options}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def check_broker() -> None:
    from lab.celery import app

    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)
        connection.default_channel  # noqa: B018 (opening a channel talks to the broker: Redis answers a PING)


def check_storage() -> None:
    """The blob store takes a write: the vault writes photos and rasters there."""
    root = Path(settings.MEDIA_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=root, prefix=".readyz-") as probe:
        probe.write(b"1")
        probe.flush()


def check_cups() -> None:
    """This print host's CUPS answers HTTP (IPP runs over it); a plain socket, so the timeout holds."""
    from printers.cups_ipp import parse_server

    host, port = parse_server(settings.CUPS_SERVER)
    timeout = settings.READYZ_CHECK_TIMEOUT_SECONDS
    if host.startswith("/"):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(timeout)
        probe.connect(host)
    else:
        probe = socket.create_connection((host, port), timeout=timeout)
    with probe:
        probe.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        if not probe.recv(16).startswith(b"HTTP/"):
            raise ConnectionError("not an HTTP answer")


def readiness_checks() -> dict[str, Check]:
    checks: dict[str, Check] = {
        "database": check_database,
        "broker": check_broker,
        "storage": check_storage,
    }
    if settings.PRINT_HOST:
        checks["cups"] = check_cups
    return checks


def _timed(check: Check) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        check()
    except Exception as error:
        return time.perf_counter() - started, type(error).__name__
    return time.perf_counter() - started, ""


def run_checks(checks: dict[str, Check]) -> list[CheckResult]:
    timeout = settings.READYZ_CHECK_TIMEOUT_SECONDS
    executor = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    started = time.perf_counter()
    futures: dict[str, Future[tuple[float, str]]] = {
        name: executor.submit(_timed, check) for name, check in checks.items()
    }
    results = []
    try:
        for name, future in futures.items():
            remaining = max(timeout - (time.perf_counter() - started), 0.0)
            try:
                seconds, error = future.result(timeout=remaining)
            except FutureTimeout:
                results.append(CheckResult(name, "timeout", (time.perf_counter() - started) * 1000))
                continue
            results.append(CheckResult(name, "failed" if error else "ok", seconds * 1000, error))
    finally:
        # A hung check keeps its thread until its own socket timeout; the answer does not wait for it.
        executor.shutdown(wait=False, cancel_futures=True)
    return results
