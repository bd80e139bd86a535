"""Which job a cupsd restart marks as "may be sent twice", against a real private cupsd: the job it was
sending, even when the lab does not know that job's handle yet because the restart cut off its submit. Also
a printed job a restart put back in its queue (cancelled there) and a copy completed with more impressions
than its copies (`suspect`): what else a restart may print twice.

(The restart facts of CUPS itself are pinned in tests/printers/test_cups_restart.py; the same fault under a
running lab, with the printer-events listener, in tests/e2e/test_faults.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db.models import F

from lab.production import jobs, rasterizing, restarts, tracking
from lab.production.backends import backend_for, media_for
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.states import JobStatus
from lab.production.submission import print_job_submit
from lab.production.tracking import jobs_track, printer_poll
from printers.base import JobInfo, JobState, PrinterBackend, PrinterState, PrinterStatus, ServerEvents
from tests.builders.production import (
    WORKER,
    cups_printer,
    hotfolder_printer,
    job_walk,
    printing_at_the_device,
    released_order,
    state_at_the_printer,
)
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db
J = JobStatus
WAITING_FOR_DEVICE = "cups-waiting-for-job-completed"


def _cut_off_and_waiting_behind(
    cups_server: PrivateCups, printer: Printer, photo: Path, first: PrintJob, second: PrintJob
) -> str:
    """The first job's submit cut off after CUPS took its document (the lab saw a transient error and waits to
    retry, without its handle) while CUPS sends that document to the device, and the second job submitted,
    waiting behind it. Returns the first job's handle at the printer."""
    backend = backend_for(printer)
    job_walk(first, J.READY)
    assert jobs.job_move(
        job_id=first.pk,
        from_statuses={J.READY},
        to_status=J.SUBMITTING,
        kind="claimed",
        submit_attempts=F("submit_attempts") + 1,
    )
    assert jobs.job_move(
        job_id=first.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.READY,
        kind="submit_retry",
        failure_code="printer_unreachable",
    )
    handle = backend.submit(path=photo, title=first.title, media=media_for("4x6"), copies=1)
    wait_until(
        lambda: (
            backend.job_info(handle).state is JobState.PROCESSING
            and WAITING_FOR_DEVICE in backend.printer_status().reasons
        ),
        timeout=30,
        what="the device to hold the first job's document",
    )
    job_walk(second, J.SUBMITTING)
    later = backend.submit(path=photo, title=second.title, media=media_for("4x6"), copies=1)
    assert jobs.job_move(
        job_id=second.pk, from_statuses={J.SUBMITTING}, to_status=J.SUBMITTED, backend_job_id=later
    )
    return handle


def test_a_restart_that_cut_off_a_submit_marks_that_job_and_its_adopted_attempt_ends_suspect(
    tmp_path: Path,
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(60, 40))
    with PrivateCups() as cups_server:
        # given a CUPS printer whose restarts the lab watches, and an order of two prints on it
        printer = cups_printer(cups_server, "restart_lab", print_seconds=3)
        assert server_restarts_check(printer)  # the watch exists before the restart
        order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
        first, second = PrintJob.objects.filter(order=order).order_by("pk")
        assert {first.printer_id, second.printer_id} == {printer.pk}
        backend = backend_for(printer)

        # ... the first job's submit cut off after CUPS took its document, CUPS sending it to the device, and
        # the second job submitted, waiting behind it
        handle = _cut_off_and_waiting_behind(cups_server, printer, photo, first, second)

        # when cupsd restarts, and the lab hears of it before the first job's retry
        cups_server.restart_cupsd()
        assert server_restarts_check(printer)

        # then the job cupsd was sending is the one marked, not the submitted one behind it
        first.refresh_from_db()
        second.refresh_from_db()
        assert (first.backend_restarted, second.backend_restarted) == (True, False)
        assert JobEvent.objects.filter(job=first, kind="printer_restarted_job").count() == 1

        # when the retry runs, it adopts the job at the printer rather than sending the photo again
        assert print_job_submit(job_id=first.pk, worker=WORKER) == "adopted"

        # then it reads the job at once (no event will come for a job CUPS put back unscheduled): CUPS's
        # re-send is cancelled and the job is `suspect` before any poll or listener looks
        first.refresh_from_db()
        assert (first.status, backend.job_info(handle).state) == (J.SUSPECT, JobState.CANCELED)

        # ... and the other one ends `printed`
        def settled() -> bool:
            jobs_track(PrintJob.objects.filter(pk__in=[first.pk, second.pk], status=J.SUBMITTED))
            return not PrintJob.objects.filter(pk__in=[first.pk, second.pk], status=J.SUBMITTED).exists()

        wait_until(settled, timeout=60, interval=0.5, what="both jobs to leave `submitted`")
        first.refresh_from_db()
        second.refresh_from_db()
        assert (first.status, first.backend_job_id, second.status) == (J.SUSPECT, handle, J.PRINTED)
        received = [path.name for path in cups_server.received_files("restart_lab")]
        # ... and the device got each document once: the re-send was cancelled before CUPS made it
        assert sum(name.endswith(f"-{first.title}.jpg") for name in received) == 1, received
        assert sum(name.endswith(f"-{second.title}.jpg") for name in received) == 1, received


