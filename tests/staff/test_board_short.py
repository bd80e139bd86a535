"""The board on a busy day: finished batches collapse, and what to load next per printer comes first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from lab.production.models import PrintJob
from lab.staff.board import FINISHED_VISIBLE_MINUTES, Board, board_snapshot
from tests.builders import client_as, hotfolder_printer, job_walk, released_order

pytestmark = pytest.mark.django_db


def test_finished_batches_collapse_once_printed_a_while_ago() -> None:
    hotfolder_printer("alpha", sizes=["4x6", "5x7"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1), ("PRINT-5X7-GLOSSY", 1)])
    for job in PrintJob.objects.filter(order=order, item__product__sku="PRINT-4X6-LUSTRE"):
        job_walk(job, "printed")

    just_now = board_snapshot()
    later = board_snapshot(now=timezone.now() + timedelta(minutes=FINISHED_VISIBLE_MINUTES + 1))
    html = render_to_string("staff/_board.html", {"board": later, "can_act": False})

    def counts(board: Board) -> dict[tuple[str, str], tuple[int, int]]:
        return {(g.size, g.paper): (len(g.finished_batches), len(g.open_batches)) for g in board.media_groups}

    assert counts(just_now) == {("4x6", "lustre"): (0, 1), ("5x7", "glossy"): (0, 1)}
    assert counts(later) == {("4x6", "lustre"): (1, 0), ("5x7", "glossy"): (0, 1)}
    assert html.count('<details class="finished-batches"') == 1
    assert "1 finished batch</summary>" in html


def test_load_next_lists_each_printers_next_media_by_earliest_promise() -> None:
    alpha = hotfolder_printer("alpha", sizes=["4x6", "5x7"])
    now = timezone.now()
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)] * 2, promised_by=now + timedelta(days=3))
    released_order(lines=[("PRINT-5X7-GLOSSY", 1)], promised_by=now + timedelta(days=1))
    client, _ = client_as("technician")

    board = board_snapshot()
    html = client.get("/lab/board/live/").content.decode()

    assert [(row.printer.pk, row.media) for row in board.load_next] == [
        (alpha.pk, [("5x7", "glossy", 1), ("4x6", "lustre", 2)])
    ]
    assert html.index('id="load-next"') < html.index("<h2>Printers</h2>")
    assert "5x7 glossy (1 job)" in html
