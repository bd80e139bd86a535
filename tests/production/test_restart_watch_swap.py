"""A print server that starts on an empty state numbers its subscriptions from 1 again, and the
printer-events listener may reach it first: the id of a printer's old restart watch can then name the
listener's job subscription. The lab must notice that the watch is not its own, or it never hears a restart
of that server again. Against a real private cupsd, started afresh.
"""

from __future__ import annotations

import pytest

from lab.production import rasterizing
from lab.production.backends import backend_for
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.states import JobStatus
from lab.production.submission import print_job_submit
from printers.base import JobState
from printers.cups_events import CupsEventFeed
from printers.errors import PrinterError
from tests.builders.production import WORKER, cups_printer, released_order
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db
J = JobStatus
WAITING_FOR_DEVICE = "cups-waiting-for-job-completed"


def _submitted_job(printer: Printer) -> PrintJob:
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    return job


def _pulled(feed: CupsEventFeed) -> bool:
    try:
        feed.pull()
    except PrinterError:
        return False  # cupsd still starting
    return True


@pytest.mark.parametrize(
    "is_checked_at_once",
    [True, False],
    ids=["checked before the jobs (no event to tell)", "checked after them (job events)"],
)
def test_a_restart_watch_whose_id_now_names_the_listeners_job_subscription_is_replaced(
    is_checked_at_once: bool,
) -> None:
    with PrivateCups() as cups_server:
        # given a printer whose restart watch has heard two restarts, and the server's events listener
        printer = cups_printer(cups_server, "swap_lab", print_seconds=3)
        backend = backend_for(printer)
        assert server_restarts_check(printer)
        feed = CupsEventFeed(server=cups_server.server)
        feed.pull()
        for _ in range(2):
            cups_server.restart_cupsd()
            assert server_restarts_check(printer)
        printer.refresh_from_db()
        old_watch = printer.server_watch_id

        # when the print host starts with no state and the listener subscribes first: its job subscription
        # gets the printer's old watch id ...
        cups_server.start_cupsd_afresh()
        wait_until(lambda: _pulled(feed), timeout=30, what="the listener to subscribe again")
        job_watch, restart_watch = feed.watches
        assert job_watch == old_watch
        if is_checked_at_once:
            assert server_restarts_check(printer)
        # ... two jobs print (their events are numbered past the old cursor) ...
        printed = [_submitted_job(printer).backend_job_id for _ in range(2)]
        wait_until(
            lambda: all(backend.job_info(handle).state is JobState.COMPLETED for handle in printed),
            timeout=30,
            what="two jobs to print",
        )
        assert server_restarts_check(printer)
        # ... and the host restarts while a third job is at the device
        third = _submitted_job(printer)
        wait_until(
            lambda: WAITING_FOR_DEVICE in backend.printer_status().reasons,
            timeout=30,
            what="the device to hold the third job's document",
        )
        cups_server.restart_cupsd()

        # then that restart is heard: the printer watches the server's restart subscription, and the job the
        # restart may send again is marked (it cannot end a plain `printed`)
        assert server_restarts_check(printer)
        printer.refresh_from_db()
        assert printer.server_watch_id == restart_watch
        third.refresh_from_db()
        assert third.backend_restarted
        assert JobEvent.objects.filter(job=third, kind="printer_restarted_job").count() == 1
