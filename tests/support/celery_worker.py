"""Test harness: a real `celery worker` subprocess (with embedded beat) against the test database and Redis.
Purges the queues before a fresh start; kills (SIGKILL), restarts and stops it by PID; `wait_until` polls;
`wait_rounds` waits for whole printer-poll and reconcile rounds seen in its log (negative checks wait on
those, never on seconds). `queues=` and `beat=` make a print-host worker (`-Q print.<host>`, no beat)."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.processes import Service, freeze, thaw

QUEUES = ("default", "raster", "print", "webhooks", "fetch", "audit")
READY_LINE = b" ready."
STARTUP_TIMEOUT_SECONDS = 60.0
# The beat tasks whose rounds `wait_rounds` counts.
ROUND_TASKS = {"poll": "production.printer_poll", "reconcile": "production.reconcile"}

# Fast clocks for tests: beat polls printers every second, a dead worker's claim runs out after 5 s.
FAST_PRODUCTION_ENV = {
    "PRODUCTION_POLL_SECONDS": "1",
    "PRODUCTION_CLAIM_LEASE_SECONDS": "5",
    "PRODUCTION_RETRY_BASE_SECONDS": "1",
    "PRODUCTION_RETRY_CAP_SECONDS": "4",
}


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str | Callable[[], str] = "condition",
) -> Any:
    """Poll `predicate` until it returns something truthy and return that; fail the test at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            description = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {description}")
        time.sleep(interval)


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """A dj-database-url URL for the database Django is connected to (the pytest-django test database)."""
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


def queues_purge(*, broker_url: str, queues: Sequence[str] = QUEUES) -> int:
    """Empty our queues and the transport's unacknowledged set: other tests' leftovers must not run here."""
    from workers.app import app

    removed = 0
    with app.connection_for_write(broker_url) as connection:
        channel: Any = connection.default_channel  # the transport's Channel; StdChannel types too little
        for queue in queues:
            removed += int(channel.queue_purge(queue) or 0)
        client = getattr(channel, "client", None)  # Redis: messages a killed worker held stay "unacked"
        if client is not None:
            client.delete(channel.unacked_key, channel.unacked_index_key, channel.unacked_mutex_key)
    return removed


