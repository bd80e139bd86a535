"""Stripe PaymentIntents: one for each awaiting order's server-computed amount, the cancel of one nobody paid,
and beat's payments sweep (refunds are payment_refunds.py; the signed webhook events, stripe_events.py).

We store Stripe ids and statuses only; card data goes from the customer's browser to Stripe, never here.
"""

from __future__ import annotations

import logging

import stripe
from django.db import transaction
from django.utils import timezone

from lab.lib.errors import DomainError, UpstreamError
from lab.lib.tasks import enqueue
from lab.orders.errors import OrderError
from lab.orders.models import Order, OrderEvent
from lab.orders.payment_client import stripe_client
from lab.orders.payment_refunds import refund_decide, refund_issue_soon, refunds_reconcile
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked

logger = logging.getLogger(__name__)


class ChargeTooSmall(DomainError):
    """Stripe refused the order's PaymentIntent as under its minimum charge: no retry will take it."""


# Stripe's error code for an amount under the minimum charge, in the charge's currency or, converted, in the
# account's settlement currency (https://docs.stripe.com/error-codes#amount-too-small).
AMOUNT_TOO_SMALL = "amount_too_small"


def payment_intent_ensure(*, order: Order) -> Order:
    """Give an awaiting order a PaymentIntent once; Stripe's idempotency key makes a retry reuse it.

    ChargeTooSmall (400 `order_total_too_small`) when Stripe refuses the amount as too small: the lab's table
    (lab/orders/pricing.py) cannot know a settlement currency's minimum after conversion. Before, that refusal
    answered 502 "retry", which failed the same way at every retry. The caller withdraws the order."""
    if order.payment_intent_id or order.status != OrderStatus.AWAITING_PAYMENT:
        return order
    try:
        intent = stripe_client().v1.payment_intents.create(
            params={
                "amount": order.total_minor,
                "currency": order.currency,
                "metadata": {"order_ref": order.ref},
                "payment_method_types": ["card"],  # type: ignore[typeddict-unknown-key]
            },
            options={"idempotency_key": f"order-{order.ref}-payment-intent"},
        )
    except stripe.InvalidRequestError as error:
        if error.code != AMOUNT_TOO_SMALL:
            raise _provider_unavailable(order=order, error=error) from error
        logger.info("payment intent refused as too small order=%s", order.ref)
        raise ChargeTooSmall(
            OrderError.ORDER_TOTAL_TOO_SMALL,
            "The order total is under the smallest amount the card payment can take; add copies or choose "
            "another shipping method.",
            total_minor=order.total_minor,
            min_total_minor=None,  # Stripe's message says it in words, with its exchange rate of the moment
        ) from error
    except stripe.StripeError as error:
        raise _provider_unavailable(order=order, error=error) from error
    stored = {
        "payment_intent_id": intent.id,
        "payment_client_secret": intent.client_secret or "",
        "payment_status": Order.PaymentStatus.REQUIRES_PAYMENT,
    }
    # Stored only on an order still awaiting payment: a cancel (or an erasure) that committed while Stripe
    # was asked must not get a payable intent back on a cancelled order.
    if Order.objects.filter(pk=order.pk, payment_intent_id="", status=OrderStatus.AWAITING_PAYMENT).update(
        **stored
    ):
        for field, value in stored.items():
            setattr(order, field, value)
        return order
    order.refresh_from_db()  # a concurrent retry with the same key stored it first: show what it stored
    if order.payment_intent_id == intent.id:
        return order
    # The order left `awaiting_payment` meanwhile: nobody got this intent's secret, and it is cancelled at
    # Stripe too, so it never shows as payable on the lab's account (owed when Stripe does not settle it now).
    if _intent_cancel(intent_id=intent.id, order_ref=order.ref) is None:
        _intent_cancel_owe(order=order, intent_id=intent.id)
    return order


