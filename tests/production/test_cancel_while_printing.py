"""A cancel that reaches the printer while its device prints the job may come too late: CUPS (its default
device URI, no waitjob=false) keeps a job `processing` while the device prints it, and a Cancel-Job then
reaches the device after the print is made. Before, such a copy counted as withdrawn ("cancelled"): a
supervisor's cancel left a print of a refunded order at the printer with nothing on the board and no alert,
and a staff reroute of a job whose earlier send was printing printed it twice. Against a real private cupsd,
and on a hot-folder printer whose device has taken the ticket."""

from __future__ import annotations

import pytest

from lab.lib.errors import Conflict
from lab.production import rasterizing, reroutes, submission
from lab.production.alerts import printed_after_cancel_events, printed_after_cancel_q
from lab.production.backends import backend_for
from lab.production.cancellation import (
    MAY_HAVE_PRINTED,
    PRINTER_CANCEL_REFUSED,
    order_cancel_in_production,
    printer_cancels_settle,
)
from lab.production.errors import ProductionError
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.base import JobState
from printers.cups_backend import CupsBackend
from printers.errors import TransientPrinterError
from printers.hotfolder import move_ticket
from printers.hotfolder_device import pending_tickets
from tests.builders import (
    WORKER,
    cups_printer,
    hotfolder_printer,
    person,
    printer_folder,
    released_order,
)
from tests.builders.production import printing_at_the_device
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db
J = JobStatus


def _rasterized_job(printer: Printer) -> PrintJob:
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    return job


def test_an_order_cancelled_while_its_job_prints_is_listed_as_a_print_of_a_cancelled_order() -> None:
    with PrivateCups() as cups_server:
        # given a job whose device is printing it (4 seconds a print)
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        job = _rasterized_job(printer)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        job.refresh_from_db()
        printing_at_the_device(cups_server, printer, job.backend_job_id)

        # when a supervisor cancels its order
        order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))

        # then the cancel is settled with a note saying the copy may have printed, listed for the board
        # and the alert as a print of a cancelled order
        job.refresh_from_db()
        assert (job.status, job.cancel_at_printer) == (J.CANCELLED, False)
        (settled,) = JobEvent.objects.filter(job=job, kind="printer_cancelled")
        assert settled.note == f"{MAY_HAVE_PRINTED}: {job.backend_job_id}:processing, cancel asked"
        assert list(printed_after_cancel_events()) == [settled]
        # ... and the device had the document before the cancel: CUPS calls the job canceled, yet it prints
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("busy")) == 1


def test_a_move_is_refused_while_the_old_printer_prints_an_earlier_send_and_it_prints_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a job back in `ready` after a transient submit error, whose send the device of printer A is
        # printing; and another capable printer B
        first = cups_printer(cups_server, "busy", print_seconds=4)
        second = cups_printer(cups_server, "idle", print_seconds=0)
        Printer.objects.filter(pk=second.pk).update(is_paused_by_lab=True)  # the job is routed to A
        job = _rasterized_job(first)
        Printer.objects.filter(pk=second.pk).update(is_paused_by_lab=False)
        real_submit = CupsBackend.submit
        handles: list[str] = []

        def took_it_then_went_away(self: CupsBackend, **kwargs: object) -> str:
            handles.append(real_submit(self, **kwargs))  # type: ignore[arg-type]
            raise TransientPrinterError(code="printer_unreachable", message="connection reset")

        monkeypatch.setattr(CupsBackend, "submit", took_it_then_went_away)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        monkeypatch.setattr(CupsBackend, "submit", real_submit)
        job.refresh_from_db()
        assert (job.status, job.submit_attempts) == (J.READY, 1)
        printing_at_the_device(cups_server, first, handles[0])

        # when a technician moves it to B, then the move is refused: nothing moved, nothing withdrawn
        with pytest.raises(Conflict) as refused:
            reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)
        assert refused.value.code == ProductionError.EARLIER_SEND_PRINTING
        job.refresh_from_db()
        assert (job.status, job.printer_id, job.submit_attempts) == (J.READY, first.pk, 1)
        assert not job.events.filter(kind__in=["earlier_sends_withdrawn", "rerouted"]).exists()

        # ... and the job prints once, at A
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert backend_for(first).job_info(handles[0]).state is JobState.COMPLETED
        assert (len(cups_server.received_files("busy")), cups_server.received_files("idle")) == (1, [])


