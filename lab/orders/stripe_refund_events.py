"""Refund events applied to the order they name: ours (a cancel's decided refund, tagged with the order) and
ones made in Stripe's dashboard, judged by what Stripe's refunds say now (stripe_refund_reads.py)."""

from __future__ import annotations

from typing import Any

from lab.orders.models import Order, OrderEvent
from lab.orders.payment_refunds import (
    PARTLY_REFUNDED,
    REFUND_TAG,
    REFUND_UNDONE,
    RefundsAtStripe,
    refund_decide,
    refund_tag,
)
from lab.orders.states import OrderStatus
from lab.orders.stripe_payment_events import (
    AMOUNT_MISMATCH,
    PARTLY_REFUNDED_WHY,
    hold_for_payment,
    paid_by_stripe,
    refund_issue_after_commit,
)
from lab.orders.stripe_refund_reads import RefundsReader

REFUNDED_WHY = "The payment was refunded at Stripe"


def charge_refunded(*, order: Order, data: dict[str, Any], reads: RefundsReader) -> str:
    """charge.refunded: ours (a cancel's decided refund) or one made in Stripe's dashboard.

    One not ours is a nudge: the payment's status is what Stripe's refunds say now (`refunds_at_stripe`),
    not what the event says, which may be older than another (a refund that failed since, its refund.failed
    delivered first). Before, a late charge.refunded of a refund that had failed made the payment `refunded`,
    and the supervisor's cancel that followed refunded nothing: the lab kept the money. The order is held as
    before (a person moved money at Stripe: a supervisor decides); the event's word stands only while Stripe
    cannot be read."""
    if order.payment_status == Order.PaymentStatus.REFUNDED:
        return "already_applied"
    ours = order.payment_status == Order.PaymentStatus.REFUND_PENDING
    if data.get("refunded") is False:
        # Stripe sends charge.refunded for a partial refund too (`refunded` false): the rest of the money is
        # still the lab's, so the payment stays captured and a later cancel refunds the rest (before, the
        # order was called refunded, and a cancel refunded nothing more). A person decides, as for a refund.
        # On an order still unpaid (this event before payment_intent.succeeded) the event is what the
        # success reads to hold the order.
        note = f"{data.get('amount_refunded', '?')} of {data.get('amount', '?')} refunded at Stripe"
        OrderEvent.objects.create(order=order, kind=PARTLY_REFUNDED, actor_kind="stripe", note=note[:100])
        if ours:
            return "partial_refund_noted"  # our refund, still to be made, refunds what is left
        if order.payment_status == Order.PaymentStatus.SUCCEEDED:
            at_stripe = reads(order)
            if at_stripe is not None and at_stripe.left <= 0:
                return _refunded_at_stripe(order=order)  # with the refunds before it, all went back
        return hold_for_payment(order=order, why=PARTLY_REFUNDED_WHY) or "partial_refund_noted"
    if ours:
        # Stripe sends it when a refund is made, before the refund has succeeded (and it may still fail):
        # the order is refunded when Stripe says our refund succeeded, which refund_issue asks.
        refund_issue_after_commit(order=order)
        return "refund_confirming"
    if order.payment_status != Order.PaymentStatus.DISPUTED:
        at_stripe = reads(order)
        if at_stripe is not None and at_stripe.left > 0:
            # Stripe has not taken it all back (the refund failed since, or took a part): the payment is
            # still captured, and a cancel refunds what is left. Held for a person all the same.
            partly = at_stripe.taken > 0
            if order.payment_status == Order.PaymentStatus.SUCCEEDED:
                _partly_refunded(order=order, at_stripe=at_stripe)
                why = PARTLY_REFUNDED_WHY if partly else REFUNDED_WHY
                return hold_for_payment(order=order, why=why) or "payment_still_captured"
            # Before the payment's own event: the money is captured, the order paid and held for a person.
            return _payment_captured(
                order=order,
                at_stripe=at_stripe,
                why=PARTLY_REFUNDED_WHY if partly else CAPTURED_AGAIN_WHY,
                note="payment captured, refund at stripe",
            )
    return _refunded_at_stripe(order=order)


def _refunded_at_stripe(*, order: Order) -> str:
    """All of the payment went back by refunds the lab did not make: `refunded`, and the order held."""
    order.payment_status = Order.PaymentStatus.REFUNDED
    order.save(update_fields=["payment_status", "updated_at"])
    OrderEvent.objects.create(order=order, kind="refunded", actor_kind="stripe")
    return hold_for_payment(order=order, why=REFUNDED_WHY) or "refunded"


def _partly_refunded(*, order: Order, at_stripe: RefundsAtStripe) -> None:
    """Part of a captured payment went back at Stripe: on the timeline, which a late payment event reads."""
    if at_stripe.taken > 0:
        note = f"{at_stripe.taken} of {at_stripe.captured} refunded at Stripe"
        OrderEvent.objects.create(order=order, kind=PARTLY_REFUNDED, actor_kind="stripe", note=note)


CAPTURED_AGAIN_WHY = "A refund made at Stripe failed"