def _intent_cancel_owe(*, order: Order, intent_id: str) -> None:
    """Record the cancel of an intent Stripe made for an order that left `awaiting_payment` meanwhile, when
    the cancel right after could not be settled: the order keeps the intent's id (never its secret, which
    only an awaiting order shows) with `payment_intent_cancel_due`, and `payment_intent_cancel` (a task now,
    the payments sweep on beat after) cancels it. Before, the order's cancel had found no intent to owe a
    cancel for and nothing recorded this one: it stayed open at Stripe for good."""
    owed = (
        Order.objects.filter(pk=order.pk, payment_intent_id="")
        .exclude(status=OrderStatus.AWAITING_PAYMENT)
        .update(payment_intent_id=intent_id, payment_intent_cancel_due=True, updated_at=timezone.now())
    )
    order.refresh_from_db()
    if not owed:
        return  # another request with the same key recorded its own (the same intent: Stripe's key)
    logger.warning("payment intent cancel owed order=%s", order.ref)
    order_id = order.pk
    transaction.on_commit(lambda: enqueue("payments.payment_intent_cancel", order_id=order_id))


def _provider_unavailable(*, order: Order, error: stripe.StripeError) -> UpstreamError:
    logger.warning("payment intent create failed order=%s error=%s", order.ref, type(error).__name__)
    return UpstreamError(
        OrderError.PAYMENT_PROVIDER_UNAVAILABLE,
        "The order is saved but payment could not be prepared; retry with the same Idempotency-Key.",
        order=order.ref,
    )


def _intent_cancel(*, intent_id: str, order_ref: str) -> str | None:
    """Cancel a PaymentIntent at Stripe: what settled it ("cancelled", or the state that made Stripe refuse:
    "canceled", "succeeded", "missing"), or None while that is unknown (no answer, an error that may pass,
    an intent still `processing`) and the cancel is still owed.

    A refusal is not taken at its word: Stripe answers the same 400 for an intent that succeeded, one already
    cancelled and one that cannot be cancelled yet, so the intent is read back. Before, every Stripe error was
    swallowed here, a timeout too, and the one task message was the only try: its intent stayed payable."""
    client = stripe_client()
    try:
        try:
            client.v1.payment_intents.cancel(intent_id)
            return "cancelled"
        except stripe.InvalidRequestError as refusal:
            if refusal.http_status == 404:
                return "missing"
            status = str(client.v1.payment_intents.retrieve(intent_id).status)
    except stripe.StripeError as error:
        logger.warning("payment intent cancel unsettled order=%s error=%s", order_ref, type(error).__name__)
        return None
    if status in ("canceled", "succeeded"):
        # Succeeded: payment_intent_cancel records the payment and refunds it (the event may never come).
        return status
    logger.info("payment intent not cancellable yet order=%s status=%s", order_ref, status)
    return None


# A payment status under which no money has moved: a cancel of such an order owes a cancel of its intent.
UNPAID_PAYMENT_STATUSES = frozenset(
    {Order.PaymentStatus.NONE, Order.PaymentStatus.REQUIRES_PAYMENT, Order.PaymentStatus.FAILED}
)
# Owed intent cancels one sweep asks Stripe about, within the task's time limit (the rest: next run).
INTENT_CANCEL_BATCH = 100


def payment_cancel_decide(*, order: Order) -> bool:
    """The payment side of a cancel, under the order's lock in the cancel's transaction; True when a refund is
    due (the caller issues it after the commit with `refund_issue_soon`).

    A captured payment is to be refunded (`refund_decide`). An intent nobody has paid is owed a cancel at
    Stripe, recorded on the order (`payment_intent_cancel_due`) in the same commit: the task sent after the
    commit is a nudge, and `payments_reconcile` on beat cancels it when that message is lost or Stripe did
    not answer. Both the customer's and the supervisor's cancel come here; before, the supervisor's never
    cancelled the intent, and the customer's rested on one task message."""
    if refund_decide(order=order):
        return True
    if order.payment_intent_id and order.payment_status in UNPAID_PAYMENT_STATUSES:
        order.payment_intent_cancel_due = True
        order.save(update_fields=["payment_intent_cancel_due", "updated_at"])
        order_id = order.pk
        transaction.on_commit(lambda: enqueue("payments.payment_intent_cancel", order_id=order_id))
    return False


