"""A job back in `ready` after a transient submit error may still have that send held at its printer (cupsd
took the document and went away before it answered): whatever moves or cancels the job must account for it.
Before, the poll moved such a job to another printer when the first went offline, and a reroute by a person
did the same: both printers printed it and the job ended `printed`; a cancel left the held send to print for
an order that was refunded. On real hot-folder printers, whose devices print what their inbox holds."""

from __future__ import annotations

import pytest

from lab.lib.errors import Conflict
from lab.production import actions, rasterizing, submission, tracking
from lab.production.cancellation import order_cancel_in_production
from lab.production.models import Printer, PrintJob
from lab.production.states import JobStatus
from printers.errors import TransientPrinterError
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import pending_tickets, process_pending
from tests.builders import WORKER, hotfolder_printer, person, printer_folder, released_order

pytestmark = pytest.mark.django_db
J = JobStatus


@pytest.fixture
def held_send(monkeypatch: pytest.MonkeyPatch) -> tuple[PrintJob, Printer, Printer]:
    """A job whose send reached printer A's inbox, though the submit answered with a transient error; and
    another capable printer B."""
    first = hotfolder_printer("minilab", sizes=["4x6"])
    second = hotfolder_printer("minilab-2", sizes=["4x6"])
    Printer.objects.filter(pk=second.pk).update(is_paused_by_lab=True)  # the job is routed to A
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    Printer.objects.filter(pk=second.pk).update(is_paused_by_lab=False)
    assert job.printer_id == first.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    real_submit = HotFolderBackend.submit

    def took_it_then_went_away(self: HotFolderBackend, **kwargs: object) -> str:
        real_submit(self, **kwargs)  # type: ignore[arg-type]
        raise TransientPrinterError(code="printer_unreachable", message="connection reset")

    monkeypatch.setattr(HotFolderBackend, "submit", took_it_then_went_away)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
    monkeypatch.setattr(HotFolderBackend, "submit", real_submit)
    job.refresh_from_db()
    assert (job.status, job.submit_attempts, len(pending_tickets(folder=printer_folder(first)))) == (
        J.READY,
        1,
        1,
    )
    return job, first, second


def test_the_poll_does_not_move_a_job_whose_send_its_offline_printer_may_hold(held_send):
    job, first, second = held_send
    Printer.objects.filter(pk=first.pk).update(state="offline")

    tracking._reroute_waiting_jobs(Printer.objects.get(pk=first.pk))  # what the poll does for A offline

    job.refresh_from_db()
    assert (job.status, job.printer_id) == (J.READY, first.pk)  # it waits for A
    Printer.objects.filter(pk=first.pk).update(state="online")
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "adopted"  # A's held send is it
    printed = process_pending(folder=printer_folder(first), delay_seconds=0)
    assert (len(printed), pending_tickets(folder=printer_folder(second))) == (1, [])


def test_a_person_who_moves_it_withdraws_the_held_send_first_and_it_prints_once(held_send):
    job, first, second = held_send

    actions.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

    job.refresh_from_db()
    assert (job.status, job.printer_id, job.submit_attempts) == (J.QUEUED, second.pk, 0)
    assert pending_tickets(folder=printer_folder(first)) == []  # A's held send was cancelled there
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(process_pending(folder=printer_folder(second), delay_seconds=0)) == 1
    assert process_pending(folder=printer_folder(first), delay_seconds=0) == []


def test_a_move_is_refused_when_the_old_printer_printed_the_held_send(held_send):
    job, first, second = held_send
    process_pending(folder=printer_folder(first), delay_seconds=0)  # A printed it before anyone looked

    with pytest.raises(Conflict, match="was printed by minilab from an earlier send"):
        actions.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

    job.refresh_from_db()
    assert (job.status, job.printer_id) == (J.READY, first.pk)
    assert pending_tickets(folder=printer_folder(second)) == []


@pytest.mark.parametrize("who", ["supervisor cancels the order", "technician cancels the job"])
def test_a_cancel_withdraws_the_held_send_from_the_printer(held_send, who):
    job, first, _ = held_send
    if who == "supervisor cancels the order":
        order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
    else:
        # another job of the item (a reprint waiting for a printer), so the item keeps a print
        PrintJob.objects.create(order=job.order, item=job.item, copies=1, status=J.NO_PRINTER)
        actions.job_cancel(job_id=job.pk, actor=person("technician"))

    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == (J.CANCELLED, False)
    assert process_pending(folder=printer_folder(first), delay_seconds=0) == []  # nothing left to print
