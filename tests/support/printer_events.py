"""Test harness: the printer-events listener (`manage.py printer_events`) as a subprocess against the test
database and a private cupsd, in its own process group, stopped by PID. `wait_watching(server)` returns once
it has pulled that cupsd's events (its subscriptions exist and its first sweep is under way)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.celery_worker import wait_until
from tests.support.processes import Service

STARTUP_TIMEOUT = 60.0  # seconds


class PrinterEventsListener:
    def __init__(self, *, work_dir: Path, env: Mapping[str, str], project_dir: Path) -> None:
        self.work_dir = work_dir
        self.log = work_dir / "printer-events.log"
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.project_dir = project_dir
        self._service: Service | None = None
        self._log_offset = 0  # where this run's lines start in the (appended) log

    @property
    def is_running(self) -> bool:
        return (
            self._service is not None
            and self._service.process is not None
            and self._service.process.poll() is None
        )

    def start(self) -> PrinterEventsListener:
        assert not self.is_running, "listener already running"
        self._log_offset = len(self.log_text())
        self._service = Service(
            [sys.executable, "manage.py", "printer_events"],
            log=self.log,
            env=self.env,
            cwd=self.project_dir,
        ).start()
        return self

    def wait_watching(self, server: str, *, timeout: float = STARTUP_TIMEOUT) -> PrinterEventsListener:
        wait_until(
            lambda: f"watching server={server}" in self.log_text()[self._log_offset :] or not self.is_running,
            timeout=timeout,
            interval=0.1,
            what=lambda: f"the listener to watch {server}; log tail:\n{self.log_tail()}",
        )
        assert self.is_running, f"the listener exited:\n{self.log_tail()}"
        return self

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop()

    def kill(self) -> None:
        """SIGKILL: whatever it read and had not acted on is lost with it."""
        if self._service is not None:
            self._service.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_text()[-characters:]
