"""Upgrading to owed intent cancels (migration orders/0010): every order cancelled unpaid before it, with a
PaymentIntent, is marked owed, so the payments sweep cancels an intent that one lost task message left
payable; a paid or refunded order, or one without an intent, is not."""

from __future__ import annotations

import pytest

from lab.orders.models import Order
from tests.builders.orders import order_for
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("orders", "0009_order_tracking_number_unique")]


def test_orders_cancelled_unpaid_before_the_upgrade_owe_their_intent_a_cancel() -> None:
    latest = leaf_migrations("orders")
    cases = {
        "unpaid": ("cancelled", "requires_payment", "pi_unpaid"),
        "failed": ("cancelled", "failed", "pi_failed"),
        "refunded": ("cancelled", "refunded", "pi_refunded"),
        "no_intent": ("cancelled", "none", ""),
        "awaiting": ("awaiting_payment", "requires_payment", "pi_awaiting"),
    }
    orders = {name: order_for(None) for name in cases}  # today's model, before the schema goes back
    migrate_to(BEFORE)
    try:
        # As the lab left them before 0010 (only the columns that existed then are written).
        for name, (status, payment_status, intent) in cases.items():
            Order.objects.filter(pk=orders[name].pk).update(
                status=status, payment_status=payment_status, payment_intent_id=intent
            )
    finally:
        migrate_to(latest)

    owed = {
        name for name, order in orders.items() if Order.objects.get(pk=order.pk).payment_intent_cancel_due
    }
    assert owed == {"unpaid", "failed"}
