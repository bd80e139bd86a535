"""A read of a job's send that another process superseded meanwhile (a `no_document` resend: the old send is
cancelled and a new one made) moves nothing: the job's new send is what prints, and its own read decides.

A stub printer, not a real cupsd: the behaviour under test is the lab's condition on its moves, and a resend
by another process cannot be placed between a real read and the move after it.
"""

from __future__ import annotations

import pytest

from lab.production import tracking
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus
from printers.base import JobInfo, JobState, PrinterBackend, PrinterStatus
from printers.errors import JOB_NOT_FOUND, PermanentPrinterError
from tests.builders.production import hotfolder_printer, job_walk, released_order

pytestmark = pytest.mark.django_db
J = JobStatus


class _ResentDuringTheRead(PrinterBackend):
    """While the old send (handle 1) is read, another process resends the job (handle 2): the old send reads
    cancelled (taken back for want of its document), or gone (purged)."""

    def __init__(self, *, job_id: int, old_send_is_gone: bool) -> None:
        self.job_id = job_id
        self.old_send_is_gone = old_send_is_gone

    def job_info(self, handle: str) -> JobInfo:
        assert handle == "1"
        PrintJob.objects.filter(pk=self.job_id).update(backend_job_id="2")  # the resend, committed meanwhile
        if self.old_send_is_gone:
            raise PermanentPrinterError(code=JOB_NOT_FOUND, message="no job 1")
        return JobInfo(handle, "", JobState.CANCELED, processing_started_at=None, document_count=0)

    def printer_status(self) -> PrinterStatus:
        raise AssertionError("not asked")

    def find_jobs(self, *, title_prefix: str) -> list[JobInfo]:
        raise AssertionError("not asked")

    def submit(self, **_: object) -> str:
        raise AssertionError("nothing is sent")

    def cancel(self, handle: str) -> None:
        raise AssertionError(f"nothing is cancelled: {handle}")

    def discard_document(self, handle: str) -> bool:
        raise AssertionError(f"nothing is erased: {handle}")


@pytest.mark.parametrize("old_send_is_gone", [False, True], ids=["old send cancelled", "old send purged"])
def test_a_read_of_a_send_superseded_meanwhile_moves_nothing(
    monkeypatch: pytest.MonkeyPatch, old_send_is_gone: bool
) -> None:
    # given a submitted job whose send (handle 1) is read while another process resends it (handle 2)
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    job_walk(job, J.SUBMITTED)
    PrintJob.objects.filter(pk=job.pk).update(backend_job_id="1")
    job.refresh_from_db()
    backend = _ResentDuringTheRead(job_id=job.pk, old_send_is_gone=old_send_is_gone)
    monkeypatch.setattr(tracking, "backend_for", lambda printer: backend)

    # when that read is tracked
    counts = tracking.jobs_track([job])

    # then the job stays submitted with its new send: neither failed nor lost for the old one
    assert counts == {"moved_meanwhile": 1}
    job.refresh_from_db()
    assert (job.status, job.backend_job_id, job.failure_code) == (J.SUBMITTED, "2", "")
    assert not JobEvent.objects.filter(job=job, kind__in=["backend_failed", "job_lost"]).exists()
