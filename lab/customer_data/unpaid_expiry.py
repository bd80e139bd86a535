"""The expiry of unpaid orders: a stale unpaid order cancelled before its photos go, unless Stripe says its
money may still come (read once a sweep, and not asked again once silent)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

from lab.customer_data.retention_rules import stale_unpaid_orders
from lab.lib.errors import DomainError, UpstreamError
from lab.orders.cancellation import order_cancel
from lab.orders.models import Order
from lab.orders.payment_client import ONE_TRY, stripe_client
from lab.orders.payments import UNPAID_PAYMENT_STATUSES
from lab.orders.stripe_events import payment_found_at_stripe_apply

logger = logging.getLogger(__name__)

# A PaymentIntent in one of these may still be paid (its money on its way, or authorised and not captured):
# its order is left to a later sweep.
INTENT_PAYING = frozenset({"processing", "requires_capture"})


def _intent_read(order: Order) -> dict[str, Any] | None:
    """The order's PaymentIntent as Stripe has it now (the fields `payment_found_at_stripe_apply` reads, and
    its status), read once (ONE_TRY) outside any transaction; `{}` when Stripe has no such intent, None when
    Stripe did not answer (logged by ids and error type only)."""
    try:
        intent = stripe_client().v1.payment_intents.retrieve(order.payment_intent_id, options=ONE_TRY)
    except stripe.InvalidRequestError as error:
        if error.http_status == 404:
            return {}  # no such intent: no money can have moved through it
        logger.warning("unpaid order not read at stripe order=%s error=%s", order.ref, type(error).__name__)
        return None
    except (stripe.StripeError, UpstreamError) as error:
        logger.warning("unpaid order not read at stripe order=%s error=%s", order.ref, type(error).__name__)
        return None
    return {
        "id": intent.id,
        "status": str(intent.status),
        "amount": getattr(intent, "amount", None),
        # Stripe always answers it; localstripe (the tests' Stripe) does not, and `amount` is read then.
        "amount_received": getattr(intent, "amount_received", None),
        "currency": getattr(intent, "currency", None),
    }


@dataclass
class StripeReads:
    """Within one expiry run (a sweep): once Stripe did not answer, it is not asked again. Before, each stale
    unpaid order was read in turn, ONE_TRY of up to STRIPE_TIMEOUT_SECONDS each: a stalled Stripe and 84
    orders ran the sweep into its task's time limit before any purge, every hour."""

    is_silent: bool = False
    orders_left: int = 0  # orders left to a later sweep unread, Stripe being silent


def _expiry_waits_for_stripe(order: Order, *, reads: StripeReads) -> bool:
    """Whether the unpaid order is left to a later sweep: Stripe says its money may still come, or does not
    answer. One Stripe says was paid is paid now, and `order_cancel` then refuses it under the order's lock.

    The lab's own record is not enough: a customer who paid shortly before the deadline, whose
    payment_intent.succeeded came late (the endpoint down, Stripe's retries backing off), had the order
    cancelled, its photos purged and the payment refunded. A succeeded intent is applied now, under the
    order's lock, as its event would be (amount and currency compared: another amount is refunded, and the
    order still expires); one processing or awaiting capture, or Stripe not answering, leaves the order to
    the next sweep. The erasure guards its unpaid orders the same way (erasure_payments.py
    `_paid_at_stripe`)."""
    if not order.payment_intent_id or order.payment_status not in UNPAID_PAYMENT_STATUSES:
        return False
    if reads.is_silent:
        reads.orders_left += 1
        return True
    intent = _intent_read(order)
    if intent is None:
        reads.is_silent = True
        logger.warning(
            "stripe silent: unpaid orders with an intent left to the next sweep order=%s", order.ref
        )
        return True
    status = intent.get("status")
    if status == "succeeded":
        payment_found_at_stripe_apply(order_id=order.pk, intent=intent)
        # Paid now, or its other amount refunded: `order_cancel` decides which under the lock.
        return False
    if status in INTENT_PAYING:
        logger.info("unpaid order not expired order=%s intent=%s", order.ref, status)
        return True
    return False


def order_expired(order_id: int, *, reads: StripeReads) -> bool:
    """Cancel the order if it is still unpaid, at Stripe too (`_expiry_waits_for_stripe`), decided under its
    lock (`only_unpaid`): the sweep read its id before, and the order may have been paid since."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None or _expiry_waits_for_stripe(order, reads=reads):
        return False
    try:
        order_cancel(order=order, actor=None, actor_kind="system", only_unpaid=True)
    except DomainError as error:  # paid or cancelled meanwhile
        logger.info("unpaid order not expired order=%s code=%s", order.ref, error.code)
        return False
    return True


def orders_expire_unpaid(*, before: datetime, limit: int) -> int:
    """Cancel orders left unpaid since before `before` (at most `limit`, oldest first): their photos are about
    to go, and a cancelled PaymentIntent cannot be paid later for prints we could no longer make."""
    stale = stale_unpaid_orders(before).order_by("created_at").values_list("pk", flat=True)[:limit]
    reads = StripeReads()
    return sum(order_expired(order_id, reads=reads) for order_id in list(stale))