class CeleryWorker:
    """`.venv/bin/celery -A workers worker -B` in its own process group, logging into `log`."""

    def __init__(
        self,
        *,
        work_dir: Path,
        env: Mapping[str, str],
        project_dir: Path,
        broker_url: str | None = None,
        database_url: str | None = None,
        queues: Sequence[str] = QUEUES,
        beat: bool = True,
    ) -> None:
        """`broker_url` / `database_url`, when given, win over `env` and the inherited environment: a test
        points the worker at a private Redis or PostgreSQL (tests/support/redis_server.py, postgres_server.py)
        without the test command's CELERY_BROKER_URL / DATABASE_URL leaking in. `queues` are the worker's
        `-Q`; `beat=False` leaves out the embedded beat (a deployment runs exactly one)."""
        self.work_dir = work_dir
        self.queues = tuple(queues)
        self.beat = beat
        self.log = work_dir / "celery-worker.log"
        self.project_dir = project_dir
        explicit = {"CELERY_BROKER_URL": broker_url, "DATABASE_URL": database_url}
        self.env = {
            **os.environ,
            **FAST_PRODUCTION_ENV,
            **env,
            **{name: url for name, url in explicit.items() if url is not None},
        }
        self.starts = 0
        self._service: Service | None = None

    @property
    def pid(self) -> int:
        assert self._service is not None
        return self._service.pid

    @property
    def is_running(self) -> bool:
        return (
            self._service is not None
            and self._service.process is not None
            and self._service.process.poll() is None
        )

    def command(self) -> list[str]:
        celery = Path(sys.executable).parent / "celery"
        return [
            str(celery),
            "-A",
            "workers",
            "worker",
            "-Q",
            ",".join(self.queues),
            "-c",
            "1",
            "--without-mingle",
            "--without-gossip",
            *(("-B", "--schedule", str(self.work_dir / "celerybeat-schedule")) if self.beat else ()),
            "-n",
            f"e2e-{os.getpid()}-{self.work_dir.name}-{self.starts}@%h",  # unique per worker of a test
            "--loglevel",
            "INFO",
        ]

    def start(self, *, purge: bool = False) -> CeleryWorker:
        """Start and wait for "ready"; `purge` empties the queues first (fresh test); a restart keeps them."""
        assert not self.is_running, "worker already running"
        if purge:
            queues_purge(broker_url=self.env["CELERY_BROKER_URL"], queues=self.queues)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_offset()
        self.starts += 1
        self._service = Service(self.command(), log=self.log, env=self.env, cwd=self.project_dir).start()
        service = self._service
        wait_until(
            lambda: self._logged_since(offset, READY_LINE) or not self.is_running,
            timeout=STARTUP_TIMEOUT_SECONDS,
            interval=0.1,
            what=lambda: f"celery worker to be ready; log tail:\n{self.log_tail()}",
        )
        if not self.is_running:
            raise RuntimeError(
                f"celery worker exited with {service.process and service.process.returncode}:\n"
                f"{self.log_tail()}"
            )
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group (main process, pool child, embedded beat): no cleanup at all."""
        if self._service is not None:
            self._service.kill(signal.SIGKILL)

    def restart(self) -> CeleryWorker:
        self.kill()
        return self.start(purge=False)

    def pause(self) -> None:
        """Main process, pool and beat frozen mid-task (processes.freeze): claims and broker connection held,
        the clock going on."""
        freeze(self._service.process if self._service else None)

    def resume(self) -> None:
        thaw(self._service.process if self._service else None)

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop()

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_bytes()[-characters:].decode(errors="replace") if self.log.exists() else ""

    def log_offset(self) -> int:
        """Where the log ends now: what the worker logs from here on is `_log_since` this offset."""
        return self.log.stat().st_size if self.log.exists() else 0

    def _log_since(self, offset: int) -> str:
        with self.log.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def tasks_received_since(self, offset: int) -> list[str]:
        """Names of the tasks the worker took from the broker since log byte `offset`, in order."""
        return re.findall(r"Task ([\w.]+)\[[0-9a-f-]+\] received", self._log_since(offset))

    def rounds_since(self, offset: int, task: str) -> int:
        """Whole runs of `task` since log byte `offset`: received after it, and then succeeded."""
        text = self._log_since(offset)
        received = re.findall(rf"Task {re.escape(task)}\[([0-9a-f-]+)\] received", text)
        return sum(f"[{task_id}] succeeded" in text for task_id in received)

    def wait_rounds(self, *, poll: int = 0, reconcile: int = 0, timeout: float = 30.0) -> None:
        """Wait until the embedded beat's printer poll and reconciler have each run this many whole rounds
        that began after this call. A round that fails does not count, so it ends in a timeout."""
        assert self.beat, "only a worker with the embedded beat runs the poll and reconcile rounds"
        offset = self.log_offset()
        wanted = {ROUND_TASKS["poll"]: poll, ROUND_TASKS["reconcile"]: reconcile}
        wait_until(
            lambda: all(self.rounds_since(offset, task) >= count for task, count in wanted.items()),
            timeout=timeout,
            interval=0.1,
            what=lambda: (
                f"{poll} poll and {reconcile} reconcile rounds; seen "
                f"{[self.rounds_since(offset, task) for task in wanted]}; log tail:\n{self.log_tail()}"
            ),
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _logged_since(self, offset: int, marker: bytes) -> bool:
        return self.log.exists() and marker.decode() in self._log_since(offset)


@contextmanager
def default_queue_worker(
    *, work_dir: Path, project_dir: Path, broker_url: str, database_url: str
) -> Iterator[CeleryWorker]:
    """A worker of the `default` queue alone, without beat, on `broker_url` (a private Redis), its queue
    purged first; stopped on leaving."""
    worker = CeleryWorker(
        work_dir=work_dir,
        env={},
        project_dir=project_dir,
        broker_url=broker_url,
        database_url=database_url,
        queues=("default",),
        beat=False,
    )
    try:
        yield worker.start(purge=True)
    finally:
        worker.stop()
