"""A job moved, or sent again, while its old printer holds a copy cancelled at the CUPS console mid-print:
that copy began at its device and may have printed. Before, the move read it only as over (`canceled`),
withdrew nothing and flagged nothing, and the job was sent again with no word of a print for a person to
count. Now the move goes ahead with a `late_copy_not_cancelled` MAY_HAVE_PRINTED event naming the copy, and a
later cancel of the order does not list that copy a second time. Against a real private cupsd whose
ippeveprinter device takes 4 seconds a print.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.production import rasterizing, reroutes, submission
from lab.production.alerts import printed_after_cancel_events
from lab.production.backends import backend_for
from lab.production.cancellation import MAY_HAVE_PRINTED, order_cancel_in_production
from lab.production.models import JobEvent
from lab.production.states import JobStatus
from printers.base import JobState
from printers.cups_backend import CupsBackend
from printers.errors import TransientPrinterError
from tests.builders import WORKER, cups_printer, person
from tests.builders.production import ready_with_a_send_that_began, state_at_the_printer
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db
J = JobStatus


def test_a_move_after_a_console_cancel_mid_print_is_flagged_may_have_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a job whose copy at its printer began and was cancelled at the CUPS console, and another
        # capable printer
        job, printer, handle = ready_with_a_send_that_began(cups_server, monkeypatch)
        other = cups_printer(cups_server, "other", print_seconds=1)

        # when a person moves the job to the other printer
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=other.pk)

        # then it moves, flagged for a person to count the prints at the old printer (before: moved with
        # nothing said, the copy read only as over)
        job.refresh_from_db()
        assert (job.status, job.printer_id, job.submit_attempts) == (J.QUEUED, other.pk, 0)
        (flagged,) = JobEvent.objects.filter(job=job, kind="late_copy_not_cancelled")
        assert (flagged.printer_id, flagged.note) == (
            printer.pk,
            f"{MAY_HAVE_PRINTED}: {handle}:canceled, began",
        )
        assert list(printed_after_cancel_events()) == [flagged]
        assert len(cups_server.received_files("busy")) == 1


def test_a_copy_the_move_flagged_is_not_listed_again_when_the_order_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a job whose copy began and was cancelled at the console, between the retries of its send
        job, printer, began = ready_with_a_send_that_began(cups_server, monkeypatch)
        other = cups_printer(cups_server, "other", print_seconds=1)

        # ... moved to another printer (the copy that began flagged) and back to its own under the same title,
        # its new send held there
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=other.pk)
        (flagged,) = JobEvent.objects.filter(job=job, kind="late_copy_not_cancelled")
        assert flagged.note == f"{MAY_HAVE_PRINTED}: {began}:canceled, began"
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=printer.pk)
        assert JobEvent.objects.filter(job=job, kind="late_copy_not_cancelled").count() == 1
        cups_server.disable("busy")
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        job.refresh_from_db()
        held = job.backend_job_id
        assert backend_for(printer).job_info(held).state is JobState.PENDING

        # when a supervisor cancels the order
        order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))

        # then the held send is withdrawn cleanly, and the copy already flagged is not listed a second time
        # (before: `printer_cancelled` MAY_HAVE_PRINTED for it, a second alert for the same copy)
        (settled,) = JobEvent.objects.filter(job=job, kind="printer_cancelled")
        assert not settled.note.startswith(MAY_HAVE_PRINTED)
        assert f"{held}:cancelled" in settled.note
        assert f"{began}:canceled, began, listed already" in settled.note
        assert list(printed_after_cancel_events()) == [flagged]
        cups_server.enable("busy")
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("busy")) == 1


def test_a_retry_after_moving_back_sends_anew_instead_of_adopting_the_copy_the_move_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a job whose copy began and was cancelled at the console, moved to another printer (the copy
        # flagged) and back to its own under the same title
        job, printer, began = ready_with_a_send_that_began(cups_server, monkeypatch)
        other = cups_printer(cups_server, "other", print_seconds=1)
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=other.pk)
        (flagged,) = JobEvent.objects.filter(job=job, kind="late_copy_not_cancelled")
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=printer.pk)
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"

        # ... whose first send there is refused before anything reaches cupsd
        real_submit = CupsBackend.submit

        def refused_once(self: CupsBackend, **kwargs: Any) -> str:
            monkeypatch.setattr(CupsBackend, "submit", real_submit)
            raise TransientPrinterError(
                code="printer_unreachable", message="connection refused", nothing_sent=True
            )

        monkeypatch.setattr(CupsBackend, "submit", refused_once)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"

        # when the send is retried
        outcome = submission.print_job_submit(job_id=job.pk, worker=WORKER)

        # then it sends a new copy rather than adopting the one the move flagged (before: it adopted that
        # copy, sent nothing, and the job went `suspect` on it, a person asked a second time about the same
        # copy)
        job.refresh_from_db()
        assert outcome == "submitted"
        assert job.backend_job_id not in ("", began)
        assert job.status == J.SUBMITTED  # not `suspect`
        assert list(JobEvent.objects.filter(job=job, kind="late_copy_not_cancelled")) == [flagged]
        state_at_the_printer(printer, job.backend_job_id, JobState.COMPLETED)
        assert len(cups_server.received_files("busy")) == 2
