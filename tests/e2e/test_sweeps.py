"""Beat's sweeps on a real worker (lab/celery.py): a sweep that succeeded less than half its interval ago is
skipped, so sweeps that piled up in a queue that fell behind, or a second beat's copies, run once; whether one
runs is judged on the database's clock, never on beat's against the worker's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.beat import ScheduleEntry, Scheduler
from celery.result import AsyncResult
from django.conf import settings
from django.utils import timezone

from lab.orders.models import Order
from lab.production.models import SweepRun
from tests.builders import paid_order
from tests.e2e.conftest import app_env
from tests.support.celery_worker import CeleryWorker, queues_purge, wait_until
from tests.support.cups import PrivateCups
from tests.support.web_server import PROJECT_DIR
from workers.app import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]
RECONCILE = "production.reconcile"


@pytest.fixture
def default_worker(tmp_path: Path, private_cups: PrivateCups) -> Iterator[CeleryWorker]:
    """A `-Q default` worker without an embedded beat: the test sends the sweeps itself."""
    worker = CeleryWorker(
        work_dir=tmp_path / "worker",
        project_dir=PROJECT_DIR,
        env=app_env(private_cups),
        queues=("default",),
        beat=False,
    )
    yield worker
    worker.stop()


def beat_sends(task: str) -> AsyncResult[Any]:
    """The task's message as beat sends it: its schedule entry (lab/celery.py), through beat's own code."""
    ((name, entry),) = [
        (name, entry) for name, entry in app.conf.beat_schedule.items() if entry["task"] == task
    ]
    scheduler = Scheduler(app, lazy=True)
    sent: AsyncResult[Any] = scheduler.apply_async(ScheduleEntry(name=name, app=app, **entry), advance=False)
    return sent


def order_status(order: Order) -> str:
    order.refresh_from_db()
    return order.status


def an_order_whose_release_was_lost() -> Order:
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert queues_purge(broker_url=str(settings.CELERY_BROKER_URL)) >= 1  # its release message, lost
    return order


def test_sweeps_that_piled_up_or_came_from_a_second_beat_run_once(default_worker: CeleryWorker) -> None:
    # given a paid order whose release message was lost, and three reconcile sweeps waiting in a queue with no
    # worker (fallen behind; each sent by a scheduler of its own, as two beats would)
    order = an_order_whose_release_was_lost()
    sent = [beat_sends(RECONCILE) for _ in range(3)]

    # when the worker starts and takes them, one after the other
    default_worker.start()

    def outcome(log: str, sweep: AsyncResult[Any]) -> str | None:
        return next(
            (word for word in ("succeeded", "ignored") if f"{RECONCILE}[{sweep.id}] {word}" in log), None
        )

    wait_until(
        lambda: all(outcome(default_worker.log_text(), sweep) for sweep in sent),
        timeout=30,
        what=lambda: f"the three sweeps done; log:\n{default_worker.log_tail()}",
    )

    # then the first ran and released the order, and the two after it were skipped: it had just succeeded
    log = default_worker.log_text()
    assert [outcome(log, sweep) for sweep in sent] == ["succeeded", "ignored", "ignored"]
    assert order_status(order) == "in_production"
    assert SweepRun.objects.filter(task=RECONCILE).count() == 1


def test_a_sweep_sent_by_a_beat_whose_clock_runs_two_hours_behind_is_run(
    default_worker: CeleryWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's `expires` is a time on the sender's clock that the worker compares with its own: the sweeps
    expired after one interval, so a worker whose clock ran more than that ahead of beat's discarded every
    one ("Discarding revoked task"), the retention purge's too, and lost releases were never made up."""
    order = an_order_whose_release_was_lost()
    default_worker.start()

    # when a beat whose clock runs two hours behind the worker's sends the reconcile sweep
    true_now = app.now
    monkeypatch.setattr(app, "now", lambda: true_now() - timedelta(hours=2))
    sweep = beat_sends(RECONCILE)

    # then the worker runs it, and it releases the order
    wait_until(
        lambda: f"{RECONCILE}[{sweep.id}] succeeded" in default_worker.log_text(),
        timeout=30,
        what=lambda: f"the sweep {sweep.id} run; log:\n{default_worker.log_tail()}",
    )
    assert "Discarding revoked task" not in default_worker.log_text()
    assert order_status(order) == "in_production"


def test_a_worker_and_its_beat_killed_turn_their_sweeps_overdue_on_the_board_until_they_run_again(
    worker: CeleryWorker, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    from django.urls import reverse

    from lab.production import sweeps
    from tests.builders import client_as

    # The board reads the schedule the worker's beat runs (PRODUCTION_POLL_SECONDS=1 there: a poll every
    # second, a reconcile every 3); overdue after 2 intervals and 1 s.
    watched = {"production.printer_poll": timedelta(seconds=1), "production.reconcile": timedelta(seconds=3)}
    monkeypatch.setattr(sweeps, "scheduled_sweeps", lambda: watched)
    settings.SWEEP_OVERDUE_FACTOR, settings.SWEEP_OVERDUE_GRACE_SECONDS = 2, 1
    client, _ = client_as("technician")

    def board() -> str:
        return client.get(reverse("staff:board_live"), headers={"HX-Request": "true"}).content.decode()

    def overdue() -> set[str]:
        return {status.task for status in sweeps.sweeps_overdue()}

    def all_recently_succeeded() -> bool:
        statuses = [status for status in sweeps.sweeps_status() if status.task in watched]
        return len(statuses) == len(watched) and all(s.age is not None and not s.overdue for s in statuses)

    # given the worker's beat running the sweeps, which the worker records as they succeed
    wait_until(all_recently_succeeded, timeout=30, what=lambda: f"sweeps run; log:\n{worker.log_tail()}")
    assert 'id="sweeps-overdue"' not in board()

    # when the worker and its beat are SIGKILLed
    worker.kill()

    # then both sweeps turn overdue on the board within their allowance, and nobody had to be told
    wait_until(lambda: overdue() == set(watched), timeout=15, what="both sweeps overdue")
    page = board()
    assert 'id="sweeps-overdue"' in page
    assert all(f"<code>{task}</code>: last succeeded" in page for task in watched), page

    # when it is started again, then the alarm clears by itself
    worker.start()
    wait_until(all_recently_succeeded, timeout=30, what=lambda: f"sweeps again; log:\n{worker.log_tail()}")
    assert 'id="sweeps-overdue"' not in board()
