"""Print tasks go to the queue of the host attached to the printer; raster tasks to the shared raster queue.

Checked on the real broker: the messages land in Redis lists named after the queues.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from lab.production import rasterizing, routing
from lab.production.models import PrintJob
from tests.builders import hotfolder_printer, paid_order
from tests.support.broker import emptied_queues, queued_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    with emptied_queues("print.hosta", "print", "raster") as client:
        yield client


def test_submit_goes_to_the_print_host_queue_and_raster_to_the_raster_queue(
    settings, broker, django_capture_on_commit_callbacks
):
    hotfolder_printer("attached", sizes=["4x6"], host="hosta")
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    with django_capture_on_commit_callbacks(execute=True):
        routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()

    assert queued_tasks(broker, "raster") == [("production.print_job_rasterize", {"job_id": job.pk})]
    rasterizing.print_job_rasterize(job_id=job.pk, worker="w:1")

    assert queued_tasks(broker, "print.hosta") == [("production.print_job_submit", {"job_id": job.pk})]
    assert broker.llen("print") == 0
