"""A copy that began at the device and then ended without completing (cancelled at the CUPS console, or taken
back by the tracker after CUPS put it back mid-print) may have printed: its job becomes `suspect`, for a
person to count the prints, never plain `failed`, whose "send again" would make a second print unseen.
Against a real private cupsd; a copy cancelled before it began stays `failed`.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError

from lab.production import jobs, rasterizing, submission, tracking
from lab.production.backends import backend_for
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.base import JobState
from printers.cups_ipp import connect
from tests.builders import WORKER, cups_printer, released_order
from tests.builders.production import printing_at_the_device
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db
J = JobStatus
BEGAN_THEN_ENDED = "began_then_ended"


def _submitted_job(printer: Printer) -> PrintJob:
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    return job


def test_a_copy_put_back_mid_print_whose_move_failed_after_its_cancel_ends_suspect_not_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a job whose device is printing it, and its queue disabled: CUPS puts it back to pending
        # with its processing time kept, and would send the whole document again
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        job = _submitted_job(printer)
        printing_at_the_device(cups_server, printer, job.backend_job_id)
        cups_server.disable("busy")
        wait_until(
            lambda: backend_for(printer).job_info(job.backend_job_id).was_requeued,
            timeout=30,
            what="CUPS putting the job back in the disabled queue",
        )

        # ... and the tracker's move to `suspect` failing once, after its cancel at CUPS (PostgreSQL gone)
        failures: list[str] = []

        def move_fails_once(**kwargs: Any) -> bool:
            if kwargs["to_status"] == J.SUSPECT and not failures:
                failures.append(kwargs["kind"])
                raise OperationalError("server closed the connection unexpectedly")
            return jobs.job_move(**kwargs)

        monkeypatch.setattr(tracking, "job_move", move_fails_once)
        with pytest.raises(OperationalError):
            tracking.printer_poll()
        assert failures == ["requeued_by_printer"]
        assert backend_for(printer).job_info(job.backend_job_id).state is JobState.CANCELED
        job.refresh_from_db()
        assert job.status == J.SUBMITTED

        # when the next poll reads the copy, now cancelled at CUPS
        monkeypatch.setattr(tracking, "job_move", jobs.job_move)
        assert tracking.printer_poll()["suspect"] == 1

        # then the job is `suspect` (before: `failed`, printer_canceled, sent again with no word of a print)
        job.refresh_from_db()
        assert (job.status, job.failure_code, job.backend_state) == (J.SUSPECT, "", str(JobState.CANCELED))
        (event,) = JobEvent.objects.filter(job=job, to_status=J.SUSPECT)
        assert event.kind == BEGAN_THEN_ENDED
        assert not JobEvent.objects.filter(job=job, kind="backend_failed").exists()
        # ... and the device had the document once: nothing is sent again
        cups_server.enable("busy")
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("busy")) == 1


def test_a_copy_cancelled_at_the_cups_console_while_it_prints_ends_suspect() -> None:
    with PrivateCups() as cups_server:
        # given a job whose device is printing it
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        job = _submitted_job(printer)
        printing_at_the_device(cups_server, printer, job.backend_job_id)

        # when a person cancels it at the CUPS console, and the poll reads it
        connect(server=cups_server.server).cancelJob(int(job.backend_job_id))
        wait_until(
            lambda: backend_for(printer).job_info(job.backend_job_id).state is JobState.CANCELED,
            timeout=30,
            what="CUPS cancelling the job",
        )
        assert tracking.printer_poll()["suspect"] == 1

        # then the job is `suspect`, for a person to count the prints (before: `failed`, printer_canceled)
        job.refresh_from_db()
        assert (job.status, job.failure_code) == (J.SUSPECT, "")
        (event,) = JobEvent.objects.filter(job=job, to_status=J.SUSPECT)
        assert event.kind == BEGAN_THEN_ENDED
        assert len(cups_server.received_files("busy")) == 1


def test_a_copy_cancelled_before_it_began_still_fails() -> None:
    with PrivateCups() as cups_server:
        # given a job waiting in a disabled queue: it never began at the device
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        cups_server.disable("busy")
        job = _submitted_job(printer)
        info = backend_for(printer).job_info(job.backend_job_id)
        assert (info.state, info.processing_started_at) == (JobState.PENDING, None)

        # when a person cancels it at the CUPS console, and the poll reads it
        connect(server=cups_server.server).cancelJob(int(job.backend_job_id))
        assert tracking.printer_poll()["failed"] == 1

        # then the job is `failed` as before: nothing can have printed
        job.refresh_from_db()
        assert (job.status, job.failure_code, job.backend_started_at) == (J.FAILED, "printer_canceled", None)
        assert not JobEvent.objects.filter(job=job, kind=BEGAN_THEN_ENDED).exists()
        assert cups_server.received_files("busy") == []
