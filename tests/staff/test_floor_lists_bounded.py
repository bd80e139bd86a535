"""Floor pages stay small on a busy day: finished batches show a count, every list a cap and how many more;
what to load next leaves out the media of orders on hold, whose jobs are never sent."""

from __future__ import annotations

import html
import re
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


def _next_link(page: str) -> str | None:
    """The href of a list's "next" link, unescaped, or None on its last page."""
    found = re.search(r'<a rel="next" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def test_every_role_that_reads_the_board_opens_a_finished_batchs_jobs_and_only_those() -> None:
    # given a batch printed half an hour ago: one line on the board, linked to its jobs
    hotfolder_printer("alpha", sizes=["4x6"])
    printed = _printed_batch_of(3)
    behind = reverse("staff:supervisor_behind")
    statuses: dict[str, tuple[int, int, int]] = {}
    boards, batch_lists = {}, {}

    # when each role follows the board's link, and asks for a table of the supervisor's view
    for role in ("technician", "supervisor", "admin", "auditor", "packer"):
        client, _ = client_as(role)
        boards[role] = client.get(reverse("staff:board_live"))
        batch_lists[role] = client.get(f"{behind}?table=batch&batch={printed.batch_id}")
        queue_list = client.get(f"{behind}?table=queue&stage=queued")
        statuses[role] = (boards[role].status_code, batch_lists[role].status_code, queue_list.status_code)

    # then whoever reads the board reads the batch; the supervisor's other tables stay theirs
    assert statuses == {
        "technician": (200, 200, 200),
        "supervisor": (200, 200, 200),
        "admin": (200, 200, 200),
        "auditor": (200, 200, 403),
        "packer": (403, 403, 403),
    }
    assert f"{behind}?table=batch&amp;batch={printed.batch_id}" in boards["auditor"].content.decode()
    assert [job.pk for job in batch_lists["auditor"].context["jobs"]] == list(
        PrintJob.objects.filter(batch=printed.batch).order_by("pk").values_list("pk", flat=True)
    )
    # and the way back is the board, the page the auditor came from
    assert f'href="{reverse("staff:board")}"' in batch_lists["auditor"].content.decode()


def test_a_batch_of_250_jobs_is_listed_200_at_a_time_to_its_last_job() -> None:
    # given a finished batch of 250 jobs (the lists behind the board show 200 at a time)
    hotfolder_printer("alpha", sizes=["4x6"])
    printed = _printed_batch_of(250)
    every_job = list(PrintJob.objects.filter(batch=printed.batch).order_by("pk").values_list("pk", flat=True))
    client, _ = client_as("auditor")

    # when the auditor opens its list and follows its "next" link
    first = client.get(f"{reverse('staff:supervisor_behind')}?table=batch&batch={printed.batch_id}")
    next_url = _next_link(first.content.decode())
    assert next_url is not None
    second = client.get(next_url)

    # then the first page holds the first 200, the second the other 50 and no further link
    assert supervisor.BEHIND_LIMIT == 200
    assert [job.pk for job in first.context["jobs"]] == every_job[:200]
    assert "Showing the first 200 of 250 jobs" in first.content.decode()
    assert [job.pk for job in second.context["jobs"]] == every_job[200:]
    assert "Showing jobs 201 to 250 of 250" in second.content.decode()
    assert _next_link(second.content.decode()) is None


def test_a_queue_stage_pages_oldest_first_to_its_last_job(monkeypatch) -> None:
    # given 5 queued jobs, the list capped at 2
    hotfolder_printer("alpha", sizes=["5x7"])
    released_order(lines=[("PRINT-5X7-GLOSSY", 1)] * 5)
    queued = list(
        PrintJob.objects.filter(status="queued").order_by("updated_at", "pk").values_list("pk", flat=True)
    )
    assert len(queued) == 5
    monkeypatch.setattr(supervisor, "BEHIND_LIMIT", 2)
    client, _ = client_as("technician")

    # when a technician pages through the queued stage
    pages: list[list[int]] = []
    url: str | None = f"{reverse('staff:supervisor_behind')}?table=queue&stage=queued"
    while url is not None and len(pages) < 5:
        response = client.get(url)
        pages.append([job.pk for job in response.context["jobs"]])
        url = _next_link(response.content.decode())

    # then every job is reached once, oldest first, 2 a page
    assert pages == [queued[:2], queued[2:4], queued[4:]]


@pytest.mark.parametrize(
    ("after_time", "status"),
    [
        ("2026-01-01T00:00:00+23:59", 200),  # an offset Python takes and PostgreSQL refuses (past ±15:59)
        ("2026-01-01T00:00:00+05:30:15.5", 200),  # an offset with seconds: PostgreSQL refuses it too
        ("0001-01-01T00:00:00+01:00", 404),  # before the calendar's start once in UTC
        ("yesterday", 404),
    ],
)
def test_a_queue_stages_time_cursor_is_read_in_utc_or_names_no_job(after_time: str, status: int) -> None:
    # given a technician
    client, _ = client_as("technician")

    # when the next page is asked for with such a cursor
    response = client.get(
        reverse("staff:supervisor_behind"),
        {"table": "queue", "stage": "queued", "after": "1", "after_time": after_time},
    )

    # then a time is read as the UTC time it names (before: PostgreSQL's DataError, a 500), and what names
    # no time is a 404
    assert response.status_code == status
