"""The trace the spool sweep leaves of a copy it erases while the copy's print job is not over (the job's
PRINTER_COPY_DISCARDED event) is written before the copy is purged, so that no purge at the printer is ever
left without it; a database that fails at one printer does not keep the sweep from the others. Against a
real private cupsd."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError

from lab.production import rasterizing, spool, submission
from lab.production.backends import backend_for, copies_titled
from lab.production.models import Printer, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.states import JobStatus
from printers.cups_backend import CupsBackend
from printers.cups_ipp import connect
from printers.errors import TransientPrinterError
from tests.builders import WORKER, cups_printer, released_order
from tests.support.cups import PrivateCups

pytestmark = pytest.mark.django_db
J = JobStatus


class _Killed(BaseException):
    """The sweep's process ends where it stands (SIGKILL, the task's hard time limit): nothing after runs."""


def _first_sends_left_an_empty_copy(monkeypatch: pytest.MonkeyPatch, jobs: list[PrintJob]) -> None:
    """Each job's first send made a job at cupsd without its document, which was then cancelled (cupsd
    stopped during Send-Document), the submit answering with a transient error: each job is back in
    `ready`, with one attempt that may have reached cupsd and its cancelled, empty copy there."""

    def created_empty_then_went_away(self: CupsBackend, *, title: str, **kwargs: Any) -> str:
        connection = connect(server=self.server)
        connection.cancelJob(connection.createJob(self.queue, title, {}))
        raise TransientPrinterError(code="printer_unreachable", message="connection reset by peer")

    with monkeypatch.context() as patched:
        patched.setattr(CupsBackend, "submit", created_empty_then_went_away)
        for job in jobs:
            assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
            assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
            job.refresh_from_db()
            assert job.printer is not None
            assert len(copies_titled(backend_for(job.printer), job.title)) == 1


def _jobs_at(printers: list[Printer]) -> list[PrintJob]:
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-GLOSSY", 1)][: len(printers)])
    jobs = list(PrintJob.objects.filter(order=order).order_by("printer_id").select_related("printer"))
    assert [job.printer_id for job in jobs] == [printer.pk for printer in printers]
    return jobs


def test_a_sweep_killed_right_after_its_purge_leaves_the_copy_accounted_for(monkeypatch):
    with PrivateCups() as cups_server:
        # given a job whose first send left a cancelled, empty copy at cupsd
        printer = cups_printer(cups_server, "killed_sweep_lab", print_seconds=1)
        assert server_restarts_check(printer)
        (job,) = _jobs_at([printer])
        _first_sends_left_an_empty_copy(monkeypatch, [job])

        # when the sweep purges that copy and its process dies right after the purge
        real_discard = CupsBackend.discard_document

        def purged_then_killed(self: CupsBackend, handle: str) -> bool:
            real_discard(self, handle)
            raise _Killed()

        with monkeypatch.context() as patched:
            patched.setattr(CupsBackend, "discard_document", purged_then_killed)
            with pytest.raises(_Killed):
                spool.printer_documents_discard()
        assert copies_titled(backend_for(printer), job.title) == []

        # then the job's history already holds the purged copy, the retry sends the job, and it prints once
        # (before, the event came after the purge and was never written: the retry counted an attempt with no
        # copy and the job ended `unknown` though nothing had printed)
        assert job.events.filter(kind=spool.PRINTER_COPY_DISCARDED).count() == 1
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("killed_sweep_lab")) == 1


def test_a_database_failure_at_one_printer_does_not_stop_the_sweep_at_the_next(monkeypatch):
    with PrivateCups() as cups_server:
        # given two printers on one cupsd, each holding a job's cancelled, empty first copy
        printers = [cups_printer(cups_server, queue, print_seconds=1) for queue in ("a_lab", "b_lab")]
        for printer in printers:
            assert server_restarts_check(printer)
        first_job, second_job = _jobs_at(printers)
        _first_sends_left_an_empty_copy(monkeypatch, [first_job, second_job])

        # when the sweep runs while the database fails to record at the first printer
        real_record = spool._copy_discarded_record

        def database_gone_at_the_first(*, printer: Printer, **kwargs: Any) -> None:
            if printer.pk == printers[0].pk:
                raise OperationalError("server closed the connection unexpectedly")
            real_record(printer=printer, **kwargs)

        with monkeypatch.context() as patched:
            patched.setattr(spool, "_copy_discarded_record", database_gone_at_the_first)
            counts = spool.printer_documents_discard()

        # then the first printer's copy is kept, unrecorded, for the next sweep, and the second printer's is
        # erased with its trace (before, the error ended the sweep: the printers after it were never swept)
        assert counts == {"discarded": 1, "printers_database_failed": 1}
        assert len(copies_titled(backend_for(printers[0]), first_job.title)) == 1
        assert copies_titled(backend_for(printers[1]), second_job.title) == []
        assert first_job.events.filter(kind=spool.PRINTER_COPY_DISCARDED).count() == 0
        assert second_job.events.filter(kind=spool.PRINTER_COPY_DISCARDED).count() == 1

        # and both jobs are sent again and print once: each first attempt is accounted for
        for job in (first_job, second_job):
            assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        assert cups_server.wait_jobs_over(lambda title: title in {first_job.title, second_job.title}) == []
        assert len(cups_server.received_files("a_lab")) == 1
        assert len(cups_server.received_files("b_lab")) == 1


def test_a_copy_whose_purge_fails_sweep_after_sweep_is_recorded_once_and_counted_once(monkeypatch):
    with PrivateCups() as cups_server:
        # given a job whose first send left a cancelled, empty copy at cupsd, which cupsd will not purge
        printer = cups_printer(cups_server, "stuck_copy_lab", print_seconds=1)
        assert server_restarts_check(printer)
        (job,) = _jobs_at([printer])
        _first_sends_left_an_empty_copy(monkeypatch, [job])

        def refused(self: CupsBackend, handle: str) -> bool:
            raise TransientPrinterError(code="printer_unreachable", message="connection reset by peer")

        # when two sweeps run, each one's purge failing
        with monkeypatch.context() as patched:
            patched.setattr(CupsBackend, "discard_document", refused)
            assert spool.printer_documents_discard() == {"failed": 1}
            assert spool.printer_documents_discard() == {"failed": 1}

        # then the copy is still there and the job's history names it once (recorded before the purge, not
        # again by the next sweep); the listed, recorded copy accounts for the one attempt: the job is sent
        # and prints once
        (copy,) = copies_titled(backend_for(printer), job.title)
        (discarded,) = job.events.filter(kind=spool.PRINTER_COPY_DISCARDED).values_list("note", flat=True)
        assert discarded.startswith(f"{spool.DISCARDED_COPY_NOTE_PREFIX}{copy.handle}: ")
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("stuck_copy_lab")) == 1
