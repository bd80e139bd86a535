"""Workers take no remote-control commands (lab/celery.py `worker_enable_remote_control`): nothing of the lab
sends any, and anyone who could publish to the broker stopped every worker with one broadcast `shutdown`
(exit 0, which systemd's Restart=on-failure left stopped) or quietly stopped a queue with `cancel_consumer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection

from lab.celery import app
from tests.support.celery_worker import CeleryWorker, database_url, default_queue_worker, wait_until
from tests.support.redis_server import PrivateRedis

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROBE = "broker_control.probe"  # a task no worker knows: the worker logs that it took it, and drops it
PROBE_TAKEN = f"Received unregistered task of type '{PROBE}'"


def test_the_workers_take_no_remote_control_commands():
    assert app.conf.worker_enable_remote_control is False


def test_every_worker_unit_is_started_again_after_any_exit():
    # A worker that exits 0 (as a remote `shutdown` made them) was left stopped by Restart=on-failure.
    units = sorted((PROJECT_DIR / "deploy" / "systemd").glob("*.service"))
    workers = [path for path in units if " worker -Q " in path.read_text()]
    restart = {
        path.name: [line for line in path.read_text().splitlines() if line.startswith("Restart=")]
        for path in workers
    }

    assert len(workers) == 6
    assert {name: lines for name, lines in restart.items() if lines != ["Restart=always"]} == {}


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[CeleryWorker]:
    with (
        PrivateRedis() as redis_server,
        default_queue_worker(
            work_dir=tmp_path / "worker",
            project_dir=PROJECT_DIR,
            broker_url=redis_server.url(db=0),
            database_url=database_url(connection.settings_dict),
        ) as worker,
    ):
        yield worker


@pytest.mark.e2e
def test_a_broadcast_shutdown_and_cancel_consumer_leave_a_worker_running_and_consuming(
    worker: CeleryWorker, monkeypatch: pytest.MonkeyPatch
):
    # given a worker of the default queue that has taken a message: its event loop runs, and with remote
    # control on, it listens to broadcasts by then (right after "ready." a broadcast may come too early);
    # and a client of the broker that is no part of the lab (a control broadcast goes out through its app's
    # own broker, whatever connection it is given; and Celery takes that from the environment first)
    monkeypatch.setenv("CELERY_BROKER_URL", worker.env["CELERY_BROKER_URL"])
    outsider = Celery("outsider", broker=worker.env["CELERY_BROKER_URL"])
    try:
        _probe(worker, outsider, taken=1)

        # when it broadcasts cancel_consumer and shutdown
        outsider.control.broadcast("cancel_consumer", arguments={"queue": "default"})
        outsider.control.broadcast("shutdown")

        # then the worker still takes the default queue's messages, two more (the first may have come before
        # the broadcasts were handled), and runs
        _probe(worker, outsider, taken=2)
        _probe(worker, outsider, taken=3)
    finally:
        outsider.close()
    assert worker.is_running, worker.log_tail()


def _probe(worker: CeleryWorker, sender: Celery, *, taken: int) -> None:
    """Send a probe to the default queue and wait until the worker has taken `taken` of them (or stopped)."""
    sender.send_task(PROBE, queue="default")
    wait_until(
        lambda: worker.log_text().count(PROBE_TAKEN) >= taken or not worker.is_running,
        timeout=30,
        interval=0.1,
        what=lambda: f"the worker to take probe {taken}; log tail:\n{worker.log_tail()}",
    )
    assert (worker.is_running, worker.log_text().count(PROBE_TAKEN)) == (True, taken), worker.log_tail()
