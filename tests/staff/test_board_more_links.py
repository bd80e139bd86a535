"""The board's capped lists (waiting, failed, late orders) link their "and N more" to the whole list, paged:
its first page is the board's rows in the board's order, and its "next" links reach every row once."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lab.orders.models import Order, OrderItem
from lab.production.models import PrintJob
from lab.staff.board import BOARD_LIST_LIMIT
from tests.builders import client_as, paid_order

pytestmark = pytest.mark.django_db

BOARD_LISTS = ("waiting", "failed", "late_orders")
EXTRA = 5


def _jobs_in(
    status: str, *, promises: list[datetime | None], count: int, deal: Callable[[int], int] | None = None
) -> list[int]:
    """`count` jobs in `status` of one order per promise, the i-th job to the order `deal(i)` (in turn by
    default: job numbers and the board's order, soonest promise first and none last, differ); their ids in
    the board's order."""
    orders = []
    for promised_by in promises:
        order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
        Order.objects.filter(pk=order.pk).update(promised_by=promised_by)
        orders.append((order, OrderItem.objects.get(order=order)))
    deal = deal or (lambda i: i % len(orders))
    jobs = PrintJob.objects.bulk_create(
        PrintJob(order=orders[deal(i)][0], item=orders[deal(i)][1], copies=1, status=status)
        for i in range(count)
    )
    far = timezone.now() + timedelta(days=3650)
    promise_of = {order.pk: promised_by for (order, _), promised_by in zip(orders, promises, strict=True)}
    return [job.pk for job in sorted(jobs, key=lambda job: (promise_of[job.order_id] or far, job.pk))]


def _late_orders(count: int) -> list[int]:
    """`count` orders in production, promised in the past, two at a time to the same minute, the later-made
    pair promised first; their ids in the board's order (earliest promise first)."""
    now = timezone.now()
    orders = Order.objects.bulk_create(
        Order(
            status="in_production",
            shipping_address={"name": "X"},
            shipping_method="standard",
            subtotal_minor=0,
            shipping_minor=0,
            total_minor=0,
            currency="usd",
            promised_by=now - timedelta(hours=1, minutes=i // 2),
        )
        for i in range(count)
    )
    return [order.pk for order in sorted(orders, key=lambda order: (order.promised_by, order.pk))]


def _make(kind: str) -> list[int]:
    count = BOARD_LIST_LIMIT + EXTRA
    now = timezone.now()
    if kind == "waiting":
        # the page ends among the jobs whose order has no promise (listed last)
        return _jobs_in(
            "no_printer", promises=[now + timedelta(hours=2), now + timedelta(hours=1), None], count=count
        )
    if kind == "failed":
        # the page ends among the jobs of one order (the same promise: the job number decides), and the next
        # holds that order's last 2 jobs, then the 3 jobs of an order without a promise
        return _jobs_in(
            "failed",
            promises=[now - timedelta(hours=1), now + timedelta(hours=1), None],
            count=count,
            deal=lambda i: 2 if i % 70 == 0 else i % 2,
        )
    return _late_orders(count)


def _board_rows(client: Client, kind: str) -> tuple[list[int], str]:
    live = client.get(reverse("staff:board_live"))
    assert live.status_code == 200
    return [row.pk for row in getattr(live.context["board"], kind)], live.content.decode()


def _more_link(page: str, kind: str) -> str | None:
    """The href of the board's "and N more" of a list, unescaped."""
    found = re.search(rf'<a href="([^"]*table={kind}[^"]*)">and {EXTRA} more</a>', page)
    return html.unescape(found.group(1)) if found else None


def _next_link(page: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def _listed(response: object, kind: str) -> list[int]:
    context = response.context  # type: ignore[attr-defined]
    return [row.pk for row in context["orders" if kind == "late_orders" else "jobs"]]


@pytest.mark.parametrize("kind", BOARD_LISTS)
def test_a_capped_board_list_links_to_all_of_it_and_its_pages_reach_every_row_once(kind: str) -> None:
    # given 5 more rows in one of the board's lists than the board shows
    every_row = _make(kind)
    client, _ = client_as("technician")

    # when a technician follows the board's "and 5 more", then that list's "next" link
    shown, board_page = _board_rows(client, kind)
    more = _more_link(board_page, kind)
    assert more is not None, f"no link behind the board's {kind} 'and {EXTRA} more'"
    first = client.get(more)
    assert first.status_code == 200
    next_url = _next_link(first.content.decode())
    assert next_url is not None
    second = client.get(next_url)

    # then the board's rows are the list's first page, in the same order, and the pages hold every row once
    assert shown == every_row[:BOARD_LIST_LIMIT]
    assert _listed(first, kind) == shown
    assert _listed(second, kind) == every_row[BOARD_LIST_LIMIT:]
    assert f"of {BOARD_LIST_LIMIT + EXTRA}" in second.content.decode()
    assert _next_link(second.content.decode()) is None
    # and the way back is the board
    assert f'href="{reverse("staff:board")}"' in first.content.decode()


def test_every_role_that_reads_the_board_opens_its_lists_behind_and_more() -> None:
    # given one row in each of the board's capped lists
    an_hour_ago = timezone.now() - timedelta(hours=1)
    _jobs_in("no_printer", promises=[an_hour_ago], count=1)
    _jobs_in("failed", promises=[an_hour_ago], count=1)
    statuses: dict[str, tuple[int, ...]] = {}

    # when each role opens the lists the board's "and N more" link to
    for role in ("technician", "supervisor", "admin", "auditor", "packer"):
        client, _ = client_as(role)
        board = client.get(reverse("staff:board_live")).status_code
        lists = tuple(
            client.get(reverse("staff:supervisor_behind"), {"table": kind}).status_code
            for kind in BOARD_LISTS
        )
        statuses[role] = (board, *lists)

    # then whoever reads the board reads them, auditors too; a packer reads neither
    assert statuses == {
        "technician": (200, 200, 200, 200),
        "supervisor": (200, 200, 200, 200),
        "admin": (200, 200, 200, 200),
        "auditor": (200, 200, 200, 200),
        "packer": (403, 403, 403, 403),
    }
