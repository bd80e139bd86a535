"""Test harness: the app's web server (`gunicorn lab.wsgi`) as a subprocess on a free loopback port, and
`manage.py` commands, against an explicit database and broker (e.g. a private PostgreSQL and Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.support.processes import Service, free_port, wait_for

PROJECT_DIR = Path(__file__).resolve().parents[2]


UNTHROTTLED_CUSTOMERS = {
    name: "100000/min"
    for name in (
        "API_CUSTOMER_UPLOAD_THROTTLE",
        "API_CUSTOMER_QUOTE_THROTTLE",
        "API_CUSTOMER_ORDER_THROTTLE",
        "API_CUSTOMER_READ_THROTTLE",
        "API_GUEST_ORDER_EMAIL_THROTTLE",
    )
}


def app_environment(
    *, database_url: str, broker_url: str, var_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The inherited environment with the app pointed at exactly this database, broker and var dir.

    The per-customer and per-guest-address rates are opened up (a test may set its own in `extra`): a fault
    test places dozens of orders with one customer's token within minutes, which the production defaults
    (API_CUSTOMER_ORDER_THROTTLE 10/hour) would refuse; the limits themselves are tested in
    tests/api/test_throttling.py."""
    return {
        **os.environ,
        **UNTHROTTLED_CUSTOMERS,
        **(extra or {}),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "LAB_VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
    }


def django_manage(*arguments: str, env: Mapping[str, str], timeout: float = 300) -> str:
    """Run `manage.py <arguments>` with the test venv's Python; raise with its output when it fails."""
    completed = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=PROJECT_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(arguments)} exited with {completed.returncode}:\n"
            f"{(completed.stdout + completed.stderr)[-4000:]}"
        )
    return completed.stdout


class LabWebServer:
    """`gunicorn lab.wsgi` with one worker in its own process group, stopped by PID; `url` once started."""

    def __init__(self, *, work_dir: Path, env: Mapping[str, str]) -> None:
        self.work_dir = work_dir
        self.log = work_dir / "gunicorn.log"
        self.port = free_port()
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self._service = Service(
            [
                str(gunicorn),
                "lab.wsgi",
                "--config",
                str(PROJECT_DIR / "gunicorn.conf.py"),  # as scripts/run and the systemd unit
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
            ],
            log=self.log,
            env=dict(env),
            cwd=PROJECT_DIR,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._service.pid

    def start(self) -> LabWebServer:
        self._service.start()
        process = self._service.process
        assert process is not None
        wait_for(lambda: self._answers() or process.poll() is not None, timeout=60, what="gunicorn")
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{self.log_tail()}")
        return self

    def stop(self) -> None:
        self._service.stop()

    @property
    def is_running(self) -> bool:
        process = self._service.process
        return process is not None and process.poll() is None

    def kill(self) -> None:
        """SIGKILL gunicorn, its worker and all: requests in flight get no answer."""
        self._service.kill()

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_bytes()[-characters:].decode(errors="replace") if self.log.exists() else ""

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