def _payment_captured(*, order: Order, at_stripe: RefundsAtStripe | None, why: str, note: str) -> str:
    """Stripe has the money (all of it, or what refunds left) of a payment the order calls unpaid or refunded:
    it is `succeeded`. An order still awaiting payment is paid and held for a person (the payment's own event,
    when it comes, answers `already_applied`); a held order's message says the money is back; a cancelled
    order's refund is decided (the money is the customer's)."""
    if at_stripe is not None:
        _partly_refunded(order=order, at_stripe=at_stripe)
        if at_stripe.captured != order.total_minor and order.status == OrderStatus.AWAITING_PAYMENT:
            # Before, an order paid this way was not compared with what Stripe captured: a payment of
            # another amount paid it (`paid_by_stripe` refuses it now, and refunds it).
            short = f"{at_stripe.captured} captured, {order.total_minor} due"
            OrderEvent.objects.create(order=order, kind=AMOUNT_MISMATCH, actor_kind="stripe", note=short)
    order.payment_status = Order.PaymentStatus.SUCCEEDED
    if order.status == OrderStatus.AWAITING_PAYMENT:
        return paid_by_stripe(order=order, note=note, hold_why=why)
    fields = ["payment_status", "updated_at"]
    if order.status == OrderStatus.ON_HOLD:
        again = f"{why}: the payment is captured again."
        order.hold_message = f"{again} {order.hold_message}"[:1000]
        fields.append("hold_message")
    order.save(update_fields=fields)
    if order.status == OrderStatus.CANCELLED and refund_decide(order=order):
        # The money came back to a cancelled order: it is the customer's.
        refund_issue_after_commit(order=order)
        return "refund_after_cancel"
    return "payment_captured_again"


def refund_changed(*, order: Order, refund: dict[str, Any], reads: RefundsReader) -> str:
    """A refund's status changed at Stripe (`refund.updated`, `refund.failed`, `charge.refund.updated`).

    Ours (tagged with the order) is judged by what Stripe says now, not by the event, which may be older than
    another: refund_issue reads it back, marks the order refunded once it succeeded and makes it again when
    it failed. One that failed after the order was called refunded puts the order back to `refund_pending`.
    One made in Stripe's dashboard is a nudge: the payment's status is what Stripe's refunds say now
    (`refunds_at_stripe`), not what this event says. Before, a failed dashboard refund's late event made a
    payment `succeeded` again that a second dashboard refund had refunded in full, and the held order could
    be released and printed. When Stripe gives the lab its money back, the payment is `succeeded` again, and
    the timeline says so to whoever decides the order (a held order stays held); when Stripe says all of it
    went back, it is `refunded` and the order held. The event's word stands only while Stripe cannot be
    read."""
    status = str(refund["status"])
    metadata = refund.get("metadata") or {}
    note = f"{refund.get('id', '?')} {status} {refund.get('failure_reason') or ''}".strip()[:100]
    if metadata.get(REFUND_TAG) == refund_tag(order):
        if order.payment_status not in (Order.PaymentStatus.REFUND_PENDING, Order.PaymentStatus.REFUNDED):
            return "stale"
        if status not in REFUND_UNDONE:
            if order.payment_status == Order.PaymentStatus.REFUNDED:
                return "already_applied"
            refund_issue_after_commit(order=order)
            return "refund_confirming"
        OrderEvent.objects.create(order=order, kind="refund_failed", actor_kind="stripe", note=note)
        if order.payment_status == Order.PaymentStatus.REFUNDED:
            order.payment_status = Order.PaymentStatus.REFUND_PENDING
            order.save(update_fields=["payment_status", "updated_at"])
        refund_issue_after_commit(order=order)
        return "refund_reissued"
    undone = status in REFUND_UNDONE
    if undone:
        OrderEvent.objects.create(order=order, kind="refund_failed_at_stripe", actor_kind="stripe", note=note)
    captured = order.payment_status in (Order.PaymentStatus.SUCCEEDED, Order.PaymentStatus.REFUNDED)
    at_stripe = reads(order) if captured else None
    if at_stripe is not None:
        unchanged = "refund_failure_noted" if undone else "noted"
        if at_stripe.left <= 0:
            if order.payment_status == Order.PaymentStatus.REFUNDED:
                return unchanged  # another refund took it all back
            return _refunded_at_stripe(order=order)  # its charge.refunded late or lost
        if order.payment_status == Order.PaymentStatus.SUCCEEDED:
            return unchanged
        return _payment_captured(
            order=order, at_stripe=at_stripe, why=CAPTURED_AGAIN_WHY, note="payment captured again"
        )
    if not undone:
        return "noted"
    if order.payment_status == Order.PaymentStatus.REFUND_PENDING:
        # The lab's refund is decided, and was made (or waits) for what this one left: its amount is owed
        # again, and refund_issue refunds the shortfall. Before, this was only noted: the customer was short.
        refund_issue_after_commit(order=order)
        return "refund_rechecking"
    if order.payment_status != Order.PaymentStatus.REFUNDED:
        return "refund_failure_noted"  # a partial refund's: the payment was still captured
    # Stripe not read: the event's word. The refund and its failure may have come before the payment's own
    # event, which a refunded payment answers `already_applied`: the order is paid, and held for a person.
    return _payment_captured(
        order=order, at_stripe=None, why=CAPTURED_AGAIN_WHY, note="payment captured again"
    )
