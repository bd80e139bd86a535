"""An erasure removes an order's carrier and tracking number with its address.

With the carrier's tracking page, a tracking number gives the parcel's route and the town it was delivered
to. Before, both stayed on the anonymised order, though the erasure deleted the webhook bodies that quoted
them for that very reason.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from lab.orders.models import Order
from tests.builders import PASSWORD, TO_PACKED, new_customer, order_for, order_move
from tests.builders.guest_tokens import guest_token_grant

pytestmark = pytest.mark.django_db


def _shipped(order: Order, tracking_number: str) -> Order:
    order_move(order, *TO_PACKED)
    return order_move(
        order, "shipped", carrier="ups", tracking_number=tracking_number, shipped_at=timezone.now()
    )


def _shipping_details() -> dict[str, tuple[str, str, bool]]:
    return {
        ref: (carrier, tracking_number, is_anonymized)
        for ref, carrier, tracking_number, is_anonymized in Order.objects.values_list(
            "ref", "carrier", "tracking_number", "is_anonymized"
        )
    }


def test_an_account_erasure_removes_the_carrier_and_tracking_number_of_its_shipped_orders(api):
    # given a customer with two shipped orders (two erased orders then share the empty tracking number,
    # which the uniqueness of tracking numbers leaves out), and another customer's shipped order
    customer = new_customer()
    first = _shipped(order_for(customer), "1Z999AA10123456784")
    second = _shipped(order_for(customer), "7946 1234 5678")
    others = _shipped(order_for(new_customer()), "1Z999AA10123456785")
    api.force_authenticate(customer)

    response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    assert response.status_code == 200, response.json()
    assert _shipping_details() == {
        first.ref: ("", "", True),
        second.ref: ("", "", True),
        others.ref: ("ups", "1Z999AA10123456785", False),
    }


def test_a_guest_erasure_removes_the_carrier_and_tracking_number_of_the_order(api):
    # given a guest's shipped order, and the guest's token
    order = _shipped(order_for(None, guest_email="guest@example.org"), "1Z999AA10123456784")
    guest_token_grant(order, "the-guest-token")

    response = api.delete(f"/api/v1/orders/{order.ref}/personal-data", HTTP_X_ORDER_TOKEN="the-guest-token")

    assert response.status_code == 200, response.json()
    assert _shipping_details() == {order.ref: ("", "", True)}
