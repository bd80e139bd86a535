"""A shipping address written in the database alone labels no box (lab/orders/models.py: the address seal).

As a database administrator would try it: SQL sends a paid order's prints to an address of theirs. The slip,
the box's label, is not made for it, by the worker or at the packing station; the lab's own orders, and an
erased customer's emptied address, still get theirs."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from lab.lib.errors import Conflict
from lab.orders.models import Order
from lab.packing.models import PackingSlip
from lab.packing.services import packing_slip_render
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


def test_the_labs_own_and_an_emptied_address_get_their_slip(order):
    assert packing_slip_render(order_id=order.pk).pages == 1
    dba_sets_address(order, {})  # what an erasure leaves: no address to send anything to

    assert packing_slip_render(order_id=order.pk).pages == 1
