"""An erasure keeps the dispute ids and outcomes on an order's timeline.

A dispute's close is recorded as an order event whose note is Stripe's dispute id and final status
(`dp_… won`): no personal data, and what tells a `charge.dispute.created` that comes after its own close
(Stripe does not keep its events in order, and retries a failed delivery for days) that the dispute is over.
Before, the erasure blanked every order event's note, and the late creation then marked the settled payment
`disputed` for good, with no close to come.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from lab.orders.models import Order, OrderEvent, StripeEvent
from tests.builders import PASSWORD, new_customer, order_for, order_move
from tests.support.stripe_webhooks import deliver, succeeded

pytestmark = pytest.mark.django_db


def _dispute(order: Order, **fields: object) -> dict[str, object]:
    return {
        "id": "dp_1",
        "object": "dispute",
        "payment_intent": order.payment_intent_id,
        "amount": order.total_minor,
        "reason": "fraudulent",
        **fields,
    }


def _shipped_paid_order(api) -> Order:
    customer = new_customer()
    order = order_for(customer)
    Order.objects.filter(pk=order.pk).update(payment_intent_id="pi_erasure_dispute")
    order.refresh_from_db()
    assert (
        deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_paid").json()["outcome"]
        == "paid"
    )
    return order_move(
        order,
        "in_production",
        "ready_to_pack",
        "packed",
        "shipped",
        carrier="ups",
        tracking_number="1Z999AA10123456784",
        shipped_at=timezone.now(),
    )


@pytest.mark.parametrize(
    ("status", "kind", "payment_status"),
    [
        ("warning_closed", "dispute_won", Order.PaymentStatus.SUCCEEDED),
        ("won", "dispute_won", Order.PaymentStatus.SUCCEEDED),
        ("lost", "dispute_lost", Order.PaymentStatus.REFUNDED),
    ],
)
def test_a_dispute_created_late_after_its_close_and_an_erasure_changes_nothing(
    api, status, kind, payment_status
):
    # given a shipped order whose dispute's creation was never delivered (the endpoint failed it; Stripe will
    # retry), and whose close was: the payment is settled, the lab's or (lost) the customer's again
    order = _shipped_paid_order(api)
    closed = deliver(api, "charge.dispute.closed", _dispute(order, status=status), event_id="evt_closed")
    assert closed.status_code == 200, closed.json()
    order.refresh_from_db()
    assert order.payment_status == payment_status
    # and its customer is erased (allowed: shipped, and the payment settled)
    api.force_authenticate(order.customer)
    erased = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")
    assert erased.status_code == 200, erased.json()
    api.force_authenticate(None)

    # when Stripe's retry of the dispute's creation comes in
    late = deliver(api, "charge.dispute.created", _dispute(order), event_id="evt_created_late")

    # then it is known as the closed dispute's: the payment is not disputed again, nor the order held
    assert (late.status_code, late.json()["outcome"]) == (200, "already_applied")
    assert StripeEvent.objects.get(event_id="evt_created_late").outcome == "already_applied"
    order.refresh_from_db()
    assert order.is_anonymized
    assert (order.status, order.payment_status) == ("shipped", payment_status)
    assert not OrderEvent.objects.filter(order=order, kind="disputed").exists()
    # and the kept note is Stripe's id and outcome only
    assert list(OrderEvent.objects.filter(order=order, kind=kind).values_list("note", flat=True)) == [
        f"dp_1 {status}"
    ]
