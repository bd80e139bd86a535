"""Prints of cancelled orders at the printers: a copy that printed though its job was cancelled (the cancel
reached the printer after it printed, or a late send the printer would not cancel) is listed on the board,
counted by a gauge and alerted. Before, only the job's history and a warning log said so, and the prints of a
refunded order lay at the printer with nobody told."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lab.production import submission
from lab.production.alerts import PRINTED_AFTER_CANCEL_HOURS, alert_conditions
from lab.production.cancellation import ALREADY_PRINTED, order_cancel_in_production
from lab.production.jobs import job_move
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus
from lab.staff.board import board_snapshot
from printers.hotfolder_device import process_pending
from tests.builders import (
    WORKER,
    client_as,
    hotfolder_printer,
    job_on_the_first_of_two_minilabs,
    job_walk,
    person,
    printer_folder,
    released_order,
)
from tests.support.metrics import scrape

pytestmark = pytest.mark.django_db
J = JobStatus
TOKEN = "a-metrics-token-of-this-test"


def _printed_then_cancelled() -> PrintJob:
    """A job sent to a minilab whose device printed it, then its order cancelled by a supervisor before the
    poll saw the print: the cancel finds the copy printed at the printer."""
    job, first, _ = job_on_the_first_of_two_minilabs()
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(process_pending(folder=printer_folder(first), delay_seconds=0)) == 1
    order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
    job.refresh_from_db()
    assert (job.status, job.order.status, job.cancel_at_printer) == (J.CANCELLED, "cancelled", False)
    return job


def _cancelled_job() -> PrintJob:
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.get(order=order)
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    job.refresh_from_db()
    assert job.status == J.CANCELLED
    return job


def _gauge(settings) -> float:
    settings.METRICS_TOKEN = TOKEN
    return scrape(Client(), token=TOKEN)[("printlab_cancelled_jobs_printed", ())]


def test_a_copy_printed_before_the_cancel_reached_the_printer_is_on_the_board_and_alerted(settings):
    # given a job whose copy printed before its order's cancel reached the printer
    job = _printed_then_cancelled()
    assert JobEvent.objects.filter(
        job=job, kind="printer_cancelled", note__startswith=ALREADY_PRINTED
    ).exists()

    # when the board is read, the alerts checked and the gauges scraped
    board = board_snapshot()
    conditions = [
        c for c in alert_conditions(now=timezone.now()) if c.key.startswith("printed_after_cancel:")
    ]

    # then the job is listed as prints of a cancelled order, alerted to a supervisor, and counted
    assert [listed.pk for listed in board.printed_after_cancel] == [job.pk]
    assert board.unknown == [] and board.suspect == []
    (condition,) = conditions
    assert (condition.kind, condition.link) == ("job_needs_person", reverse("staff:job", args=[job.pk]))
    assert job.order.ref in condition.message and "take its prints off the printer" in condition.message
    assert _gauge(settings) == 1


def test_a_late_copy_the_printer_would_not_cancel_on_a_cancelled_job_is_on_the_board_page():
    # given a cancelled job whose late send the printer refused to cancel (as submission records it)
    job = _cancelled_job()
    JobEvent.objects.create(
        job=job, kind="late_copy_not_cancelled", note=f"{ALREADY_PRINTED}: backend job 7, not cancelled"
    )
    client, _ = client_as("technician")

    # when a technician looks at the board
    html = client.get(reverse("staff:board_live"), headers={"HX-Request": "true"}).content.decode()

    # then it lists the job under the prints of cancelled orders
    section = re.search(r'<ul class="jobs" id="printed-after-cancel">.*?</ul>', html, re.S)
    assert section is not None
    assert f'id="job-{job.pk}"' in section.group(0) and job.order.ref in section.group(0)
    assert "Prints of cancelled orders at the printers" in html
    assert [listed.pk for listed in board_snapshot().printed_after_cancel] == [job.pk]
    assert [
        c.key for c in alert_conditions(now=timezone.now()) if c.key.startswith("printed_after_cancel:")
    ] == [f"printed_after_cancel:{job.pk}:{JobEvent.objects.get(job=job, kind='late_copy_not_cancelled').pk}"]


def test_a_cancel_that_withdrew_every_copy_or_an_old_print_or_a_live_job_is_not_listed(settings):
    # given a cancelled job whose copy the printer withdrew (no print), a cancelled job that printed more
    # than the window ago, and a job made suspect by its late second copy (on the board's suspect list, and
    # alerted there, not here)
    hotfolder_printer("minilab", sizes=["4x6"])
    withdrawn = _cancelled_job()
    JobEvent.objects.create(job=withdrawn, kind="printer_cancelled", note="walk-1:cancelled")
    old = _cancelled_job()
    stale = JobEvent.objects.create(job=old, kind="late_copy_not_cancelled", note="backend job 8")
    JobEvent.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - timedelta(hours=PRINTED_AFTER_CANCEL_HOURS, minutes=5)
    )
    live = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    job_walk(live, J.SUBMITTED)
    assert job_move(
        job_id=live.pk,
        from_statuses={J.SUBMITTED},
        to_status=J.SUSPECT,
        kind="late_copy_not_cancelled",
        note="backend job 9",
    )

    board = board_snapshot()

    assert board.printed_after_cancel == []
    assert not [c for c in alert_conditions(now=timezone.now()) if c.key.startswith("printed_after_cancel:")]
    assert _gauge(settings) == 0
