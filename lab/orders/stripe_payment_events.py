"""A PaymentIntent's own events applied to its order (succeeded, failed), and what every handler of a
Stripe event does once the money moved: pay the order, hold it for a person, refund after the commit."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from lab.orders.models import Order, OrderEvent
from lab.orders.payment_refunds import PARTLY_REFUNDED, refund_decide, refund_issue_soon
from lab.orders.payments import UNPAID_PAYMENT_STATUSES
from lab.orders.states import PAYMENT_HOLDABLE, OrderStatus
from lab.orders.transitions import order_transition

DISPUTED_WHY = "The payment is disputed"
# Stripe took another amount (or currency) than the order's: the money goes back, and never pays the order.
AMOUNT_MISMATCH = "payment_amount_mismatch"
PARTLY_REFUNDED_WHY = "Part of the payment was refunded at Stripe"


def payment_succeeded(*, order: Order, data: dict[str, Any]) -> str:
    received = int(data.get("amount_received") or data.get("amount") or 0)
    # Stripe always says the currency; an event without one (a test's) is read as in the order's. Before,
    # only the number was compared: 1200 yen paid an order of 12.00 euros.
    currency = str(data.get("currency") or order.currency).lower()
    due = order.currency.lower()
    if (received, currency) != (order.total_minor, due):
        if currency == due:
            note = f"{received} received, {order.total_minor} due"
        else:
            note = f"{received} {currency} received, {order.total_minor} {due} due"
        OrderEvent.objects.create(order=order, kind=AMOUNT_MISMATCH, actor_kind="stripe", note=note)
        if order.payment_status in UNPAID_PAYMENT_STATUSES:
            # The money was captured, but not the order's amount: the lab cannot take it, so it goes back to
            # the customer (the order stays unpaid, and expires as such). Before, the event was used up here
            # and the money kept, with nothing on the order to say it was owed.
            order.payment_status = Order.PaymentStatus.SUCCEEDED
            refund_decide(order=order)
            refund_issue_after_commit(order=order)
        return "amount_mismatch"
    if order.payment_status == Order.PaymentStatus.DISPUTED and order.status == OrderStatus.AWAITING_PAYMENT:
        # The dispute came first (Stripe does not keep its events in order): the money was captured, and is
        # disputed. Before, this answered `already_applied` and the order stayed unpaid until the retention
        # sweep cancelled it, refunding nothing. Now it is paid, disputed, and held for a supervisor.
        return paid_by_stripe(order=order, note="payment succeeded, disputed", hold_why=DISPUTED_WHY)
    if order.payment_status not in UNPAID_PAYMENT_STATUSES:
        return "already_applied"
    order.payment_status = Order.PaymentStatus.SUCCEEDED
    if order.status == OrderStatus.AWAITING_PAYMENT:
        # `paid` is the durable record that the order must be released: the release message sent after
        # this commit is a nudge, and the reconciler releases any paid order whose message was lost.
        # A partial refund that came first found an unpaid order, which it could not hold, and the order
        # printed as if nothing had been refunded. It is held now, before any release.
        partly_refunded = OrderEvent.objects.filter(order=order, kind=PARTLY_REFUNDED).exists()
        return paid_by_stripe(
            order=order, note="payment succeeded", hold_why=PARTLY_REFUNDED_WHY if partly_refunded else None
        )
    order.save(update_fields=["payment_status", "updated_at"])
    if order.status == OrderStatus.CANCELLED:
        # Paid after the customer cancelled: decide the refund now, ask Stripe after the commit.
        refund_decide(order=order)
        refund_issue_after_commit(order=order)
        return "refund_after_cancel"
    return "recorded"


def payment_failed(*, order: Order, data: dict[str, Any]) -> str:
    """payment_intent.payment_failed: an attempt to pay failed while the payment is still to be made
    (`requires_payment` or `failed`); any later payment status makes the event stale."""
    if order.payment_status not in (Order.PaymentStatus.REQUIRES_PAYMENT, Order.PaymentStatus.FAILED):
        return "stale"
    order.payment_status = Order.PaymentStatus.FAILED
    order.save(update_fields=["payment_status", "updated_at"])
    error = data.get("last_payment_error") or {}
    OrderEvent.objects.create(
        order=order, kind="payment_failed", actor_kind="stripe", note=str(error.get("code", ""))[:100]
    )
    return "payment_failed"


def refund_issue_after_commit(*, order: Order) -> None:
    order_id = order.pk
    transaction.on_commit(lambda: refund_issue_soon(order_id=order_id))


def paid_by_stripe(*, order: Order, note: str, hold_why: str | None) -> str:
    """Stripe captured the money of an order awaiting payment (its `payment_status` set by the caller): the
    order is `paid`, the durable record that it must be released, and held for a person when the payment
    needs one (`hold_why`: disputed, partly refunded, a refund that failed, a dispute won first).

    Never a payment Stripe took of another amount or currency than the order's (an AMOUNT_MISMATCH event,
    which `payment_succeeded` or `_payment_captured` wrote): the order stays unpaid, and the money, once it
    is the lab's (`succeeded`), goes back to the customer. Before, a won dispute or a captured payment after a
    mismatched one paid the order, and a technician could release it to print."""
    if OrderEvent.objects.filter(order=order, kind=AMOUNT_MISMATCH).exists():
        if order.payment_status == Order.PaymentStatus.SUCCEEDED:
            refund_decide(order=order)
            refund_issue_after_commit(order=order)
        else:
            order.save(update_fields=["payment_status", "updated_at"])
        return "amount_mismatch"
    order_transition(
        order=order,
        to_status=OrderStatus.PAID,
        actor_kind="stripe",
        note=note,
        extra_fields=("payment_status",),
    )
    if hold_why is None:
        return "paid"
    return hold_for_payment(order=order, why=hold_why) or "paid"


def hold_for_payment(*, order: Order, why: str) -> str | None:
    """Money taken back while the order is being made: stop it for a person, never print on silently nor
    throw printed copies away. Jobs already at a printer finish; the unsent ones wait (a held order's jobs
    are not submitted) until a supervisor cancels the order or releases the hold. `hold_message` is the
    floor's reason; the customer reads only the question a person asked them (Order.customer_question)."""
    if order.status == OrderStatus.ON_HOLD:
        # Already held (a clarification): whoever releases the hold must see that the money went back.
        order.hold_message = f"{why}: a supervisor decides. {order.hold_message}"[:1000]
        order.save(update_fields=["hold_message", "updated_at"])
        OrderEvent.objects.create(
            order=order, kind="payment_taken_back_while_held", actor_kind="stripe", note=why
        )
        return "held_for_payment"
    if order.status not in PAYMENT_HOLDABLE:
        return None
    order.hold_message = f"{why}: a supervisor decides whether to cancel the order or go on."[:1000]
    order_transition(
        order=order,
        to_status=OrderStatus.ON_HOLD,
        actor_kind="stripe",
        note=why,
        extra_fields=("hold_message",),
    )
    return "held_for_payment"
