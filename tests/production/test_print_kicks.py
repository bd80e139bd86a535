"""The printer poll's nudge for `ready` jobs: only as many submit messages per print queue as the queue lacks
against its ready jobs, as the reconciler does for rasters.

Every poll used to send one for every ready job: a queue no print worker takes from (a print host no worker
serves, a worker stopped or crash-looping) gained a message a job every 10 s, in the Redis that holds the
cache too, and the worker, once back, worked through thousands of no-ops before new work.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from lab.orders.states import OrderStatus
from lab.production.holds import order_hold
from lab.production.models import Printer, PrintJob
from lab.production.states import JobStatus
from lab.production.tracking import printer_poll
from tests.builders import hotfolder_printer, job_walk, person, released_order
from tests.support.broker import emptied_queues, queued_tasks

pytestmark = pytest.mark.django_db
J = JobStatus
QUEUE = "print.gone"  # no print worker consumes it: the printer's host has none


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    with emptied_queues(QUEUE) as client:
        yield client


@pytest.fixture
def unserved_printer() -> Printer:
    """A hot folder attached to a print host no worker serves."""
    return hotfolder_printer("minilab-gone", sizes=["4x6"], host="gone")


def _ready_job(printer: Printer) -> PrintJob:
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    return job_walk(job, J.READY)


def _submits(broker: redis.Redis, job: PrintJob) -> int:
    return queued_tasks(broker, QUEUE).count(("production.print_job_submit", {"job_id": job.pk}))


def test_polls_of_a_queue_nobody_consumes_leave_one_submit_message_for_a_ready_job(
    broker: redis.Redis, unserved_printer: Printer
) -> None:
    # given a ready job whose message was lost (a test's commit sends nothing), on a queue nobody takes from
    job = _ready_job(unserved_printer)

    # when the poll runs three rounds
    for _ in range(3):
        printer_poll()

    # then the first round sent its submit, and the others found it waiting (before: one a round, 8,640 a day)
    assert _submits(broker, job) == 1
    assert len(queued_tasks(broker, QUEUE)) == 1


def test_a_ready_job_whose_message_was_lost_again_is_nudged_again(
    broker: redis.Redis, unserved_printer: Printer
) -> None:
    # given a ready job the poll sent, whose message was then lost (a broker restarted without persistence)
    job = _ready_job(unserved_printer)
    assert printer_poll()["submit_requeued"] == 1
    broker.delete(QUEUE)

    # when the poll runs again, then the job, still ready, gets one message again
    assert printer_poll()["submit_requeued"] == 1
    assert _submits(broker, job) == 1


def test_the_jobs_of_an_order_on_hold_are_not_kicked(broker: redis.Redis, unserved_printer: Printer) -> None:
    # given a ready job whose order a technician put on hold (a question to the customer)
    job = _ready_job(unserved_printer)
    order_hold(order_ref=job.order.ref, actor=person("technician"), message="Which photo goes first?")
    job.order.refresh_from_db()
    assert job.order.status == OrderStatus.ON_HOLD

    # when the poll runs, then nothing is sent for it: its submit would only answer `waiting`, and the release
    # of the hold sends it (before: one message a round, for as long as the customer took to answer)
    counts = printer_poll()
    assert "submit_requeued" not in counts
    assert queued_tasks(broker, QUEUE) == []
