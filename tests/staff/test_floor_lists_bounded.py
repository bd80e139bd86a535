"""Floor pages stay small on a busy day: finished batches show a count, every list a cap and how many more;
what to load next leaves out the media of orders on hold, whose jobs are never sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from lab.production.holds import order_hold, order_release_hold
from lab.production.models import PrintJob
from lab.staff import board
from lab.staff.board import FINISHED_VISIBLE_MINUTES, board_snapshot
from lab.staff.views import floor, supervisor
from tests.builders import client_as, hotfolder_printer, person, ready_to_pack_order, released_order

pytestmark = pytest.mark.django_db


def _printed_batch_of(count: int) -> PrintJob:
    """One 4x6 batch of `count` jobs, all printed a while ago (past the board's few minutes in view)."""
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    first = PrintJob.objects.get(order=order)
    long_ago = timezone.now() - timedelta(minutes=FINISHED_VISIBLE_MINUTES + 10)
    PrintJob.objects.bulk_create(
        PrintJob(
            order_id=first.order_id,
            item_id=first.item_id,
            printer_id=first.printer_id,
            batch_id=first.batch_id,
            copies=1,
            status="printed",
            printed_at=long_ago,
        )
        for _ in range(count - 1)
    )
    PrintJob.objects.filter(pk=first.pk).update(printed_at=long_ago)
    return first


def test_a_finished_batch_of_300_jobs_is_a_count_and_the_lists_behind_it_are_capped(monkeypatch) -> None:
    # given a printer that finished a batch of 300 prints half an hour ago, and 3 queued 5x7 jobs
    alpha = hotfolder_printer("alpha", sizes=["4x6", "5x7"])
    printed = _printed_batch_of(300)
    released_order(lines=[("PRINT-5X7-GLOSSY", 1)] * 3)
    queued = list(PrintJob.objects.filter(status="queued").order_by("pk"))
    assert [job.printer_id for job in queued] == [alpha.pk] * 3
    client, _ = client_as("technician")

    # when a technician's board polls, and they open the lists behind it (a queue stage's capped at 2)
    live = client.get(reverse("staff:board_live")).content.decode()
    batch_list = client.get(f"{reverse('staff:supervisor_behind')}?table=batch&batch={printed.batch_id}")
    monkeypatch.setattr(supervisor, "BEHIND_LIMIT", 2)
    queue_list = client.get(f"{reverse('staff:supervisor_behind')}?table=queue&stage=queued")
    job_page = client.get(reverse("staff:job", args=[queued[-1].pk]))

    # then the finished batch is one line with its count and a link to its jobs, none of them listed
    assert live.count('data-status="printed"') == 0
    assert live.count('data-status="queued"') == 3
    assert f"Batch {printed.batch_id} on alpha: 300 jobs printed" in live
    assert f"/lab/supervisor/behind/?table=batch&amp;batch={printed.batch_id}" in live
    # the batch's own list shows the cap (200) and says how many it leaves out
    assert batch_list.status_code == 200
    assert len(batch_list.context["jobs"]) == board.BOARD_LIST_LIMIT == 200
    assert [job.pk for job in batch_list.context["jobs"]][:1] == [printed.pk]
    assert batch_list.context["total"] == 300
    assert "Showing the first 200 of 300 jobs" in batch_list.content.decode()
    # a queue stage lists its oldest jobs first, up to the cap
    assert [job.pk for job in queue_list.context["jobs"]] == [job.pk for job in queued[:2]]
    assert "Showing the 2 oldest of 3 jobs" in queue_list.content.decode()
    # the ticket's checkboxes: 200 of the 303 candidates, the jobs at the printer now first, this one checked
    candidates = job_page.context["ticket_candidates"]
    assert len(candidates) == floor.TICKET_CANDIDATES_SHOWN == 200
    assert [job.pk for job in candidates[:3]] == [job.pk for job in queued]
    assert job_page.context["ticket_candidates_total"] == 303
    page = job_page.content.decode()
    assert page.count('name="job_ids"') == 200
    assert "200 of the 303 jobs" in page
    assert f'value="{queued[-1].pk}" checked' in page


def test_failed_waiting_and_late_lists_show_the_cap_and_how_many_more(monkeypatch) -> None:
    # given 3 jobs no printer can take, of orders promised an hour ago
    released_order(lines=[("PRINT-11X14-MATTE", 1)] * 3, promised_by=timezone.now() - timedelta(hours=1))
    released_order(lines=[("PRINT-11X14-MATTE", 1)], promised_by=timezone.now() - timedelta(hours=2))
    monkeypatch.setattr(board, "BOARD_LIST_LIMIT", 2)
    client, _ = client_as("technician")

    # when the board is read
    snapshot = board_snapshot()
    live = client.get(reverse("staff:board_live")).content.decode()

    # then each list holds the cap and knows its full length
    assert (len(snapshot.waiting), snapshot.waiting_total) == (2, 4)
    assert (len(snapshot.late_orders), snapshot.late_orders_total) == (2, 2)
    assert live.count('data-status="no_printer"') == 2
    assert "and 2 more" in live


def test_load_next_leaves_out_a_held_orders_media_until_it_is_released() -> None:
    # given a 5x7 order promised first and put on hold, and a 4x6 order promised later
    minilab = hotfolder_printer("minilab", sizes=["4x6", "5x7"])
    now = timezone.now()
    held = released_order(lines=[("PRINT-5X7-GLOSSY", 1)], promised_by=now + timedelta(hours=1))
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)], promised_by=now + timedelta(hours=5))
    technician = person("technician")
    order_hold(order_ref=held.ref, actor=technician, message="Which crop do you want?")

    # when the board says what to load next, before and after the customer answers
    while_held = board_snapshot()
    client, _ = client_as("technician")
    live = client.get(reverse("staff:board_live")).content.decode()
    order_release_hold(order_ref=held.ref, actor=technician)
    released = board_snapshot()

    # then the held order's paper is not what to load: nothing of it is sent until it is released
    assert [(row.printer.pk, row.media) for row in while_held.load_next] == [
        (minilab.pk, [("4x6", "lustre", 1)])
    ]
    assert [row.held for row in while_held.load_next] == [[("5x7", "glossy", 1)]]
    load_next = live[live.index('id="load-next"') : live.index("<h2>Printers</h2>")]
    assert '<span class="tag warn">4x6 lustre (1 job)</span>' in load_next
    assert "5x7 glossy (1 job) waiting for the customer" in load_next
    assert [(row.printer.pk, row.media, row.held) for row in released.load_next] == [
        (minilab.pk, [("5x7", "glossy", 1), ("4x6", "lustre", 1)], [])
    ]
