"""A job failed at one printer and moved to another keeps no handle of the first: a cancel settled with the
old printer's handle looked for it at the new printer, found nothing ("gone"), and left the send the new
printer held (its submit answered with a transient error after the ticket was in) to print for a refunded
order. A cancel now withdraws every copy with the job's title at its printer, the saved handle's too. On
real hot-folder printers, whose devices print what their inbox holds."""

from __future__ import annotations

import pytest

from lab.production import rasterizing, reroutes, submission, tracking
from lab.production.cancellation import order_cancel_in_production, printer_cancel
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.base import JobInfo
from printers.errors import PermanentPrinterError, TransientPrinterError
from printers.hotfolder import HotFolderBackend, move_ticket
from printers.hotfolder_device import pending_tickets, process_pending
from tests.builders import (
    WORKER,
    hotfolder_printer,
    job_on_the_first_of_two_minilabs,
    person,
    printer_folder,
    released_order,
)

pytestmark = pytest.mark.django_db
J = JobStatus


@pytest.fixture
def failed_at_first(monkeypatch: pytest.MonkeyPatch) -> tuple[PrintJob, Printer, Printer]:
    """A job sent to printer A whose device failed it (its ticket moved to error/), and the job `failed`; and
    another capable printer B."""
    job, first, second = job_on_the_first_of_two_minilabs()
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    (ticket,) = pending_tickets(folder=printer_folder(first))
    move_ticket(folder=printer_folder(first), ticket_path=ticket, directory="error", extra={"reason": "jam"})
    tracking.jobs_track(PrintJob.objects.filter(pk=job.pk))
    job.refresh_from_db()
    assert job.status == J.FAILED
    return job, first, second


def _sent_to_second_with_a_transient_answer(
    job: PrintJob, second: Printer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A technician moves the job to B; B's inbox takes the send, though the submit answers transient."""
    reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    real_submit = HotFolderBackend.submit

    def took_it_then_went_away(self: HotFolderBackend, **kwargs: object) -> str:
        real_submit(self, **kwargs)  # type: ignore[arg-type]
        raise TransientPrinterError(code="printer_unreachable", message="connection reset")

    monkeypatch.setattr(HotFolderBackend, "submit", took_it_then_went_away)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
    monkeypatch.setattr(HotFolderBackend, "submit", real_submit)
    job.refresh_from_db()
    assert (job.status, job.printer_id, job.submit_attempts) == (J.READY, second.pk, 1)
    assert len(pending_tickets(folder=printer_folder(second))) == 1


def test_a_reroute_forgets_the_old_printer_s_handle(failed_at_first):
    job, _, second = failed_at_first

    reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

    job.refresh_from_db()
    assert (job.status, job.printer_id) == (J.QUEUED, second.pk)
    assert (job.backend_job_id, job.backend_state, job.backend_started_at, job.backend_restarted) == (
        "",
        "",
        None,
        False,
    )


def test_a_cancel_after_a_reroute_withdraws_the_send_held_at_the_new_printer(failed_at_first, monkeypatch):
    job, first, second = failed_at_first
    _sent_to_second_with_a_transient_answer(job, second, monkeypatch)

    order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))

    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == (J.CANCELLED, False)
    assert pending_tickets(folder=printer_folder(second)) == []  # B's held send was cancelled there
    assert process_pending(folder=printer_folder(second), delay_seconds=0) == []
    assert process_pending(folder=printer_folder(first), delay_seconds=0) == []


def test_a_cancel_given_a_stale_handle_still_withdraws_the_copies_titled_at_its_printer(
    failed_at_first, monkeypatch
):
    # A job rerouted before the reroute forgot the old handle (its row still names A's copy).
    job, first, second = failed_at_first
    (failed_ticket,) = (printer_folder(first) / "error").glob("*.json")
    old_handle = failed_ticket.stem
    _sent_to_second_with_a_transient_answer(job, second, monkeypatch)
    PrintJob.objects.filter(pk=job.pk).update(
        status=J.CANCELLED, cancel_at_printer=True, backend_job_id=old_handle
    )
    job.refresh_from_db()

    assert printer_cancel(job=job)

    assert pending_tickets(folder=printer_folder(second)) == []
    assert process_pending(folder=printer_folder(second), delay_seconds=0) == []
    (settled,) = JobEvent.objects.filter(job=job, kind="printer_cancelled")
    assert settled.note.startswith(f"{old_handle}:gone, ") and settled.note.endswith(":cancelled")


def test_a_cancel_at_a_printer_that_never_lists_titles_settles_once_the_saved_send_is_withdrawn(monkeypatch):
    # given a job sent to a printer whose server hides job names (a CUPS without JobPrivateValues none):
    # its saved send can be read and cancelled by number, but no copy can be looked for by title
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"

    def hidden(self: HotFolderBackend, **kwargs: object) -> list[object]:
        raise PermanentPrinterError(code="job_names_hidden", message="the server hides job names")

    monkeypatch.setattr(HotFolderBackend, "find_jobs", hidden)

    # when its order is cancelled
    order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))

    # then the saved send is withdrawn and the cancel settles, saying what it could not look for (before:
    # pending for ever, the listing asked again at every poll, the job's document kept by the spool)
    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == (J.CANCELLED, False)
    assert pending_tickets(folder=printer_folder(printer)) == []
    (settled,) = JobEvent.objects.filter(job=job, kind="printer_cancelled")
    assert settled.note.endswith(":cancelled (other copies not looked for: job_names_hidden)")


def test_an_order_cancel_lists_its_printer_once_and_withdraws_every_copy(monkeypatch):
    # given an order of five prints on one minilab, four submitted and one whose send the inbox took while its
    # submit answered with a transient error (held there, no handle saved: found only by its title)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)] * 5)
    jobs = list(PrintJob.objects.filter(order=order).order_by("pk"))
    assert len(jobs) == 5 and {job.printer_id for job in jobs} == {printer.pk}
    for job in jobs:
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    for job in jobs[:-1]:
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    real_submit = HotFolderBackend.submit

    def took_it_then_went_away(self: HotFolderBackend, **kwargs: object) -> str:
        real_submit(self, **kwargs)  # type: ignore[arg-type]
        raise TransientPrinterError(code="printer_unreachable", message="connection reset")

    monkeypatch.setattr(HotFolderBackend, "submit", took_it_then_went_away)
    assert submission.print_job_submit(job_id=jobs[-1].pk, worker=WORKER) == "retry"
    monkeypatch.setattr(HotFolderBackend, "submit", real_submit)
    assert len(pending_tickets(folder=printer_folder(printer))) == 5
    listings: list[str] = []
    real_find_jobs = HotFolderBackend.find_jobs

    def counted(self: HotFolderBackend, *, title_prefix: str) -> list[JobInfo]:
        listings.append(str(self.folder))
        return real_find_jobs(self, title_prefix=title_prefix)

    monkeypatch.setattr(HotFolderBackend, "find_jobs", counted)

    # when a supervisor cancels the order
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))

    # then the printer is listed once, not once per job (a hot folder's listing reads every ticket it ever
    # had: seconds each, and a 20-line order's cancel outlasted the web worker's timeout), and every copy is
    # withdrawn, the one held without a handle too
    assert listings == [str(printer_folder(printer))]
    assert pending_tickets(folder=printer_folder(printer)) == []
    assert process_pending(folder=printer_folder(printer), delay_seconds=0) == []
    assert set(PrintJob.objects.filter(order=order).values_list("status", "cancel_at_printer")) == {
        (J.CANCELLED, False)
    }
    assert JobEvent.objects.filter(job__order=order, kind="printer_cancelled").count() == 5