def test_a_restart_right_after_a_printers_first_send_is_heard(tmp_path: Path) -> None:
    # A watch begun after a restart takes that restart for history. Before, the watch began at the first poll
    # or listener look, so a restart between a new printer's first send and that look was never heard.
    with PrivateCups() as cups_server:
        # given a CUPS printer the lab has never looked at, and a job sent to it, which the device holds
        printer = cups_printer(cups_server, "first_lab", print_seconds=3)
        job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
        assert print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        job.refresh_from_db()
        backend = backend_for(printer)
        wait_until(
            lambda: WAITING_FOR_DEVICE in backend.printer_status().reasons,
            timeout=30,
            what="the device to hold the job's document",
        )

        # when cupsd restarts before the lab's first look at the printer
        cups_server.restart_cupsd()
        assert server_restarts_check(printer)

        # then the restart is heard and the job it cut off is marked: it cannot end a plain `printed`
        job.refresh_from_db()
        assert job.backend_restarted
        assert JobEvent.objects.filter(job=job, kind="printer_restarted_job").count() == 1


def test_a_retry_that_adopts_its_earlier_attempt_during_the_restart_check_is_still_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restart check read the submitted jobs, asked the printer about each, then read the jobs being
    retried. A retry that adopted its earlier attempt (ready → submitted) while the printer was being asked
    was in neither read, and the copy the restart may send again went unmarked: it could end `printed` after
    printing twice. Now both are read in one query before the printer is asked."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(60, 40))
    with PrivateCups() as cups_server:
        # given a printer whose restarts the lab watches, a job whose submit was cut off after CUPS took its
        # document (back in `ready`, its handle unknown) and is being printed, and one submitted behind it
        printer = cups_printer(cups_server, "adopt_lab", print_seconds=3)
        assert server_restarts_check(printer)
        order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
        first, second = PrintJob.objects.filter(order=order).order_by("pk")
        backend = backend_for(printer)
        handle = _cut_off_and_waiting_behind(cups_server, printer, photo, first, second)
        cups_server.restart_cupsd()

        # when the first job's retry adopts its attempt while the check asks the printer about the second
        read = type(backend).job_info_of

        def retry_adopts_meanwhile(self: object, handle_read: str, *, title: str) -> JobInfo:
            PrintJob.objects.filter(pk=first.pk, status=J.READY).update(
                status=J.SUBMITTED, backend_job_id=handle
            )
            return read(self, handle_read, title=title)  # type: ignore[arg-type]

        monkeypatch.setattr(type(backend), "job_info_of", retry_adopts_meanwhile)
        assert server_restarts_check(printer)

        # then the job cupsd was sending is marked all the same
        first.refresh_from_db()
        assert (first.status, first.backend_restarted) == (J.SUBMITTED, True)


def _sent_by_the_lab(printer: Printer, job: PrintJob, photo: Path, *, copies: int = 1) -> str:
    """The job sent to the printer's queue as the lab sends it, and `submitted` with its handle there."""
    job_walk(job, J.SUBMITTING)
    handle = backend_for(printer).submit(path=photo, title=job.title, media=media_for("4x6"), copies=copies)
    assert jobs.job_move(
        job_id=job.pk, from_statuses={J.SUBMITTING}, to_status=J.SUBMITTED, backend_job_id=handle
    )
    return handle


def test_a_printed_job_a_restart_put_back_in_its_queue_is_cancelled_before_a_second_print(
    tmp_path: Path,
) -> None:
    """CUPS finished the job in cupsd's last second, its control file still saying processing: cupsd puts it
    back `pending` at the restart (its old processing time kept) and sends it again at a later one. The
    restart and the put-back are a real cupsd's; the lab's read of `completed` in that last second cannot be
    placed, so the job is walked to `printed` while its device holds the document."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(60, 40))
    with PrivateCups() as cups_server:
        # given a printed job whose copy the device still holds when cupsd restarts
        printer = cups_printer(cups_server, "taken_back_lab", print_seconds=3)
        assert server_restarts_check(printer)
        job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
        handle = _sent_by_the_lab(printer, job, photo)
        printing_at_the_device(cups_server, printer, handle)
        job_walk(job, J.PRINTED)
        cups_server.restart_cupsd()
        backend = backend_for(printer)
        assert backend.job_info(handle).was_requeued  # back in the queue, to be sent again

        # when the lab hears of the restart
        assert server_restarts_check(printer)

        # then the copy is cancelled at CUPS, once, and the job stays `printed`
        job.refresh_from_db()
        assert (backend.job_info(handle).state, job.status) == (JobState.CANCELED, J.PRINTED)
        assert JobEvent.objects.filter(job=job, kind="printer_requeued_printed_job").count() == 1


def test_a_copy_completed_with_more_impressions_than_its_copies_is_suspect_not_printed(
    tmp_path: Path,
) -> None:
    """A job of one copy that CUPS reports completed with two impressions: its document reached the device
    twice (a restart the lab did not hear: within its own second, or two folded into one event). The count
    is a real cupsd's: the copy is sent asking for two (how CUPS counts a document sent twice is pinned in
    tests/printers/test_cups_restart.py)."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(60, 40))
    with PrivateCups() as cups_server:
        # given a job of one copy whose copy CUPS completed with two impressions
        printer = cups_printer(cups_server, "counted_lab", print_seconds=0.2)
        assert server_restarts_check(printer)
        job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
        assert job.copies == 1
        handle = _sent_by_the_lab(printer, job, photo, copies=2)
        state_at_the_printer(printer, handle, JobState.COMPLETED)
        assert backend_for(printer).job_info(handle).completed_impressions == 2

        # when the poll reads it
        printer_poll()

        # then the job is `suspect` for a person to count the prints, not `printed`
        job.refresh_from_db()
        assert job.status == J.SUSPECT
        assert list(JobEvent.objects.filter(job=job).values_list("kind", flat=True).order_by("pk"))[-1] == (
            "printed_more_than_once"
        )


