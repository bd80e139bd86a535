"""CUPS job completion as an event: the printer-events listener (`manage.py printer_events`) against the
session's private cupsd, with a worker whose beat polls printers only once an hour, so a job that reaches
`printed` was read because cupsd said it changed, not by a poll round."""

from __future__ import annotations

import re

import pytest

from lab.orders.models import Order
from lab.production.models import JobEvent, PrintJob
from printers.cups_events import JOB_EVENTS
from printers.cups_ipp import connect
from tests.builders import PHOTO_300_DPI, paid_order
from tests.e2e.conftest import LARGE_QUEUE, PHOTO_QUEUE, LabPrinters
from tests.support.celery_worker import CeleryWorker, wait_until
from tests.support.printer_events import PrinterEventsListener

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

ORDER_DONE_SECONDS = 60.0
# Longer than any test: beat's first printer poll (and reconcile) would come after an hour.
POLL_NEVER_SECONDS = "3600"
POLL_ROUND = re.compile(r"Task production\.(printer_poll|reconcile)\[")


def start_without_poll(worker: CeleryWorker) -> CeleryWorker:
    worker.env["PRODUCTION_POLL_SECONDS"] = POLL_NEVER_SECONDS
    return worker.start(purge=True)


def wait_ready_to_pack(order: Order, worker: CeleryWorker, listener: PrinterEventsListener) -> None:
    def status() -> str:
        order.refresh_from_db()
        return order.status

    wait_until(
        lambda: status() == "ready_to_pack",
        timeout=ORDER_DONE_SECONDS,
        interval=0.1,
        what=lambda: (
            f"order ready_to_pack; jobs {list(PrintJob.objects.filter(order=order).values_list('status'))};"
            f"\nlistener log:\n{listener.log_tail()}\nworker log:\n{worker.log_tail()}"
        ),
    )


def test_a_job_cups_completed_is_printed_by_the_listener_with_no_poll_round(
    lab_printers: LabPrinters, worker_unstarted: CeleryWorker, printer_events: PrinterEventsListener
) -> None:
    # given the listener on the private cupsd and a worker whose beat never polls printers in this test
    worker = start_without_poll(worker_unstarted)
    printer_events.start().wait_watching(lab_printers.cups.server)

    # when an order for both printers is paid
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-8X10-MATTE", 1)], photo=PHOTO_300_DPI)

    # then each job is printed once and the order is ready to pack
    wait_ready_to_pack(order, worker, printer_events)
    jobs = list(PrintJob.objects.filter(order=order).order_by("pk").select_related("printer"))
    assert [(job.status, job.printer and job.printer.name, job.backend_state) for job in jobs] == [
        ("printed", PHOTO_QUEUE, "completed"),
        ("printed", LARGE_QUEUE, "completed"),
    ]
    assert [JobEvent.objects.filter(job=job, kind="printed").count() for job in jobs] == [1, 1]
    assert lab_printers.received_titles(PHOTO_QUEUE) == [f"{jobs[0].title}.jpg"]
    assert lab_printers.received_titles(LARGE_QUEUE) == [f"{jobs[1].title}.jpg"]
    # and no poll or reconcile round ran: the listener read the jobs when cupsd said they completed
    assert POLL_ROUND.findall(worker.log_text()) == []


def test_the_listener_subscribes_again_when_its_subscription_is_lost(
    lab_printers: LabPrinters, worker_unstarted: CeleryWorker, printer_events: PrinterEventsListener
) -> None:
    # given the listener watching, with no poll, and one order printed through it
    worker = start_without_poll(worker_unstarted)
    printer_events.start().wait_watching(lab_printers.cups.server)
    first = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)], photo=PHOTO_300_DPI)
    wait_ready_to_pack(first, worker, printer_events)

    # when its job-event subscription disappears from cupsd (cancelled, or cupsd's state was reset)
    connection = connect(server=lab_printers.cups.server)
    (lost,) = [
        int(subscription["notify-subscription-id"])
        for subscription in connection.getSubscriptions("ipp://localhost/")
        if subscription.get("notify-events") == list(JOB_EVENTS)
    ]
    connection.cancelSubscription(lost)
    wait_until(
        lambda: "watch lost" in printer_events.log_text(),
        timeout=30,
        what=lambda: f"the listener to notice; log:\n{printer_events.log_tail()}",
    )

    # then it subscribes again and the next order is printed through its events too
    second = paid_order(lines=[("PRINT-5X7-GLOSSY", 1)], photo=PHOTO_300_DPI)
    wait_ready_to_pack(second, worker, printer_events)
    renewed = [
        int(subscription["notify-subscription-id"])
        for subscription in connection.getSubscriptions("ipp://localhost/")
        if subscription.get("notify-events") == list(JOB_EVENTS)
    ]
    assert len(renewed) == 1 and renewed != [lost]
    assert list(PrintJob.objects.filter(order=second).values_list("status", flat=True)) == ["printed"]
    assert POLL_ROUND.findall(worker.log_text()) == []


