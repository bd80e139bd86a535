"""Beat's sweeps expire after one interval (lab/celery.py): a real worker drops a sweep message that waited in
its queue longer than that, instead of running it late and back to back with the ones after it, and runs the
next one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from lab.orders.models import Order
from tests.builders import paid_order
from tests.e2e.conftest import app_env
from tests.support.celery_worker import CeleryWorker, queues_purge, wait_until
from tests.support.cups import PrivateCups
from tests.support.web_server import PROJECT_DIR
from workers.app import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


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


def order_status(order: Order) -> str:
    order.refresh_from_db()
    return order.status


def test_a_reconcile_sweep_that_waited_past_its_interval_is_dropped_and_the_next_one_runs(
    default_worker: CeleryWorker,
) -> None:
    # given a paid order whose release message was lost, and a sweep waiting in a queue with no worker
    # (fallen behind) for longer than its expiry
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert queues_purge(broker_url=str(settings.CELERY_BROKER_URL)) >= 1  # its release message, lost
    stale = app.send_task("production.reconcile", queue="default", expires=1.0)
    time.sleep(1.5)

    # when the worker starts and takes it
    default_worker.start()
    # Celery's words for an expired message
    dropped = f"Discarding revoked task: production.reconcile[{stale.id}]"
    wait_until(
        lambda: dropped in default_worker.log_text(),
        timeout=30,
        what=lambda: f"the stale sweep {stale.id} dropped; log:\n{default_worker.log_tail()}",
    )

    # then it did not run: the order is still waiting for its release
    assert f"production.reconcile[{stale.id}] succeeded" not in default_worker.log_text()
    assert order_status(order) == "paid"

    # and the next sweep, on time, releases it
    app.send_task("production.reconcile", queue="default", expires=30.0)
    wait_until(lambda: order_status(order) == "in_production", timeout=30, what="the order released")


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