RESTARTED_AT = 1_000_000


class _RestartAfterTheCheck(PrinterBackend):
    """A print server that restarts just after answering the poll's restart check: the job it was sending
    (handle 1) is sent again from the start and completes, and the job behind it (handle 2) begins.

    A stub, not a real cupsd: the behaviour under test is the order of the lab's own reads (a restart check,
    then the job reads), and a real restart cannot be placed between two of them."""

    def __init__(self, titles: dict[str, str]) -> None:
        self.titles = titles
        self.restarted = False

    def server_events(self, *, watch: int | None, after: int) -> ServerEvents:
        if not self.restarted:
            self.restarted = True  # the restart comes just after this answer
            return ServerEvents(watch=1, last_sequence=0)
        if after >= 1:
            return ServerEvents(watch=1, last_sequence=1)
        return ServerEvents(watch=1, last_sequence=1, started_at=(RESTARTED_AT,))

    def job_info(self, handle: str) -> JobInfo:
        title = self.titles[handle]
        if handle == "1":
            if self.restarted:
                return JobInfo(
                    handle,
                    title,
                    JobState.COMPLETED,
                    created_at=RESTARTED_AT - 30,
                    processing_started_at=RESTARTED_AT + 1,
                    completed_at=RESTARTED_AT + 2,
                    document_count=1,
                )
            return JobInfo(
                handle,
                title,
                JobState.PROCESSING,
                created_at=RESTARTED_AT - 30,
                processing_started_at=RESTARTED_AT - 5,
                document_count=1,
            )
        if self.restarted:
            return JobInfo(
                handle,
                title,
                JobState.PROCESSING,
                created_at=RESTARTED_AT - 20,
                processing_started_at=RESTARTED_AT + 2,
                document_count=1,
            )
        return JobInfo(handle, title, JobState.PENDING, created_at=RESTARTED_AT - 20, document_count=1)

    def printer_status(self) -> PrinterStatus:
        return PrinterStatus(state=PrinterState.ONLINE)

    def find_jobs(self, *, title_prefix: str) -> list[JobInfo]:
        return [self.job_info(handle) for handle in sorted(self.titles)]

    def submit(self, **_: object) -> str:
        raise AssertionError("nothing is sent")

    def cancel(self, handle: str) -> None:
        raise AssertionError(f"nothing is cancelled: {handle}")

    def discard_document(self, handle: str) -> bool:
        raise AssertionError(f"nothing is erased: {handle}")


def test_a_restart_between_the_polls_check_and_its_job_read_marks_the_job_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The poll checks a printer's restarts, then reads its jobs. A restart in between made CUPS send the job
    it was sending again; read completed, that job ended `printed`, and the restart, heard at the next check,
    marked the job behind it instead. Now a completed job is called printed only after its server's restarts
    are checked again."""
    # given two jobs submitted to a printer, the first being sent (CUPS job 1), the second behind it (job 2)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
    first, second = PrintJob.objects.filter(order=order).order_by("pk")
    for job, handle in ((first, "1"), (second, "2")):
        job_walk(job, J.SUBMITTED)
        PrintJob.objects.filter(pk=job.pk).update(backend_job_id=handle)
    backend = _RestartAfterTheCheck({"1": first.title, "2": second.title})
    monkeypatch.setattr(tracking, "backend_for", lambda printer: backend)
    monkeypatch.setattr(restarts, "backend_for", lambda printer: backend)

    # when the server restarts just after the poll's check, and the job it was sending completes again
    printer_poll()
    # ... and the restart is checked (the listener's sweep) and the jobs read again (the next poll)
    assert server_restarts_check(printer)
    printer_poll()

    # then the job sent again is marked and ends suspect; the job behind it is not marked
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.backend_restarted) == (J.SUSPECT, True)
    assert (second.status, second.backend_restarted) == (J.SUBMITTED, False)
    assert list(JobEvent.objects.filter(kind="printer_restarted_job").values_list("job_id", flat=True)) == [
        first.pk
    ]
