"""My Account's address change (PATCH me `address`) is the address for orders to come: each order keeps the
one it was placed with, and the answer names the open orders that keep theirs, to change one by one
(PATCH orders/{ref}).

Before, the change answered as if done while every open order still shipped to the old address, and nothing
told the customer so."""

from __future__ import annotations

import pytest

from lab.orders.models import Order
from tests.builders import ADDRESS, TO_PACKED, UserFactory, order_for, order_move, token_client

pytestmark = pytest.mark.django_db

MOVED_TO = {
    "name": "Ada Quill",
    "line1": "9 Darkroom Row",
    "city": "Aperture",
    "postal_code": "94016",
    "country": "US",
}
STORED_MOVED_TO = {**MOVED_TO, "line2": "", "region": ""}  # as the API's validation stores an address


def test_the_answer_names_the_open_orders_that_keep_their_address_and_changes_none(api):
    customer = UserFactory.create()
    client = token_client(api, customer)
    unpaid = order_for(customer)
    in_production = order_move(order_for(customer), "paid", "in_production")
    packed = order_move(order_for(customer), *TO_PACKED)
    shipped = order_move(order_for(customer), *TO_PACKED, "shipped")
    cancelled = order_move(order_for(customer), "cancelled")
    pickup = order_for(customer)
    Order.objects.filter(pk=pickup.pk).update(shipping_method=Order.ShippingMethod.PICKUP)
    already_there = order_for(customer)
    Order.objects.filter(pk=already_there.pk).update(shipping_address=STORED_MOVED_TO)
    someone_elses = order_for(UserFactory.create())

    response = client.patch("/api/v1/me", {"address": MOVED_TO}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["address"] == STORED_MOVED_TO
    assert response.json()["orders_keeping_their_address"] == [unpaid.ref, in_production.ref, packed.ref]
    kept = {unpaid, in_production, packed, shipped, cancelled, pickup, someone_elses}
    assert {order.ref for order in kept} == set(
        Order.objects.filter(shipping_address=ADDRESS).values_list("ref", flat=True)
    )


def test_a_change_without_an_address_names_no_order(api):
    customer = UserFactory.create()
    client = token_client(api, customer)
    order_move(order_for(customer), "paid")

    response = client.patch("/api/v1/me", {"full_name": "Ada Q."}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["orders_keeping_their_address"] == []
