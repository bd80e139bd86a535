"""A copy already over at CUPS (`canceled`) when the lab's cancel reaches it may have printed all the same:
it began at its device (CUPS keeps its processing time and its impressions counted). Before, the cancel read
it as withdrawn (`printer_cancelled` "canceled"), and a print of a cancelled, refunded order was on neither
the board nor an alert: a copy cancelled at the CUPS console mid-print before a supervisor cancelled its
order, and our own cancel of a copy its device printed whose record was lost. Against a real private cupsd
whose ippeveprinter device takes 4 seconds a print; a copy cancelled before it began stays a clean cancel.
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from lab.production import cancellation, rasterizing, send_landed, submission
from lab.production.alerts import printed_after_cancel_events, printed_after_cancel_q
from lab.production.backends import backend_for
from lab.production.cancellation import MAY_HAVE_PRINTED, order_cancel_in_production, printer_cancels_settle
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.base import JobState
from printers.cups_backend import CupsBackend
from printers.cups_ipp import connect
from tests.builders import WORKER, cups_printer, person, released_order
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db
J = JobStatus


def _rasterized(job: PrintJob, printer: Printer) -> PrintJob:
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    return job


def _submitted(job: PrintJob) -> PrintJob:
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    return job


def _state_is(printer: Printer, handle: str, state: JobState) -> None:
    backend = backend_for(printer)
    wait_until(lambda: backend.job_info(handle).state is state, timeout=30, what=f"the job {state}")


def test_a_copy_cancelled_at_the_cups_console_mid_print_is_listed_when_its_order_is_cancelled() -> None:
    with PrivateCups() as cups_server:
        # given an order of two jobs on one printer: the device prints the first (4 seconds a print), the
        # second waits behind it
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
        jobs = PrintJob.objects.filter(order=order).order_by("pk")
        printing, waiting = (_submitted(_rasterized(job, printer)) for job in jobs)
        _state_is(printer, printing.backend_job_id, JobState.PROCESSING)
        wait_until(lambda: len(cups_server.received_files("busy")) == 1, timeout=30, what="the device")
        assert backend_for(printer).job_info(waiting.backend_job_id).state is JobState.PENDING

        # ... both cancelled at the CUPS console, the waiting one first (nothing else then starts)
        for job in (waiting, printing):
            connect(server=cups_server.server).cancelJob(int(job.backend_job_id))
            _state_is(printer, job.backend_job_id, JobState.CANCELED)

        # when a supervisor cancels the order before the poll reads them
        order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))

        # then the copy that began is settled as may have printed, and listed for the board and the alert
        # (before: `printer_cancelled` "canceled", listed nowhere, the device holding its print)
        (began,) = JobEvent.objects.filter(job=printing, kind="printer_cancelled")
        assert began.note == f"{MAY_HAVE_PRINTED}: {printing.backend_job_id}:canceled, began"
        # ... and the copy cancelled before it began is a clean cancel, not listed
        (clean,) = JobEvent.objects.filter(job=waiting, kind="printer_cancelled")
        assert clean.note == f"{waiting.backend_job_id}:canceled"
        assert list(printed_after_cancel_events()) == [began]
        assert list(PrintJob.objects.filter(printed_after_cancel_q())) == [printing]
        assert list(PrintJob.objects.filter(order=order, cancel_at_printer=True)) == []
        assert len(cups_server.received_files("busy")) == 1


def test_a_printing_copy_cancelled_as_its_send_lands_is_listed_after_its_record_was_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a supervisor who cancels the order while its worker sends its job, the device printing it
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
        job = _rasterized(PrintJob.objects.get(order=order), printer)
        real_submit = CupsBackend.submit
        handles: list[str] = []

        def cancelled_as_it_lands(self: CupsBackend, **kwargs: object) -> str:
            handles.append(real_submit(self, **kwargs))  # type: ignore[arg-type]
            _state_is(printer, handles[0], JobState.PROCESSING)
            order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
            return handles[0]

        # ... and the worker's cancel of its copy asked at CUPS, then PostgreSQL gone before it is recorded
        real_copy_cancel = cancellation.copy_cancel
        outcomes: list[str] = []

        def cancelled_then_database_gone(*args: object, **kwargs: object) -> str:
            outcomes.append(real_copy_cancel(*args, **kwargs))  # type: ignore[arg-type]
            raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(CupsBackend, "submit", cancelled_as_it_lands)
        monkeypatch.setattr(send_landed, "copy_cancel", cancelled_then_database_gone)
        with pytest.raises(OperationalError):
            submission.print_job_submit(job_id=job.pk, worker=WORKER)
        monkeypatch.setattr(send_landed, "copy_cancel", real_copy_cancel)
        (handle,) = handles
        assert outcomes == [f"{handle}:processing, cancel asked"]
        job.refresh_from_db()
        assert (job.status, job.cancel_at_printer, job.backend_job_id) == (J.CANCELLED, True, handle)
        # ... CUPS calling the copy canceled once its device printed it
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert backend_for(printer).job_info(handle).state is JobState.CANCELED
        assert len(cups_server.received_files("busy")) == 1

        # when the poll's settle reads it
        assert printer_cancels_settle()["cancelled_at_printer"] == 1

        # then it is settled as may have printed, and listed (before: `printer_cancelled` "canceled")
        job.refresh_from_db()
        assert job.cancel_at_printer is False
        (settled,) = JobEvent.objects.filter(job=job, kind="printer_cancelled")
        assert settled.note == f"{MAY_HAVE_PRINTED}: {handle}:canceled, began"
        assert list(printed_after_cancel_events()) == [settled]
        assert list(PrintJob.objects.filter(printed_after_cancel_q())) == [job]
