"""A print server that starts on an empty state numbers jobs and subscriptions from 1 again (a new container,
a reinstalled print host): the lab must never take the new job that bears an old number for its own, nor
the new subscription that bears an old id for its restart watch. Against a real private cupsd, started afresh.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.production import rasterizing
from lab.production.backends import backend_for, media_for
from lab.production.cancellation import printer_cancel
from lab.production.models import Printer, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.states import JobStatus
from lab.production.submission import print_job_submit
from lab.production.tracking import jobs_track
from printers.base import JobState
from printers.cups_ipp import connect
from printers.cups_subscriptions import RESTART_EVENTS, standing_watch
from tests.builders.production import WORKER, cups_printer, released_order
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db
J = JobStatus


def _submitted_job(printer: Printer) -> PrintJob:
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    return job


def test_a_job_number_given_again_is_not_read_as_ours_nor_cancelled_for_us(tmp_path: Path) -> None:
    photo = tmp_path / "other.jpg"
    photo.write_bytes(jpeg_bytes(60, 40))
    with PrivateCups() as cups_server:
        # given our job submitted to a stopped queue (it waits there) ...
        printer = cups_printer(cups_server, "reuse_lab", print_seconds=1)
        cups_server.disable("reuse_lab")
        ours = _submitted_job(printer)
        backend = backend_for(printer)

        # ... when the print host comes back with no state, and another sender's job gets our job's number
        cups_server.start_cupsd_afresh()
        other = backend.submit(path=photo, title="someone-else-7", media=media_for("4x6"), copies=1)
        assert other == ours.backend_job_id

        # then cancelling our order's job at the printer leaves the other job alone
        ours.status = J.CANCELLED
        printer_cancel(job=ours)
        assert backend.job_info(other).state is JobState.PENDING

        # ... and once the other job has printed, reading ours does not call ours printed: it is lost
        # (`unknown`: a person counts and decides), not another customer's print taken for it
        ours.refresh_from_db()
        cups_server.enable("reuse_lab")
        wait_until(
            lambda: backend.job_info(other).state is JobState.COMPLETED, timeout=30, what="the other job"
        )
        jobs_track(PrintJob.objects.filter(pk=ours.pk))
        ours.refresh_from_db()
        assert ours.status == J.UNKNOWN
        assert ours.events.filter(kind="job_lost").exists()


def test_restarts_of_a_print_host_that_started_afresh_are_heard() -> None:
    with PrivateCups() as cups_server:
        # given a printer whose restarts the lab watches, whose watch has heard two restarts
        printer = cups_printer(cups_server, "afresh_lab", print_seconds=1)
        assert server_restarts_check(printer)
        for _ in range(2):
            cups_server.restart_cupsd()
            assert server_restarts_check(printer)
        printer.refresh_from_db()
        watch_before, sequence_before = printer.server_watch_id, printer.server_event_sequence
        assert sequence_before >= 2

        # when the print host starts with no state, and its listener makes the server's restart watch anew
        # (numbered from 1 again: the same id as the old one, with its events numbered from 1 again) ...
        cups_server.start_cupsd_afresh()
        assert standing_watch(connect(server=cups_server.server), events=RESTART_EVENTS) == watch_before
        # ... and the host restarts again
        cups_server.restart_cupsd()

        # then that restart is heard, not skipped as older than what the lab heard before
        events = backend_for(printer).server_events(watch=watch_before, after=sequence_before)
        assert events.watch_lost
        assert server_restarts_check(printer)
        printer.refresh_from_db()
        assert printer.server_event_sequence < sequence_before  # the new server's cursor


@pytest.mark.parametrize("update_fields", [None, ["cups_server"]], ids=["whole row", "the server alone"])
def test_a_printer_moved_to_another_print_server_forgets_the_old_server_s_watch(update_fields) -> None:
    printer = Printer.objects.create(
        name="moved", backend="cups", target="q", cups_server="10.0.0.1:631", media_sizes=["4x6"]
    )
    Printer.objects.filter(pk=printer.pk).update(server_watch_id=2, server_event_sequence=9)
    printer.refresh_from_db()

    printer.name = "moved-again"  # a save that keeps the server keeps the watch
    printer.save()
    assert Printer.objects.values_list("server_watch_id", "server_event_sequence").get() == (2, 9)

    printer.cups_server = "10.0.0.2:631"
    printer.save(update_fields=update_fields)

    assert Printer.objects.values_list("cups_server", "server_watch_id", "server_event_sequence").get() == (
        "10.0.0.2:631",
        None,
        0,
    )
