"""The packing station takes a count only of the prints the packer's page showed, and only the packer's.

Before, a count posted from a page opened before a reprint was spread over the original and the reprint, and
the box was packed with the rejected print while its replacement stayed at the printer; and the floor's
quality check of a reprint (copies_verified) confirmed its item at the station without the packer counting it.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from lab.orders.models import Order
from lab.production import reprints
from lab.production.models import PrintJob
from lab.production.tracking import order_check_printed
from tests.builders import client_as, hotfolder_printer, job_walk, messages_of, person, ready_to_pack_order
from tests.builders.packing_station import page_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def order() -> Order:
    hotfolder_printer("minilab", sizes=["4x6"])
    return ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])


def _page(client: Client, order: Order) -> str:
    return client.get(reverse("staff:packing_order", args=[order.ref])).content.decode()


def _item_seen(page: str, position: int) -> str:
    """The page token the item's count form posts."""
    return page_token(page, order=_order_of(page), position=position)


def _pack_seen(page: str) -> str:
    return page_token(page, order=_order_of(page), step="pack")


def _order_of(page: str) -> Order:
    found = re.search(r"<h1>Order (PL-[0-9A-Z]+) ", page)
    assert found
    return Order.objects.get(ref=found.group(1))


def _confirm(client: Client, order: Order, *, copies: int, seen: str) -> list[str]:
    url = reverse("staff:packing_confirm", args=[order.ref])
    return messages_of(client.post(url, {"position": "1", "copies": str(copies), "seen": seen}, follow=True))


def _pack(client: Client, order: Order, *, seen: str) -> list[str]:
    url = reverse("staff:packing_pack", args=[order.ref])
    return messages_of(client.post(url, {"seen": seen}, follow=True))


def _reprinted_and_printed(order: Order, *, copies: int = 1) -> PrintJob:
    original = PrintJob.objects.get(order=order, reprint_of=None)
    reprint = reprints.job_reprint(
        job_id=original.pk, actor=person("technician"), reason="colour", copies=copies
    )
    job_walk(reprint, "printed")
    assert order_check_printed(order_id=order.pk)
    return reprint


def _packed_counts(order: Order) -> list[int]:
    return list(PrintJob.objects.filter(order=order).order_by("pk").values_list("copies_packed", flat=True))


def test_a_count_from_a_page_opened_before_a_reprint_is_refused(order):
    # given a packer counting the 3 prints on the table from the page they opened
    client, _ = client_as("packer")
    stale = _page(client, order)
    # when the floor rejects one of them and reprints it, and the reprint prints (the order is ready again)
    _reprinted_and_printed(order)
    # then the count made from the stale page is refused, nothing confirmed, and the order is not packed
    messages = _confirm(client, order, copies=3, seen=_item_seen(stale, 1))
    assert messages == [
        "Item 1 changed since you opened this page (a reprint): count it again. Nothing was confirmed."
    ]
    assert _packed_counts(order) == [0, 0]
    assert _pack(client, order, seen=_pack_seen(stale)) == [
        f"Order {order.ref} changed since you opened this page (a reprint): "
        "look at its checklist again before packing. It was not packed."
    ]
    order.refresh_from_db()
    assert order.status == "ready_to_pack"


def test_a_quality_check_of_a_reprint_does_not_count_it_for_the_packer(order):
    # given an item the packer counted, one of whose prints was then reprinted and checked good at the printer
    client, _ = client_as("packer")
    assert _confirm(client, order, copies=3, seen=_item_seen(_page(client, order), 1)) == [
        "Item 1 confirmed: 3 copies."
    ]
    reprint = _reprinted_and_printed(order)
    reprints.job_verify_copies(job_id=reprint.pk, actor=person("technician"), copies=1)
    # when the packer looks at the order and tries to pack it
    page = _page(client, order)
    messages = _pack(client, order, seen=_pack_seen(page))
    # then the item waits for the packer's count of the replacement: the check stays the floor's
    assert 'id="pack" class="primary" disabled' in page
    assert messages == ["Confirm every item before packing: item 1 (2 of 3)."]
    reprint.refresh_from_db()
    assert (reprint.copies_verified, reprint.copies_packed) == (1, 0)
    order.refresh_from_db()
    assert order.status == "ready_to_pack"


def test_a_page_opened_after_the_reprint_says_so_and_packs_once_counted_again(order):
    # given a reprint of one of the item's 3 prints, printed
    client, _ = client_as("packer")
    _reprinted_and_printed(order)
    # when the packer opens the order, counts the item and packs it
    page = _page(client, order)
    counted = _confirm(client, order, copies=3, seen=_item_seen(page, 1))
    packed = _pack(client, order, seen=_pack_seen(_page(client, order)))
    # then the page told them which print to leave out, and the count and the pack are taken
    assert "1 of 3 is a reprint: put the rejected print aside" in page
    assert counted == ["Item 1 confirmed: 3 copies."]
    assert packed == [f"Order {order.ref} packed. Enter the carrier and tracking number to ship it."]
    assert _packed_counts(order) == [2, 1]
    order.refresh_from_db()
    assert order.status == "packed"


def test_a_count_from_a_page_opened_before_an_unpack_is_refused(order):
    # given a tab left open on the order, which was then counted, packed and unpacked from another
    tab, _ = client_as("packer")
    stale = _page(tab, order)
    other, _ = client_as("packer")
    _confirm(other, order, copies=3, seen=_item_seen(_page(other, order), 1))
    _pack(other, order, seen=_pack_seen(_page(other, order)))
    unpack_seen = page_token(_page(other, order), order=order, step="unpack")
    other.post(reverse("staff:packing_unpack", args=[order.ref]), {"seen": unpack_seen})
    # when the old tab's count is posted
    messages = _confirm(tab, order, copies=3, seen=_item_seen(stale, 1))
    # then it is refused: the box was opened, what goes back into it is counted again
    assert messages == [
        "Item 1 changed since you opened this page (it left the packing station and came back): "
        "count it again. Nothing was confirmed."
    ]
    assert _packed_counts(order) == [0]


def test_the_packer_counts_and_packs_from_the_page_as_before(order):
    # given the order's page
    client, _ = client_as("packer")
    page = _page(client, order)
    # when the packer counts the item, then packs from the page they are sent back to
    counted = _confirm(client, order, copies=3, seen=_item_seen(page, 1))
    packed = _pack(client, order, seen=_pack_seen(_page(client, order)))
    # then both are taken from forms that said what the page showed, with no reprint note
    assert _item_seen(page, 1)
    assert _pack_seen(page)
    assert "reprint" not in page.lower()
    assert counted == ["Item 1 confirmed: 3 copies."]
    assert packed == [f"Order {order.ref} packed. Enter the carrier and tracking number to ship it."]
    assert _packed_counts(order) == [3]
