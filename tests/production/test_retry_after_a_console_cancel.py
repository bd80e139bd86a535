"""A retry of a send whose copy began at its device and was then cancelled at the CUPS console (or by the
lab's own cancel whose record was lost): that copy may have printed. Before, the retry read it only as over
(`canceled`) and sent the job again with no word of a print for a person to count: two prints possible,
nobody told. Now the retry adopts that copy, as it adopts one its device still prints, and the read that
follows makes the job `suspect` (`began_then_ended`), as for a `processing` copy that stopped: nothing is
sent again. Also: the late copies the submission flags are named at their printer in the `handle:state` form
the moves and cancels read (cancellation.copy_listed_already), so one copy is listed once. Against a real
private cupsd whose ippeveprinter device takes 4 seconds a print.
"""

from __future__ import annotations

from functools import partial

import pytest

from lab.production import rasterizing, submission
from lab.production.cancellation import MAY_HAVE_PRINTED, copy_listed_already
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from tests.builders import WORKER, cups_printer, released_order
from tests.builders.production import (
    printing_at_the_device,
    ready_with_a_send_that_began,
    send_stalls_past_its_lease,
)
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db
J = JobStatus


def _rasterized_job(printer: Printer) -> PrintJob:
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    return job


def test_a_retry_after_a_console_cancel_mid_print_is_suspect_not_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a job whose earlier send began at its device and was cancelled at the CUPS console
        job, printer, handle = ready_with_a_send_that_began(cups_server, monkeypatch)

        # when its retry runs
        outcome = submission.print_job_submit(job_id=job.pk, worker=WORKER)

        # then the copy that began is the job's, read at once: `suspect`, for a person to count the prints
        # (before: `submitted`, the job sent again with nothing flagged)
        assert outcome == "adopted"
        job.refresh_from_db()
        assert (job.status, job.backend_job_id) == (J.SUSPECT, handle)
        (event,) = JobEvent.objects.filter(job=job, to_status=J.SUSPECT)
        assert (event.kind, event.printer_id) == ("began_then_ended", printer.pk)
        # ... and the device had the document once: nothing was sent again
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("busy")) == 1


def test_a_late_copy_the_submission_flags_is_named_at_its_printer_for_later_listings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateCups() as cups_server:
        # given a worker whose send stalls past its lease; meanwhile the reconciler makes the job `unknown`
        # and a technician sends it again; the late copy lands and its device prints it
        printer = cups_printer(cups_server, "busy", print_seconds=4)
        job = _rasterized_job(printer)
        stalled = send_stalls_past_its_lease(
            monkeypatch,
            job,
            when_it_lands=partial(printing_at_the_device, cups_server, printer, received=2),
        )

        # when the stalled worker hears its send landed
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "late_copy_not_cancelled"

        # then its event names the printer and the copy as `handle:state…`, as a move's does: a later move or
        # cancel of the job sees that it listed the copy already (before: no printer, "backend job N: …")
        _, late = stalled.handles
        assert stalled.resent == ["submitted"]
        (flagged,) = JobEvent.objects.filter(job=job, kind="late_copy_not_cancelled")
        assert (flagged.printer_id, flagged.note) == (
            printer.pk,
            f"{MAY_HAVE_PRINTED}: {late}:processing, cancel asked, a late second copy the printer did not"
            " cancel",
        )
        assert copy_listed_already(job_id=job.pk, printer_id=printer.pk, handle=late)
        assert cups_server.wait_jobs_over(lambda title: True) == []
        assert len(cups_server.received_files("busy")) == 2
