"""Production installs requirements.txt alone: from such a venv, `celery worker` and `celery beat` start
against Redis and a task sent through Redis (by `celery call` and by beat) runs in the worker."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.celery_worker import wait_until
from tests.support.processes import Service
from tests.support.redis_server import PrivateRedis
from tests.support.runtime_venv import INSTALL_TIMEOUT_SECONDS, PROJECT_DIR, runtime_venv

# The first test builds the venv (pip's own time limit) when requirements.txt changed or on a fresh checkout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS + 120)]

TASK = "production.printer_poll"  # harmless: polls the printers of an empty database
# Variables of the test command that must not reach the production-like processes.
NOT_INHERITED = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "CACHE_URL",
    "LAB_STORAGE_DIR",
    "HOTFOLDER_ROOT",
    "CUPS_SERVER",
    "DJANGO_SETTINGS_MODULE",
)


@pytest.fixture(scope="module")
def venv() -> Path:
    return runtime_venv()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


def succeeded(log: Path, task_id: str = r"[0-9a-f-]+") -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return re.findall(rf"Task {re.escape(TASK)}\[({task_id})\] succeeded", text)


def is_running(service: Service) -> bool:
    return service.process is not None and service.process.poll() is None


def test_requirements_txt_venv_lacks_the_dev_packages(venv: Path):
    """This venv stands for production only while the dev requirements (which mask gaps) stay out of it."""
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    ).stdout.lower()
    names = {line.partition("==")[0] for line in listed.splitlines()}
    assert {"celery", "kombu", "redis"} <= names
    assert names.isdisjoint({"pytest", "mypy", "localstripe", "playwright"})


def test_worker_and_beat_from_requirements_txt_alone_run_tasks_through_redis(
    venv: Path, private_redis: PrivateRedis, tmp_path: Path
):
    environment = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    environment |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'lab.sqlite3'}",
        "CELERY_BROKER_URL": private_redis.url(db=0),
        "LAB_VAR_DIR": str(tmp_path / "var"),
        "PRODUCTION_POLL_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    python, celery = str(venv / "bin" / "python"), str(venv / "bin" / "celery")

    def run(*arguments: str) -> str:
        completed = subprocess.run(
            list(arguments), cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=120
        )
        assert completed.returncode == 0, f"{arguments} failed:\n{completed.stdout}{completed.stderr}"
        return completed.stdout

    run(python, "manage.py", "migrate", "--no-input", "-v", "0")
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    queues = "default,raster,print,webhooks,fetch,audit"
    worker_command = [celery, "-A", "workers", "worker", "-Q", queues, "-c", "1"]
    worker_command += [
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "INFO",
        "-n",
        f"rt-{os.getpid()}@%h",
    ]
    worker = Service(
        worker_command,
        log=worker_log,
        env=environment,
        cwd=PROJECT_DIR,
    )
    beat = Service(
        [
            celery,
            "-A",
            "workers",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        log=beat_log,
        env=environment,
        cwd=PROJECT_DIR,
    )

    def tail(log: Path) -> str:
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"

    try:
        worker.start()
        wait_until(
            lambda: " ready." in tail(worker_log) or not is_running(worker),
            timeout=60,
            what=lambda: f"the worker to be ready; log:\n{tail(worker_log)}",
        )
        assert is_running(worker), tail(worker_log)

        task_id = run(celery, "-A", "workers", "call", TASK).strip()
        wait_until(
            lambda: succeeded(worker_log, re.escape(task_id)),
            timeout=30,
            what=lambda: f"task {task_id} to succeed; worker log:\n{tail(worker_log)}",
        )

        beat.start()
        wait_until(
            lambda: [found for found in succeeded(worker_log) if found != task_id],
            timeout=30,
            what=lambda: (
                f"a beat-sent {TASK} to succeed; beat log:\n{tail(beat_log)}\nworker:\n{tail(worker_log)}"
            ),
        )
        assert is_running(beat), tail(beat_log)
    finally:
        beat.stop()
        worker.stop()
