"""The lab cancels its own send right after it landed: the job was cancelled while its worker sent it, or a
person decided the job without it (sent it again) while its worker stalled past its lease. CUPS takes a job to
its device at once and cancels a `processing` one without an error while the device prints it. Before, such a
copy was recorded as cleanly cancelled (`printer_cancelled` "sent, then cancelled", `late_copy_cancelled`):
a print of a cancelled, refunded order, or a second print, with nothing on the board and no alert. Against a
real private cupsd whose ippeveprinter device takes 4 seconds a print."""

from __future__ import annotations

from functools import partial

import pytest

from lab.production import rasterizing, submission
from lab.production.alerts import alerts_check, printed_after_cancel_events, printed_after_cancel_q
from lab.production.backends import backend_for
from lab.production.cancellation import MAY_HAVE_PRINTED, order_cancel_in_production
from lab.production.models import Alert, JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.base import JobState
from printers.cups_backend import CupsBackend
from tests.builders import WORKER, cups_printer, person, released_order
from tests.builders.production import printing_at_the_device, send_stalls_past_its_lease
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db
J = JobStatus


def _rasterized_job(printer: Printer) -> PrintJob:
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    return job


@pytest.mark.parametrize("copy", ["printing", "pending"])
def test_a_copy_cancelled_as_its_send_lands_is_listed_if_its_device_was_printing_it(
    monkeypatch: pytest.MonkeyPatch, copy: str
) -> None:
    with PrivateCups() as cups_server:
        # given a ready job, and a supervisor who cancels its order while its worker sends it: by then the
        # device prints the copy (or it waits in a stopped queue)
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        job = _rasterized_job(printer)
        if copy == "pending":
            cups_server.disable("busy")
        real_submit = CupsBackend.submit
        handles: list[str] = []

        def cancelled_as_it_lands(self: CupsBackend, **kwargs: object) -> str:
            handles.append(real_submit(self, **kwargs))  # type: ignore[arg-type]
            if copy == "printing":
                printing_at_the_device(cups_server, printer, handles[0])
            order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
            return handles[0]

        monkeypatch.setattr(CupsBackend, "submit", cancelled_as_it_lands)

        # when the worker hears its send landed
        outcome = submission.print_job_submit(job_id=job.pk, worker=WORKER)

        # then it cancels the copy at once, the cancel settled
        job.refresh_from_db()
        (handle,) = handles
        assert (outcome, job.status, job.cancel_at_printer, job.backend_job_id) == (
            "cancelled",
            J.CANCELLED,
            False,
            handle,
        )
        (settled,) = JobEvent.objects.filter(job=job, kind="printer_cancelled")
        if copy == "pending":
            # ... cleanly: nothing printed, nothing listed
            assert settled.note == f"{handle}: sent, then cancelled"
            assert list(printed_after_cancel_events()) == []
            assert backend_for(printer).job_info(handle).state is JobState.CANCELED
            cups_server.enable("busy")
            assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
            assert cups_server.received_files("busy") == []
            return
        # ... saying the copy may have printed, listed for the board and the alert as a print of a cancelled
        # order (before: "sent, then cancelled", listed nowhere)
        assert settled.note == (
            f"{MAY_HAVE_PRINTED}: {handle}:processing, cancel asked, sent after the job was cancelled"
        )
        assert list(printed_after_cancel_events()) == [settled]
        assert list(PrintJob.objects.filter(printed_after_cancel_q())) == [job]
        # ... and CUPS calls the copy canceled, yet its device printed it
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("busy")) == 1


@pytest.mark.parametrize("late_copy", ["printing", "pending"])
def test_a_late_send_after_a_person_sent_the_job_again_is_suspect_if_its_device_was_printing_it(
    monkeypatch: pytest.MonkeyPatch, late_copy: str
) -> None:
    with PrivateCups() as cups_server:
        # given a worker whose send stalls past its lease; meanwhile the reconciler, finding no copy at the
        # printer, makes the job `unknown`, and a technician sends it again (that copy prints first, 4 s)
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        job = _rasterized_job(printer)
        # the late copy lands; the device prints it (after the resent one) before its worker hears so
        stalled = send_stalls_past_its_lease(
            monkeypatch,
            job,
            when_it_lands=partial(printing_at_the_device, cups_server, printer, received=2)
            if late_copy == "printing"
            else None,
        )

        # when the stalled worker hears its send landed
        outcome = submission.print_job_submit(job_id=job.pk, worker=WORKER)

        job.refresh_from_db()
        resent_copy, late = stalled.handles
        assert stalled.resent == ["submitted"]
        assert job.backend_job_id == resent_copy
        if late_copy == "pending":
            # then the late copy, still waiting behind the resent one, is cancelled cleanly: one print
            assert (outcome, job.status) == ("late_copy_cancelled", J.SUBMITTED)
            assert JobEvent.objects.filter(job=job).latest("pk").kind == "late_copy_cancelled"
            assert list(printed_after_cancel_events()) == []
            assert cups_server.wait_jobs_over(lambda title: True) == []
            assert len(cups_server.received_files("busy")) == 1
            return
        # then its device printing it, CUPS' cancel does not stop the print: the job is `suspect` (may have
        # printed twice), on the board and alerted (before: `late_copy_cancelled`, two prints unseen)
        assert (outcome, job.status) == ("late_copy_not_cancelled", J.SUSPECT)
        (flagged,) = printed_after_cancel_events()
        assert (flagged.job_id, flagged.kind, flagged.note) == (
            job.pk,
            "late_copy_not_cancelled",
            f"{MAY_HAVE_PRINTED}: {late}:processing, cancel asked,"
            " a late second copy the printer did not cancel",
        )
        alerts_check()
        (alert,) = Alert.objects.filter(link=f"/lab/jobs/{job.pk}/")
        assert alert.kind == "job_needs_person"
        # ... and both copies reached the device
        assert cups_server.wait_jobs_over(lambda title: True) == []
        assert len(cups_server.received_files("busy")) == 2
