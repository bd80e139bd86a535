"""Disputes applied to the order they name: opened, the payment is `disputed` and the order held; closed, the
payment is settled (won: `succeeded`; lost: `refunded`) and a held order left to a person."""

from __future__ import annotations

from typing import Any

from lab.orders.models import Order, OrderEvent
from lab.orders.payment_refunds import refund_decide
from lab.orders.payments import UNPAID_PAYMENT_STATUSES
from lab.orders.states import OrderStatus
from lab.orders.stripe_payment_events import (
    DISPUTED_WHY,
    hold_for_payment,
    paid_by_stripe,
    refund_issue_after_commit,
)


def dispute_created(*, order: Order, dispute: dict[str, Any]) -> str:
    """charge.dispute.created: the payment is `disputed` and the order held for a person; nothing changes
    when the payment is disputed already or this dispute's close came first."""
    if order.payment_status == Order.PaymentStatus.DISPUTED or _dispute_already_closed(
        order=order, dispute=dispute
    ):
        return "already_applied"
    order.payment_status = Order.PaymentStatus.DISPUTED
    order.save(update_fields=["payment_status", "updated_at"])
    OrderEvent.objects.create(order=order, kind=DISPUTE_OPENED, actor_kind="stripe")
    return hold_for_payment(order=order, why=DISPUTED_WHY) or "disputed"


# The dispute's final status (Stripe's Dispute object): the lab keeps the money (won; warning_closed, an
# inquiry that never became a chargeback) or the customer's bank gave it back to them (lost). Any other
# (prevented: Stripe refunded the charge to stop a dispute, which its own refund event records) is noted.
DISPUTE_KEPT = frozenset({"won", "warning_closed"})
DISPUTE_LOST = "lost"


DISPUTE_CLOSED_KINDS = ("dispute_won", "dispute_lost", "dispute_closed")
# The order event a dispute's opening records: a hold of an order once disputed is a supervisor's to release
# (lab/production/holds.py), also after the dispute closed won.
DISPUTE_OPENED = "disputed"


def _dispute_already_closed(*, order: Order, dispute: dict[str, Any]) -> bool:
    """Whether this dispute's close was applied already: Stripe does not keep its events in order, and a
    `charge.dispute.created` that comes after its own `charge.dispute.closed` changes nothing. Before, it
    marked the settled payment `disputed` again and held the order, for good (no close was to come), which
    also kept the customer's data from being erased. Matched by the dispute id `dispute_closed` notes."""
    dispute_id = dispute.get("id")
    if not isinstance(dispute_id, str) or not dispute_id:
        return False
    return OrderEvent.objects.filter(
        order=order, kind__in=DISPUTE_CLOSED_KINDS, note__startswith=f"{dispute_id} "
    ).exists()


DISPUTE_LOST_WHY = "The dispute was lost: the customer's bank returned the money"
DISPUTE_WON_UNPAID_WHY = "The payment was disputed, and the dispute won, before the payment's own event came"


def dispute_closed(*, order: Order, dispute: dict[str, Any]) -> str:
    """charge.dispute.closed: the payment is no longer `disputed`. Won, it is the lab's again (`succeeded`);
    lost, the bank returned the money to the customer, and the order is `refunded` as if the lab had refunded
    it (an OrderEvent `dispute_lost` says who did). Recorded on the order's timeline in every case, once per
    dispute. An order held for the dispute stays held: whoever releases or cancels it reads the outcome first
    in its hold message. A cancelled order whose dispute the lab won owes the customer their money: its refund
    is decided, as for a refund at Stripe that failed (`refund_changed`)."""
    status = str(dispute["status"])
    if status == DISPUTE_LOST:
        kind = "dispute_lost"
    else:
        kind = "dispute_won" if status in DISPUTE_KEPT else "dispute_closed"
    note = f"{dispute.get('id') or '?'} {status}"[:100]
    if OrderEvent.objects.filter(order=order, kind=kind, note=note).exists():
        return "already_applied"  # the same dispute's close, sent again under another event id
    OrderEvent.objects.create(order=order, kind=kind, actor_kind="stripe", note=note)
    if status == DISPUTE_LOST:
        if (
            order.payment_status in UNPAID_PAYMENT_STATUSES
            or order.payment_status == Order.PaymentStatus.REFUNDED
        ):
            return "dispute_closed_noted"
        why = "The dispute was lost: the customer's bank returned the money to them."
        order.payment_status = Order.PaymentStatus.REFUNDED
    elif status in DISPUTE_KEPT:
        if order.payment_status != Order.PaymentStatus.DISPUTED:
            return "dispute_closed_noted"
        why = "The dispute was won: the payment is the lab's again."
        order.payment_status = Order.PaymentStatus.SUCCEEDED
    else:
        return "dispute_closed_noted"
    if status in DISPUTE_KEPT and order.status == OrderStatus.AWAITING_PAYMENT:
        # The dispute was opened and won before the payment's own event, which a `succeeded` payment answers
        # `already_applied`: the money is the lab's, so the order is paid, and held for a person. Before, it
        # stayed awaiting payment for good (the unpaid-order expiry skips a succeeded payment), which also
        # blocked the customer's erasure.
        return paid_by_stripe(
            order=order, note="payment succeeded, dispute won", hold_why=DISPUTE_WON_UNPAID_WHY
        )
    fields = ["payment_status", "updated_at"]
    if order.status == OrderStatus.ON_HOLD:
        order.hold_message = f"{why} {order.hold_message}"[:1000]
        fields.append("hold_message")
    order.save(update_fields=fields)
    if status == DISPUTE_LOST and order.status != OrderStatus.ON_HOLD:
        # The money went back to the customer while the order is still being made (its creation event late or
        # lost, so nothing held it): stop it for a person, as any money taken back (hold_for_payment).
        held = hold_for_payment(order=order, why=DISPUTE_LOST_WHY)
        if held is not None:
            return held
    if status in DISPUTE_KEPT and order.status == OrderStatus.CANCELLED and refund_decide(order=order):
        refund_issue_after_commit(order=order)
        return "refund_after_cancel"
    return kind
