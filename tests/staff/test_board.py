"""The production board: printers with reasons and counts, batches by media, exceptions, late orders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from lab.orders.models import Order
from lab.production import actions, jobs
from lab.production.models import Printer, PrintJob
from lab.staff.board import board_snapshot
from tests.builders import client_as, hotfolder_printer, job_walk, person, ready_to_pack_order, released_order

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class BusyFloor:
    alpha: Printer
    order: Order
    waiting_order: Order
    unknown: PrintJob
    failed: PrintJob


@pytest.fixture
def busy_floor() -> BusyFloor:
    alpha = hotfolder_printer("alpha", sizes=["4x6", "5x7"], papers=["lustre", "glossy"])
    order = released_order(
        lines=[("PRINT-4X6-LUSTRE", 1)] * 5 + [("PRINT-5X7-GLOSSY", 1)],
        promised_by=timezone.now() - timedelta(hours=2),
    )
    _queued, ready, submitted, printed, unknown, failed = PrintJob.objects.filter(order=order).order_by("pk")
    job_walk(ready, "ready")
    job_walk(submitted, "submitted")
    job_walk(printed, "printed")
    job_walk(unknown, "submitting")
    assert jobs.job_move(job_id=unknown.pk, from_statuses={"submitting"}, to_status="unknown")
    assert jobs.job_move(
        job_id=failed.pk,
        from_statuses={"queued"},
        to_status="failed",
        failure_code="printer_aborted",
        failure_is_permanent=True,
    )
    waiting_order = released_order(lines=[("PRINT-11X14-MATTE", 1)])
    bravo = hotfolder_printer("bravo", sizes=["8x10"])
    actions.printer_pause(printer_id=bravo.pk, actor=person("technician"))
    # As printer_poll writes them from CUPS and from a vanished hot folder:
    charlie = Printer.objects.create(
        name="charlie", backend="cups", target="charlie", state="error", state_reasons=["media-empty-error"]
    )
    delta = hotfolder_printer("delta", sizes=["4x6"])
    Printer.objects.filter(pk=delta.pk).update(state="offline", state_reasons=["offline", "folder-missing"])
    assert charlie.is_available is False
    return BusyFloor(alpha=alpha, order=order, waiting_order=waiting_order, unknown=unknown, failed=failed)


def test_board_snapshot_counts_reasons_groups_and_exceptions(busy_floor):
    board = board_snapshot()

    rows = {row.printer.name: row for row in board.printers}
    assert rows["alpha"].counts == {"queued": 1, "rasterizing": 0, "ready": 1, "submitted": 1, "printed": 1}
    assert rows["alpha"].reasons == []
    assert rows["alpha"].media == ["4x6 lustre", "4x6 glossy", "5x7 lustre", "5x7 glossy"]
    assert rows["bravo"].reasons == ["paused by lab"]
    assert rows["charlie"].reasons == ["out of media", "error"]
    assert rows["delta"].reasons == ["offline", "folder missing"]
    assert [(g.size, g.paper, len(g.batches)) for g in board.media_groups] == [
        ("4x6", "lustre", 1),
        ("5x7", "glossy", 1),
    ]
    assert [job.status for job in board.media_groups[0].batches[0].jobs] == [
        "queued",
        "ready",
        "submitted",
        "printed",
        "unknown",
    ]
    assert [job.order.ref for job in board.waiting] == [busy_floor.waiting_order.ref]
    assert [(job.pk, job.failure_code) for job in board.failed] == [(busy_floor.failed.pk, "printer_aborted")]
    assert [job.pk for job in board.unknown] == [busy_floor.unknown.pk]
    assert [order.ref for order in board.late_orders] == [busy_floor.order.ref]


def test_board_page_shows_it_without_photos(busy_floor):
    client, _ = client_as("technician")

    html = client.get(reverse("staff:board")).content.decode()

    alpha_row = re.search(rf'<tr id="printer-{busy_floor.alpha.pk}".*?</tr>', html, re.S)
    assert alpha_row is not None
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', alpha_row.group(0)))
    assert counts == {"queued": "1", "rasterizing": "0", "ready": "1", "submitted": "1", "printed": "1"}
    assert "out of media" in html and "paused by lab" in html
    assert "printer_aborted" in html and "permanent" in html
    assert busy_floor.waiting_order.ref in html
    assert "<img" not in html
    assert html.count('class="photo-placeholder"') == 9  # 6 jobs in batches, and the waiting, failed, unknown
    assert 'hx-get="/lab/board/live/"' in html and 'hx-trigger="every 3s"' in html


def test_board_fragment_is_the_board_without_the_page(busy_floor):
    client, _ = client_as("supervisor")

    fragment = client.get(reverse("staff:board_live"), headers={"HX-Request": "true"})

    html = fragment.content.decode()
    assert fragment.status_code == 200
    assert "<html" not in html and "<h2>Printers</h2>" in html
    assert busy_floor.order.ref in html


def test_job_page_offers_the_actions_its_status_allows(busy_floor):
    client, _ = client_as("technician")

    unknown_page = client.get(reverse("staff:job", args=[busy_floor.unknown.pk])).content.decode()
    failed_page = client.get(reverse("staff:job", args=[busy_floor.failed.pk])).content.decode()

    assert "It printed" in unknown_page and "Reroute" not in unknown_page
    assert "Reroute" in failed_page and "Request reprint" not in failed_page
    assert "printer_aborted" in failed_page
    assert "<img" not in unknown_page + failed_page


def test_board_fragment_queries_do_not_grow_with_the_number_of_jobs(
    busy_floor, django_assert_max_num_queries
):
    client, _ = client_as("technician")
    client.get(reverse("staff:board"))  # the session and role lookups settle

    # session, user, roles; 9 board reads; the sweeps' clock and runs, and the install time while no sweep
    # has run (3); the session save (3): none of them per job or per printer
    with django_assert_max_num_queries(18):
        response = client.get(reverse("staff:board_live"), headers={"HX-Request": "true"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("role", "url_name", "ready"),
    [("technician", "staff:order", False), ("packer", "staff:packing_order", True)],
    ids=["the floor's order page", "the packing checklist"],
)
def test_an_orders_page_costs_the_same_queries_for_2_items_or_12(role, url_name, ready):
    # photo orders run to hundreds of prints: one query per job (its order's ref) or per item (its printed
    # jobs) made these pages slow exactly for the orders a lab cares most about
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    hotfolder_printer("minilab", sizes=["4x6"])
    build = ready_to_pack_order if ready else released_order
    small, big = (build(lines=[("PRINT-4X6-LUSTRE", 1)] * n) for n in (2, 12))
    client, _ = client_as(role)
    client.get(reverse(url_name, args=[small.ref]))  # sessions, caches: warmed once
    counts = []
    for order in (small, big):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse(url_name, args=[order.ref])).status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1], counts