def test_jobs_that_completed_while_the_listener_was_killed_are_read_when_it_is_back(
    lab_printers: LabPrinters, worker_unstarted: CeleryWorker, printer_events: PrinterEventsListener
) -> None:
    # given the listener watching, with no poll, and an order whose jobs wait at the paused printers
    worker = start_without_poll(worker_unstarted)
    printer_events.start().wait_watching(lab_printers.cups.server)
    for queue in (PHOTO_QUEUE, LARGE_QUEUE):
        lab_printers.cups.disable(queue)
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-8X10-MATTE", 1)], photo=PHOTO_300_DPI)
    wait_until(
        lambda: set(PrintJob.objects.filter(order=order).values_list("status", flat=True)) == {"submitted"},
        timeout=ORDER_DONE_SECONDS,
        interval=0.05,
        what=lambda: f"both jobs submitted; worker log:\n{worker.log_tail()}",
    )

    # when the listener is SIGKILLed and CUPS completes both jobs while it is down
    printer_events.kill()
    for queue in (PHOTO_QUEUE, LARGE_QUEUE):
        lab_printers.cups.enable(queue)
    connection = connect(server=lab_printers.cups.server)
    handles = [int(job.backend_job_id) for job in PrintJob.objects.filter(order=order)]
    wait_until(
        lambda: all(
            connection.getJobAttributes(h, requested_attributes=["job-state"])["job-state"] == 9
            for h in handles
        ),
        timeout=ORDER_DONE_SECONDS,
        what="CUPS to complete both jobs",
    )
    assert set(PrintJob.objects.filter(order=order).values_list("status", flat=True)) == {"submitted"}

    # then, started again, it reads them: each printed once, the order ready to pack, no poll round
    printer_events.start().wait_watching(lab_printers.cups.server)
    wait_ready_to_pack(order, worker, printer_events)
    jobs = list(PrintJob.objects.filter(order=order).order_by("pk"))
    assert [(job.status, JobEvent.objects.filter(job=job, kind="printed").count()) for job in jobs] == [
        ("printed", 1),
        ("printed", 1),
    ]
    assert lab_printers.received_titles(PHOTO_QUEUE) == [f"{jobs[0].title}.jpg"]
    assert lab_printers.received_titles(LARGE_QUEUE) == [f"{jobs[1].title}.jpg"]
    assert POLL_ROUND.findall(worker.log_text()) == []


def test_a_listener_killed_is_shown_on_the_board_until_it_runs_again(
    lab_printers: LabPrinters,
    printer_events: PrinterEventsListener,
    monkeypatch: pytest.MonkeyPatch,
    settings,
) -> None:

    from django.urls import reverse

    from lab.production import sweeps
    from tests.builders import client_as

    # Only the listener is watched here (beat runs nowhere in this test); overdue after 2 intervals and 1 s.
    monkeypatch.setattr(sweeps, "scheduled_sweeps", dict)
    settings.SWEEP_OVERDUE_FACTOR, settings.SWEEP_OVERDUE_GRACE_SECONDS = 2, 1
    client, _ = client_as("technician")

    def board() -> str:
        return client.get(reverse("staff:board_live"), headers={"HX-Request": "true"}).content.decode()

    def listener_status() -> sweeps.SweepStatus:
        (status,) = sweeps.sweeps_status()
        return status

    # given the listener watching the lab's cupsd, and recording that it is alive
    printer_events.start().wait_watching(lab_printers.cups.server)
    wait_until(lambda: listener_status().age is not None, timeout=15, what="the listener alive")
    assert not listener_status().overdue and 'id="sweeps-overdue"' not in board()

    # when it is SIGKILLed, then within its allowance the board shows it stopped
    printer_events.kill()
    wait_until(lambda: listener_status().overdue, timeout=20, interval=0.5, what="the listener overdue")
    assert "<code>printer_events</code>: last succeeded" in board()

    # when it is started again, then the card clears by itself
    printer_events.start().wait_watching(lab_printers.cups.server)
    wait_until(lambda: not listener_status().overdue, timeout=15, what="the listener alive again")
    assert 'id="sweeps-overdue"' not in board()
