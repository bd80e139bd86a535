"""A shipping address written in the database alone labels no box (lab/orders/models.py: the address seal).

As a database administrator would try it: SQL sends a paid order's prints to an address of theirs. The slip,
the box's label, is not made for it, by the worker or at the packing station; the lab's own orders, and an
erased customer's emptied address, still get theirs."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest
from django.urls import reverse
from pypdf import PdfReader

from lab.lib.errors import Conflict
from lab.orders.models import Order
from lab.packing.models import PackingSlip
from lab.packing.services import packing_slip_render, slip_data_for, slip_is_sealed
from lab.packing.slip import render_slip
from tests.builders import client_as, hotfolder_printer, messages_of, ready_to_pack_order
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
THEIRS = {"name": "Someone Else", "line1": "9 Drop Box Lane", "city": "Elsewhere", "country": "US"}


@pytest.fixture
def order() -> Order:
    hotfolder_printer("minilab", sizes=["4x6"])
    return ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])


def dba_sets_address(order: Order, address: dict[str, str]) -> None:
    dba("UPDATE orders_order SET shipping_address = %s WHERE id = %s", json.dumps(address), order.pk)


def test_an_address_written_in_the_database_gets_no_slip(order):
    dba_sets_address(order, THEIRS)

    with pytest.raises(Conflict, match="changed outside the lab"):
        packing_slip_render(order_id=order.pk)
    client, _ = client_as("packer")
    response = client.get(reverse("staff:slip", args=[order.ref]), follow=True)

    assert not response["Content-Type"].startswith("application/pdf")
    assert any("changed outside the lab" in message for message in messages_of(response))
    assert not PackingSlip.objects.filter(order=order).exists()


def test_an_order_with_an_address_written_in_the_database_does_not_hold_up_the_days_slips(order):
    # given two orders ready to pack, one of them readdressed in SQL
    other = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    dba_sets_address(order, THEIRS)
    client, _ = client_as("packer")

    response = client.get(reverse("staff:day_slips"))

    # then the other order's slip is printed and the readdressed one is named, without a slip (before: no
    # PDF at all, the whole station's day held up by one order)
    assert response.status_code == 200
    assert (response["X-Slip-Count"], response["X-Slips-Refused"]) == ("1", order.ref)
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert other.ref in text
    assert THEIRS["line1"] not in text
    station = client.get(reverse("staff:packing"))
    assert messages_of(station) == [
        f"No slip for {order.ref}: its shipping address was changed outside the lab. Ask a supervisor."
    ]


def test_the_labs_own_and_an_emptied_address_get_their_slip(order):
    assert packing_slip_render(order_id=order.pk).pages == 1
    dba_sets_address(order, {})  # what an erasure leaves: no address to send anything to

    assert packing_slip_render(order_id=order.pk).pages == 1


def _slip_text(pdf: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize("how", ["another order's slip moved here", "a slip of their own making"])
def test_a_stored_slip_written_in_the_database_is_not_served_and_the_labs_own_is_made_again(order, how):
    """The stored slip is what the packer prints and puts in the box. Before, a database administrator who
    moved their own order's slip (PDF and seal) onto a customer's order, or stored a PDF rendered with their
    address (render_slip needs no secret), had the customer's box labelled for them."""
    own = packing_slip_render(order_id=order.pk)
    theirs = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])  # the administrator's own order
    theirs.shipping_address = THEIRS
    theirs.save(update_fields=["shipping_address"])  # through the lab: sealed
    their_slip = packing_slip_render(order_id=theirs.pk)
    if how == "another order's slip moved here":
        dba(
            "UPDATE packing_packingslip SET pdf = %s, seal = %s WHERE order_id = %s",
            bytes(their_slip.pdf),
            their_slip.seal,
            order.pk,
        )
    else:
        forged = render_slip(slip=replace(slip_data_for(order), ship_to=["Someone Else", "9 Drop Box Lane"]))
        dba("UPDATE packing_packingslip SET pdf = %s WHERE order_id = %s", forged, order.pk)
    assert "Someone Else" in _slip_text(bytes(PackingSlip.objects.get(order=order).pdf))
    client, _ = client_as("packer")

    served = client.get(reverse("staff:slip", args=[order.ref]))

    assert served.status_code == 200 and served["Content-Type"] == "application/pdf"
    text = _slip_text(served.content)
    assert order.ref in text and "Someone Else" not in text
    assert order.shipping_address["name"] in text
    stored = PackingSlip.objects.get(order=order)  # made again from the order, as the lab first made it
    assert bytes(stored.pdf) == served.content == bytes(own.pdf) and slip_is_sealed(stored)
