"""Which jobs a cupsd restart marks "may be sent twice", from what CUPS shows of each job once it is back.

CUPS keeps whole seconds, sends one job at a time per queue, oldest first, and after a restart may show the
job it was sending back `pending` or already being sent again; a job it finished in the restart's own second
may come back too. A landing run of tests/e2e/test_faults.py::test_cupsd_restarted_while_jobs_print_… under
load printed a job twice unseen: the rule then marked only the queue's oldest job not over before the
restart, and took a job that had completed in that very second for it. Each case here is one reading of the
queue after a restart at second 1000; the marks are made in the database like in production.
(Against a real cupsd: tests/production/test_restart_marks.py and the e2e fault tests.)
"""

from __future__ import annotations

import pytest

from lab.production import rasterizing, submission, tracking
from lab.production.models import JobEvent, PrintJob
from lab.production.restarts import _job_interrupted_by_restart, _Seen
from lab.production.states import JobStatus
from printers.base import JobInfo, JobState
from printers.hotfolder_device import process_pending
from tests.builders import WORKER, hotfolder_printer, job_walk, printer_folder, released_order

pytestmark = pytest.mark.django_db
J = JobStatus
RESTART = 1000
PENDING, PROCESSING, COMPLETED = JobState.PENDING, JobState.PROCESSING, JobState.COMPLETED


def _marked_after_restart(*readings: tuple[JobState, int | None, int | None]) -> list[int]:
    """Submit one job per reading (CUPS handles 1, 2, … in queue order, each created before the restart),
    read the queue as (state, time-at-processing, time-at-completed), and answer the 1-based positions of
    the jobs the restart marks."""
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)] * len(readings))
    jobs = list(PrintJob.objects.filter(order=order).order_by("pk"))
    unfinished: dict[int, JobInfo] = {}
    for position, (job, (state, began, completed)) in enumerate(zip(jobs, readings, strict=True), start=1):
        job_walk(job, J.SUBMITTED)
        PrintJob.objects.filter(pk=job.pk).update(backend_job_id=str(position))
        unfinished[job.pk] = JobInfo(
            handle=str(position),
            title=job.title,
            state=state,
            created_at=RESTART - 30,
            processing_started_at=began,
            completed_at=completed,
            document_count=1,
        )

    _job_interrupted_by_restart(
        printer=printer, started_at=RESTART, seen=_Seen(unfinished=unfinished, printed=[])
    )

    marked = set(PrintJob.objects.filter(backend_restarted=True).values_list("pk", flat=True))
    assert JobEvent.objects.filter(kind="printer_restarted_job").count() == len(marked)
    return [position for position, job in enumerate(jobs, start=1) if job.pk in marked]


def test_a_job_completed_in_the_restarts_second_is_not_taken_for_the_one_being_sent():
    # the landing run's queue: job 1 completed in the restart's second; job 2 was being sent and is back
    assert _marked_after_restart((COMPLETED, 995, RESTART), (PENDING, RESTART, None)) == [2]


def test_the_job_being_sent_back_in_the_queue_is_marked_not_the_one_begun_after_the_restart():
    assert _marked_after_restart((PENDING, 998, None), (PROCESSING, RESTART + 1, None)) == [1]


def test_the_job_being_sent_already_sent_again_is_marked_not_the_ones_behind_it():
    readings = ((PROCESSING, RESTART + 1, None), (PENDING, None, None), (PENDING, None, None))
    assert _marked_after_restart(*readings) == [1]


def test_an_older_job_sent_again_at_once_is_marked_with_the_one_back_in_the_queue():
    # job 1 was finished at the stop and came back; CUPS sent it again at once, before job 2 it was sending
    readings = ((PROCESSING, RESTART + 1, None), (PENDING, 997, None), (PENDING, None, None))
    assert _marked_after_restart(*readings) == [1, 2]


def test_every_job_begun_before_the_restart_and_not_over_is_marked():
    # an earlier restart left job 1 back in the queue, unscheduled, and unheard of; job 2 was being sent
    assert _marked_after_restart((PENDING, 990, None), (PENDING, 998, None)) == [1, 2]


def test_jobs_over_before_the_restart_or_never_begun_are_not_marked():
    readings = ((COMPLETED, 990, 995), (COMPLETED, 996, RESTART), (PENDING, None, None))
    assert _marked_after_restart(*readings) == []


def test_a_job_begun_and_over_within_the_restarts_second_does_not_stand_for_the_one_sent_again():
    # job 1 began and completed in the restart's second (before the stop, or after the start: one second
    # cannot tell); job 2, sent when cupsd stopped, is being sent again. Before, job 1 alone took the mark.
    assert _marked_after_restart((COMPLETED, RESTART, RESTART), (PROCESSING, RESTART + 1, None)) == [1, 2]


def test_a_mark_committed_after_the_job_was_loaded_is_not_read_past():
    # A reader loads a submitted job, then a restart check (another process's, or the reader's own, as the
    # retry that adopts a job does) marks it; the device had completed it. Before, the reader's row said
    # "not marked" and the job ended `printed`: a copy sent twice with nobody told.
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(process_pending(folder=printer_folder(printer), delay_seconds=0)) == 1
    loaded = PrintJob.objects.select_related("printer").get(pk=job.pk)

    PrintJob.objects.filter(pk=job.pk).update(backend_restarted=True)
    tracking.jobs_track([loaded])

    job.refresh_from_db()
    assert job.status == J.SUSPECT