def test_a_hot_folder_ticket_the_device_took_is_listed_once_and_its_cancel_waits() -> None:
    # given a job whose hot-folder device has taken its ticket (it prints)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    job = _rasterized_job(printer)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    (ticket,) = pending_tickets(folder=printer_folder(printer))
    move_ticket(folder=printer_folder(printer), ticket_path=ticket, directory="processing")

    # when a supervisor cancels its order
    order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))

    # then it is recorded once as may have printed, listed for the board, and the cancel stays pending while
    # the device has the ticket (and its print file), however often the poll asks again
    assert printer_cancels_settle()["cancelled_at_printer"] == 0
    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == (J.CANCELLED, True)
    (refused,) = JobEvent.objects.filter(job=job, kind__startswith="printer_cancel")
    assert (refused.kind, refused.note) == (
        PRINTER_CANCEL_REFUSED,
        f"{MAY_HAVE_PRINTED}: {job.backend_job_id}:processing, cancel refused",
    )
    assert list(printed_after_cancel_events()) == [refused]
    assert list(PrintJob.objects.filter(printed_after_cancel_q())) == [job]


def test_a_job_whose_earlier_send_was_put_back_moves_with_a_may_have_printed_event_and_prints_once_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a job back in `ready` after a transient submit error, whose send printer A's device took and
        # CUPS then put back in the queue (A disabled mid-job): it never finishes by itself, and CUPS would
        # send the whole document again once A is enabled
        first = cups_printer(cups_server, "busy", print_seconds=4)
        second = cups_printer(cups_server, "idle", print_seconds=0)
        Printer.objects.filter(pk=second.pk).update(is_paused_by_lab=True)  # the job is routed to A
        job = _rasterized_job(first)
        Printer.objects.filter(pk=second.pk).update(is_paused_by_lab=False)
        real_submit = CupsBackend.submit
        handles: list[str] = []

        def took_it_then_went_away(self: CupsBackend, **kwargs: object) -> str:
            handles.append(real_submit(self, **kwargs))  # type: ignore[arg-type]
            raise TransientPrinterError(code="printer_unreachable", message="connection reset")

        monkeypatch.setattr(CupsBackend, "submit", took_it_then_went_away)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        monkeypatch.setattr(CupsBackend, "submit", real_submit)
        printing_at_the_device(cups_server, first, handles[0])
        cups_server.disable("busy")
        wait_until(
            lambda: backend_for(first).job_info(handles[0]).was_requeued,
            timeout=30,
            what="CUPS putting the job back in the disabled queue",
        )

        # when a technician moves it to B (before: 409 earlier_send_printing, for a copy that never finishes)
        moved = reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

        # then it moves, A's copy is cancelled, and the job is listed as one that may have printed twice
        assert (moved.status, moved.printer_id) == (J.QUEUED, second.pk)
        assert backend_for(first).job_info(handles[0]).state is JobState.CANCELED
        (may_have_printed,) = printed_after_cancel_events()
        assert (may_have_printed.job_id, may_have_printed.note) == (
            job.pk,
            f"{MAY_HAVE_PRINTED}: {handles[0]}:pending, cancel asked",
        )
        assert list(PrintJob.objects.filter(printed_after_cancel_q())) == [moved]

        # ... and A, enabled again, sends nothing more to its device
        cups_server.enable("busy")
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("busy")) == 1
