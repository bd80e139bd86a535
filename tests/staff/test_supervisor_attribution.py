"""The supervisor's figures count each event where it happened: a job that failed at one printer and was
rerouted to another stays a failure of the first, with its reason; its time at the printer and in the queue
stay the first printer's. Old events (written before events recorded the printer) keep the job's columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from lab.production import jobs, reroutes, routing
from lab.production.models import JobEvent, Printer, PrintJob
from lab.staff import supervisor, supervisor_timelines
from tests.builders import hotfolder_printer, job_walk, person, released_order

pytestmark = pytest.mark.django_db
DAY = datetime(2026, 11, 20, tzinfo=UTC)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def _failed_at_alpha_then_rerouted_to_beta(job: PrintJob, alpha: Printer, beta: Printer) -> PrintJob:
    assert job.printer_id == alpha.pk
    job_walk(job, "submitted")
    assert jobs.job_fail(
        job_id=job.pk,
        from_statuses={"submitted"},
        kind="backend_failed",
        code="printer_aborted",
        message="aborted at the printer",
    )
    job = reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=beta.pk)
    assert (job.status, job.printer_id, job.failure_code) == ("queued", beta.pk, "")
    return job


def _released_to_alpha() -> tuple[Printer, Printer, PrintJob]:
    """Two printers that both hold 4x6; the order's one job goes to alpha (least loaded, first by name)."""
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    beta = hotfolder_printer("beta", sizes=["4x6"])
    # in the lab before the day the tests date their events (a printer counts from when it was added)
    Printer.objects.filter(pk__in=[alpha.pk, beta.pk]).update(created_at=at(-24))
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    return alpha, beta, PrintJob.objects.get(order=order)


def _around_now(printer_id: int | None = None) -> supervisor.Filters:
    now = timezone.now()
    return supervisor.Filters(
        start=now - timedelta(hours=1), end=now + timedelta(hours=1), printer_id=printer_id
    )


def _dated(job: PrintJob, hours: list[float]) -> None:
    """Date the job's events (written now, through the services) at these hours of DAY, in their order."""
    events = list(JobEvent.objects.filter(job=job).order_by("pk"))
    assert len(events) == len(hours)
    for event, hour in zip(events, hours, strict=True):
        JobEvent.objects.filter(pk=event.pk).update(created_at=at(hour))


def test_a_failed_job_rerouted_afterwards_stays_a_failure_of_its_printer_with_its_reason() -> None:
    # given a job that failed at alpha and that a technician then sent to beta
    alpha, beta, job = _released_to_alpha()
    _failed_at_alpha_then_rerouted_to_beta(job, alpha, beta)

    # when the supervisor reads the failures, all of them and per printer, and the jobs behind the row
    rows = supervisor.failures(filters=_around_now())
    only_alpha = supervisor.failures(filters=_around_now(alpha.pk))
    only_beta = supervisor.failures(filters=_around_now(beta.pk))
    behind = supervisor.jobs_behind(
        table="failures", filters=_around_now(), key={"reason": "printer_aborted", "printer": str(alpha.pk)}
    )

    # then the failure is alpha's, with the code it failed with, and its row lists the job
    assert [(row.reason, row.printer_id, row.printer, row.jobs, row.copies) for row in rows] == [
        ("printer_aborted", alpha.pk, "alpha", 1, 2)
    ]
    assert [(row.reason, row.printer) for row in only_alpha] == [("printer_aborted", "alpha")]
    assert only_beta == []
    assert [behind_job.pk for behind_job in behind] == [job.pk]
    # and the event itself says where and why
    failed = JobEvent.objects.get(job=job, to_status="failed")
    assert (failed.printer_id, failed.failure_code) == (alpha.pk, "printer_aborted")


def test_time_at_the_printer_counts_for_the_printer_the_job_was_sent_to() -> None:
    # given a job submitted to alpha at 00:30 that failed there at 01:30, rerouted to beta at 02:00
    alpha, beta, job = _released_to_alpha()
    _failed_at_alpha_then_rerouted_to_beta(job, alpha, beta)
    # created, routed, rasterizing, ready, submitting, submitted, failed, rerouted
    _dated(job, [0, 5 / 60, 10 / 60, 15 / 60, 20 / 60, 0.5, 1.5, 2])
    day = supervisor.Filters(start=DAY, end=DAY + timedelta(days=1), printer_id=None)

    # when the supervisor reads the printers' time and the jobs behind alpha's row
    rows = supervisor_timelines.printer_time(filters=day, now=at(3))
    behind_alpha = supervisor.jobs_behind(table="printer_time", filters=day, key={"printer": str(alpha.pk)})

    # then the hour at the printer is alpha's, not beta's, where the job has not been sent yet
    assert [(row.printer, row.printing_seconds) for row in rows] == [("alpha", 3600.0), ("beta", 0.0)]
    assert [behind_job.pk for behind_job in behind_alpha] == [job.pk]