def _intent_cancel_owed_unflagged(order: Order) -> bool:
    """An order not flagged `payment_intent_cancel_due` that is owed its intent's cancel all the same:
    cancelled unpaid, with an intent, and no settled cancel on its timeline (what orders/0010 marked owed when
    it ran; a process of the version before it may cancel such orders after that, without the flag)."""
    return (
        order.status == OrderStatus.CANCELLED
        and order.payment_status in UNPAID_PAYMENT_STATUSES
        and bool(order.payment_intent_id)
        and not OrderEvent.objects.filter(order=order, kind="payment_intent_cancelled").exists()
    )


def payment_intent_cancel(*, order_id: int) -> bool:
    """Cancel the order's intent at Stripe if a cancel is owed (`payment_cancel_decide`); True once none is.

    UpstreamError while Stripe has not settled it: the task retries with backoff, and
    `payment_intent_cancels_reconcile` on beat asks again, so a cancelled order's intent never stays payable
    because one message or one call was lost.

    Stripe refusing because the intent succeeded means the customer paid a cancelled order, whether or not
    its payment_intent.succeeded ever arrives (an endpoint down past Stripe's retries, a changed secret): the
    payment is recorded and its refund decided here, under the order's lock, and made after the commit.
    Before, the owed cancel just ended, counting on that event: without it the money was kept, unrefunded.

    A cancel the previous version made (before orders/0010) sent only this task, never the flag: such an
    order is owed one too (`_intent_cancel_owed_unflagged`), flagged here under its lock and committed before
    Stripe is asked, so the sweep retries it like any other. Before, its task found no flag and ended, and the
    sweep never saw it: its intent stayed payable for good."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        return True
    if not order.payment_intent_cancel_due:
        with transaction.atomic():
            order = order_locked(order_id=order_id)
            if not order.payment_intent_cancel_due:
                if not _intent_cancel_owed_unflagged(order):
                    return True
                order.payment_intent_cancel_due = True
                order.save(update_fields=["payment_intent_cancel_due", "updated_at"])
    settled = _intent_cancel(intent_id=order.payment_intent_id, order_ref=order.ref)
    if settled is None:
        raise UpstreamError(
            OrderError.PAYMENT_PROVIDER_UNAVAILABLE, "The payment's cancel is owed and will be retried."
        )
    with transaction.atomic():
        order = order_locked(order_id=order_id)
        if order.payment_intent_cancel_due:
            order.payment_intent_cancel_due = False
            order.save(update_fields=["payment_intent_cancel_due", "updated_at"])
            OrderEvent.objects.create(
                order=order, kind="payment_intent_cancelled", actor_kind="system", note=settled
            )
        if settled == "succeeded" and order.payment_status in UNPAID_PAYMENT_STATUSES:
            order.payment_status = Order.PaymentStatus.SUCCEEDED
            order.save(update_fields=["payment_status", "updated_at"])
            OrderEvent.objects.create(
                order=order,
                kind="payment_succeeded_at_stripe",
                actor_kind="stripe",
                note="found by the intent's cancel",
            )
            if order.status == OrderStatus.CANCELLED and refund_decide(order=order):
                transaction.on_commit(lambda: refund_issue_soon(order_id=order_id))
    logger.info("payment intent cancel settled order=%s outcome=%s", order.ref, settled)
    return True


def payment_intent_cancels_reconcile() -> int:
    """Every owed intent cancel (a cancelled order's intent not yet settled at Stripe) is tried again."""
    done = 0
    owed = Order.objects.filter(payment_intent_cancel_due=True).order_by("pk").values_list("pk", flat=True)
    for order_id in owed[:INTENT_CANCEL_BATCH]:
        try:
            done += int(payment_intent_cancel(order_id=order_id))
        except UpstreamError:
            continue
    return done


def payments_reconcile() -> dict[str, int]:
    """Beat's payments sweep (task `payments.refunds_reconcile`): owed intent cancels first (a batch of at
    most INTENT_CANCEL_BATCH), then decided refunds (REFUND_BATCH), each within the task's time limit. Before,
    the refunds came first, unbatched, and with enough of them the owed cancels were never reached."""
    intents_cancelled = payment_intent_cancels_reconcile()
    return {"intents_cancelled": intents_cancelled, "refunded": refunds_reconcile()}
