"""Stripe's signed webhook events: verified over the raw body, applied to the order they name exactly once.

Matched by our own PaymentIntent id only; replays and out-of-order events change nothing; money taken back
while an order is being made holds it for a person (lab/orders/payments.py and payment_refunds.py move the
money); a closed dispute settles the payment (won: `succeeded`; lost: `refunded`) and leaves a held order to a
person.

Here: verifying, recording and dispatching an event, and a payment the lab found at Stripe itself. What a
signed event must look like is in stripe_event_shape.py; the handlers by kind in stripe_payment_events.py,
stripe_refund_events.py (with stripe_refund_reads.py, Stripe's refunds read before the order's lock) and
stripe_dispute_events.py.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from lab.lib.clock import database_now
from lab.lib.errors import DomainError, UpstreamError
from lab.orders.errors import OrderError
from lab.orders.models import Order, StripeEvent
from lab.orders.stripe_dispute_events import dispute_closed, dispute_created
from lab.orders.stripe_event_shape import (
    DISPUTE_CLOSED,
    HANDLED_EVENTS,
    REFUND_EVENTS,
    event_problem,
    is_text,
    payment_intent_field,
)
from lab.orders.stripe_payment_events import payment_failed, payment_succeeded
from lab.orders.stripe_refund_events import charge_refunded, refund_changed
from lab.orders.stripe_refund_reads import ReadStale, RefundsReader, refunds_read_unlocked

logger = logging.getLogger(__name__)


def webhook_event_verify(*, payload: bytes, signature_header: str) -> object:
    """Check the signature over the raw body, then parse the JSON; its shape is checked by the handler.

    Parsed with `json`, not the SDK's event constructor, which fails with AttributeError on a signed body of
    the wrong shape (`[]`, no `data`) and so answered 500. The signature's age is judged on the database's
    clock (lab/lib/clock.py), not the SDK's `time.time()`: a web host whose clock ran more than the tolerance
    ahead refused every genuine event as stale (Stripe retries, but each payment waited for a healthy host),
    and one running behind took stale ones for fresh.
    """
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise UpstreamError(OrderError.PAYMENTS_NOT_CONFIGURED, "Webhooks are not configured.")
    # Stripe signs UTF-8; other bytes become U+FFFD, so such a body cannot match the signature sent with it.
    text = payload.decode("utf-8", errors="replace")
    refused = DomainError(OrderError.INVALID_SIGNATURE, "The webhook signature is missing, stale or wrong.")
    if not signature_header.isascii():
        # Stripe writes the header in ASCII; the SDK compares it with hmac.compare_digest, which raises
        # TypeError on non-ASCII text (a 500 before).
        raise refused
    try:
        # The signature alone (tolerance None); its age below.
        stripe.WebhookSignature.verify_header(text, signature_header, settings.STRIPE_WEBHOOK_SECRET)
    except (stripe.SignatureVerificationError, TypeError, ValueError) as error:
        raise refused from error
    signed_at = _signature_timestamp(signature_header)
    if signed_at < database_now().timestamp() - settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS:
        raise refused
    try:
        return json.loads(text)
    except ValueError as error:
        raise DomainError(OrderError.INVALID_PAYLOAD, "The webhook body is not a Stripe event.") from error


def _signature_timestamp(header: str) -> int:
    """The `t=` of a Stripe-Signature header the SDK has verified, read as the SDK reads it (the first)."""
    items = (part.split("=", 2) for part in header.split(","))
    return int(next(item[1] for item in items if item[0] == "t"))


def webhook_event_handle(*, event: Any) -> str:
    """Apply one verified event exactly once; replays and out-of-order events change nothing.

    A signed event whose fields are not what the handlers read is refused (400 `malformed_event`) and kept
    as a StripeEvent with outcome `malformed` (or, without a usable id, as a log line). Only a handled
    event's PaymentIntent id is stored: the object of another type may have a longer id (a Checkout Session's
    is 66 characters), which the column refused with a 500, so Stripe retried a genuine event for days.
    """
    data = _event_object(event)
    event_type = event["type"]
    intent_id = str(data.get(payment_intent_field(event_type)) or "") if event_type in HANDLED_EVENTS else ""
    try:
        try:
            outcome = _handle_once(event=event, data=data, intent_id=intent_id, last=False)
        except ReadStale:
            # The order, or the payment's other events, moved while Stripe was read: read again, once.
            outcome = _handle_once(event=event, data=data, intent_id=intent_id, last=True)
    except _SeenAlready:
        return "duplicate"
    logger.info("stripe event id=%s type=%s outcome=%s", event["id"], event_type, outcome)
    return outcome


class _SeenAlready(Exception):
    """The event's id is recorded already (a replay, or the same event delivered twice at once): only this
    is a `duplicate`. Before, any IntegrityError while applying an event was answered `duplicate` (200) and
    the event, rolled back with it, was never applied nor retried by Stripe; now such an error is a 500, and
    Stripe delivers the event again."""


def _handle_once(*, event: Any, data: dict[str, Any], intent_id: str, last: bool) -> str:
    """Read Stripe's refunds when the event may need them, outside any transaction and without the order's
    lock; then record and apply the event under the lock in one transaction."""
    event_type = event["type"]
    read = refunds_read_unlocked(event_id=event["id"], event_type=event_type, data=data, intent_id=intent_id)
    with transaction.atomic():
        try:
            with transaction.atomic():
                recorded = StripeEvent.objects.create(
                    event_id=event["id"], event_type=event_type, payment_intent_id=intent_id
                )
        except IntegrityError as error:
            raise _SeenAlready from error
        reads = RefundsReader(read=read, own_event=recorded.pk, last=last)
        outcome = _apply(event_type=event_type, data=data, intent_id=intent_id, reads=reads)
        StripeEvent.objects.filter(event_id=event["id"]).update(outcome=outcome)
    return outcome


def _event_object(event: Any) -> dict[str, Any]:
    """The event's `data.object`, or a recorded 400 when the signed event cannot be applied."""
    problem = event_problem(event)
    if problem is None:
        return dict(event["data"]["object"])
    event_id = event.get("id") if isinstance(event, dict) else None
    if isinstance(event_id, str) and is_text(event_id, 100):
        event_type = event.get("type")
        try:
            with transaction.atomic():
                StripeEvent.objects.create(
                    event_id=event_id,
                    event_type=event_type if is_text(event_type, 100) else "",
                    outcome="malformed",
                )
        except IntegrityError:
            pass  # a retry of the same event, or an id already seen: the first record stands
        logger.warning("stripe event malformed id=%s problem=%s", event_id, problem)
    else:
        logger.warning("stripe event malformed without a usable id problem=%s", problem)
    raise DomainError(
        OrderError.MALFORMED_EVENT,
        "The webhook event is signed but not a usable Stripe event.",
        problem=problem,
    )


