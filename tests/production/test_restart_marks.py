"""Which job a cupsd restart marks as "may be sent twice", against a real private cupsd: the job it was
sending, even when the lab does not know that job's handle yet because the restart cut off its submit.

(The restart facts of CUPS itself are pinned in tests/printers/test_cups_restart.py; the same fault under a
running lab, with the printer-events listener, in tests/e2e/test_faults.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db.models import F

from lab.production import jobs, rasterizing
from lab.production.backends import backend_for, media_for
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.states import JobStatus
from lab.production.submission import print_job_submit
from lab.production.tracking import jobs_track
from printers.base import JobInfo, JobState
from tests.builders.production import WORKER, cups_printer, job_walk, released_order
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