def test_queue_history_per_printer_counts_each_stretch_where_the_job_waited() -> None:
    # given a job waiting for a printer from 00:30, routed to alpha at 01:30 (a printer that holds its media
    # came), rasterized there, sent at 03:30, failed there at 04:30, then rerouted to beta at 05:30
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    beta = hotfolder_printer("beta", sizes=["4x6"])
    assert routing.jobs_route_waiting() == 1
    job.refresh_from_db()
    _failed_at_alpha_then_rerouted_to_beta(job, alpha, beta)
    # created, routed, rasterizing, ready, submitting, submitted, failed, rerouted
    _dated(job, [0.5, 1.5, 2.5, 2.6, 3.5, 3.6, 4.5, 5.5])

    # when the supervisor reads the queue's last hours, for all printers and for each
    def seen(printer_id: int | None) -> dict[int, dict[str, tuple[int, float | None]]]:
        samples = supervisor_timelines.queue_history(now=at(6.5), printer_id=printer_id)
        return {
            sample.hour.hour: {
                stage: (count, None if (age := sample.oldest_seconds[stage]) is None else age / 60)
                for stage, count in sample.jobs.items()
                if count
            }
            for sample in samples[-7:]
        }

    everywhere, at_alpha, at_beta = seen(None), seen(alpha.pk), seen(beta.pk)

    # then each stretch counts at the printer the job was at then (waiting for a printer: at none), and a
    # stage's age is the job's time in the stage
    assert everywhere == {
        0: {},
        1: {"waiting": (1, 30.0)},
        2: {"waiting": (1, 90.0)},
        3: {"ready": (1, 24.0)},
        4: {"submitted": (1, 30.0)},
        5: {},
        6: {"waiting": (1, 30.0)},
    }
    assert at_alpha == {
        0: {},
        1: {},
        2: {"waiting": (1, 90.0)},
        3: {"ready": (1, 24.0)},
        4: {"submitted": (1, 30.0)},
        5: {},
        6: {},
    }
    assert at_beta == {0: {}, 1: {}, 2: {}, 3: {}, 4: {}, 5: {}, 6: {"waiting": (1, 30.0)}}


def test_a_job_rerouted_while_it_waits_counts_at_each_printer_with_its_whole_wait() -> None:
    # given a job waiting for a printer from 00:30, routed to alpha at 01:30, rerouted to beta at 02:30
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    beta = hotfolder_printer("beta", sizes=["4x6"])
    assert routing.jobs_route_waiting() == 1
    reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=beta.pk)
    _dated(job, [0.5, 1.5, 2.5])  # created, routed, rerouted

    # when the supervisor reads the queue's last hours per printer
    def waiting(printer_id: int) -> list[tuple[int, float | None]]:
        samples = supervisor_timelines.queue_history(now=at(3.5), printer_id=printer_id)
        return [(sample.jobs["waiting"], sample.oldest_seconds["waiting"]) for sample in samples[-2:]]

    # then at 02:00 it waits at alpha and at 03:00 at beta, 90 and 150 minutes after it began to wait
    assert waiting(alpha.pk) == [(1, 90 * 60.0), (0, None)]
    assert waiting(beta.pk) == [(0, None), (1, 150 * 60.0)]


def test_events_from_before_the_printer_was_recorded_count_at_the_jobs_printer_with_its_code() -> None:
    # given a failure event written before events recorded the printer and the code (both empty)
    _, _, job = _released_to_alpha()
    job_walk(job, "submitted")
    assert jobs.job_fail(
        job_id=job.pk, from_statuses={"submitted"}, kind="backend_failed", code="printer_held_job", message=""
    )
    JobEvent.objects.filter(job=job, to_status="failed").update(printer=None, failure_code="")

    # when the supervisor reads the failures
    rows = supervisor.failures(filters=_around_now())

    # then it falls back to the job's printer and code
    assert [(row.reason, row.printer, row.jobs) for row in rows] == [("printer_held_job", "alpha", 1)]