def _apply(*, event_type: str, data: dict[str, Any], intent_id: str, reads: RefundsReader) -> str:
    if event_type not in HANDLED_EVENTS:
        return "ignored"
    # Matched by our own PaymentIntent id only, never by `metadata.order_ref`: whoever creates a PaymentIntent
    # on the account writes its metadata, and a PaymentIntent we did not create must never pay our order.
    order = (
        Order.objects.select_for_update().filter(payment_intent_id=intent_id).first() if intent_id else None
    )
    if order is None:
        return "unknown_payment_intent"
    if event_type == "payment_intent.succeeded":
        return payment_succeeded(order=order, data=data)
    if event_type == "payment_intent.payment_failed":
        return payment_failed(order=order, data=data)
    if event_type == "charge.dispute.created":
        return dispute_created(order=order, dispute=data)
    if event_type == DISPUTE_CLOSED:
        return dispute_closed(order=order, dispute=data)
    if event_type in REFUND_EVENTS:
        return refund_changed(order=order, refund=data, reads=reads)
    return charge_refunded(order=order, data=data, reads=reads)


def payment_found_at_stripe_apply(*, order_id: int, intent: dict[str, Any]) -> str:
    """A PaymentIntent the lab read at Stripe itself (the unpaid-order expiry, customer_data/unpaid_expiry.py)
    and found `succeeded` before its payment_intent.succeeded came: applied under the order's lock as that
    event is (`payment_succeeded`: amount and currency compared), so the event, when it comes, answers
    `already_applied`. `intent`: the PaymentIntent's fields (id, amount, amount_received, currency)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None or not order.payment_intent_id or order.payment_intent_id != intent.get("id"):
            return "unknown_payment_intent"
        outcome = payment_succeeded(order=order, data=intent)
    logger.info("payment found at stripe order=%s outcome=%s", order.ref, outcome)
    return outcome
