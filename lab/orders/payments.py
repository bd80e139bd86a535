"""Stripe: PaymentIntents for server-computed amounts, refunds, and signed webhook events.

We store Stripe ids and statuses only; card data goes from the customer's browser to Stripe, never here.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from lab.lib.errors import DomainError, UpstreamError
from lab.orders.models import Order, OrderEvent, StripeEvent
from lab.orders.states import OrderStatus

logger = logging.getLogger(__name__)


def stripe_client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise UpstreamError("payments_not_configured", "Payments are not configured on this lab.", status=503)
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses=base, max_network_retries=2)  # type: ignore[arg-type]


def payment_intent_ensure(*, order: Order) -> Order:
    """Give an awaiting order a PaymentIntent once; Stripe's idempotency key makes a retry reuse it."""
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
    except stripe.StripeError as error:
        logger.warning("payment intent create failed order=%s error=%s", order.ref, type(error).__name__)
        raise UpstreamError(
            "payment_provider_unavailable",
            "The order is saved but payment could not be prepared; retry with the same Idempotency-Key.",
            order=order.ref,
        ) from error
    Order.objects.filter(pk=order.pk, payment_intent_id="").update(
        payment_intent_id=intent.id,
        payment_client_secret=intent.client_secret or "",
        payment_status=Order.PaymentStatus.REQUIRES_PAYMENT,
    )
    order.refresh_from_db()
    return order


def refund_create(*, order: Order) -> None:
    try:
        stripe_client().v1.refunds.create(
            params={"payment_intent": order.payment_intent_id},
            options={"idempotency_key": f"order-{order.ref}-refund"},
        )
    except stripe.StripeError as error:
        logger.warning("refund failed order=%s error=%s", order.ref, type(error).__name__)
        raise UpstreamError("refund_failed", "The refund could not be made; nothing was changed.") from error


def payment_intent_cancel(*, order_id: int) -> None:
    order = Order.objects.get(pk=order_id)
    if not order.payment_intent_id or order.payment_status == Order.PaymentStatus.SUCCEEDED:
        return
    try:
        stripe_client().v1.payment_intents.cancel(order.payment_intent_id)
    except stripe.StripeError as error:
        # Already cancelled or succeeded in the meantime: a later charge is refunded by the webhook path.
        logger.info("payment intent cancel skipped order=%s error=%s", order.ref, type(error).__name__)


# --- Webhooks ------------------------------------------------------------------------------------


def webhook_event_verify(*, payload: bytes, signature_header: str) -> stripe.Event:
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise UpstreamError("payments_not_configured", "Webhooks are not configured.", status=503)
    try:
        return stripe.Webhook.construct_event(
            payload,
            signature_header,
            settings.STRIPE_WEBHOOK_SECRET,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
    except stripe.SignatureVerificationError as error:
        raise DomainError("invalid_signature", "The webhook signature is missing, stale or wrong.") from error
    except ValueError as error:
        raise DomainError("invalid_payload", "The webhook body is not a Stripe event.") from error


HANDLED_EVENTS = {"payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded"}


def webhook_event_handle(*, event: stripe.Event) -> str:
    """Apply one verified event exactly once; replays and out-of-order events change nothing."""
    data: dict[str, Any] = event["data"]["object"].to_dict()
    intent_id = data.get("payment_intent") if event["type"] == "charge.refunded" else data.get("id")
    try:
        with transaction.atomic():
            StripeEvent.objects.create(
                event_id=event["id"], event_type=event["type"], payment_intent_id=str(intent_id or "")
            )
            outcome = _apply(event_type=event["type"], data=data, intent_id=str(intent_id or ""))
            StripeEvent.objects.filter(event_id=event["id"]).update(outcome=outcome)
    except IntegrityError:
        return "duplicate"
    logger.info("stripe event id=%s type=%s outcome=%s", event["id"], event["type"], outcome)
    return outcome


def _apply(*, event_type: str, data: dict[str, Any], intent_id: str) -> str:
    from lab.orders.services import order_transition

    if event_type not in HANDLED_EVENTS:
        return "ignored"
    order = Order.objects.select_for_update().filter(payment_intent_id=intent_id).first()
    if order is None:
        ref = (data.get("metadata") or {}).get("order_ref")
        order = Order.objects.select_for_update().filter(ref=ref).first() if ref else None
    if order is None:
        return "unknown_order"
    if event_type == "payment_intent.succeeded":
        if int(data.get("amount_received") or data.get("amount") or 0) != order.total_minor:
            OrderEvent.objects.create(order=order, kind="payment_amount_mismatch", actor_kind="stripe")
            return "amount_mismatch"
        if order.payment_status in (Order.PaymentStatus.SUCCEEDED, Order.PaymentStatus.REFUNDED):
            return "already_applied"
        order.payment_status = Order.PaymentStatus.SUCCEEDED
        if order.status == OrderStatus.AWAITING_PAYMENT:
            order_transition(
                order=order,
                to_status=OrderStatus.PAID,
                actor_kind="stripe",
                note="payment succeeded",
                extra_fields=("payment_status",),
            )
            return "paid"
        order.save(update_fields=["payment_status", "updated_at"])
        if order.status == OrderStatus.CANCELLED:
            # Paid after the customer cancelled: give the money back.
            transaction.on_commit(lambda: refund_create(order=order))
            return "refund_after_cancel"
        return "recorded"
    if event_type == "payment_intent.payment_failed":
        if order.payment_status not in (Order.PaymentStatus.REQUIRES_PAYMENT, Order.PaymentStatus.FAILED):
            return "stale"
        order.payment_status = Order.PaymentStatus.FAILED
        order.save(update_fields=["payment_status", "updated_at"])
        error = data.get("last_payment_error") or {}
        OrderEvent.objects.create(
            order=order, kind="payment_failed", actor_kind="stripe", note=str(error.get("code", ""))[:100]
        )
        return "payment_failed"
    # charge.refunded
    if order.payment_status == Order.PaymentStatus.REFUNDED:
        return "already_applied"
    order.payment_status = Order.PaymentStatus.REFUNDED
    order.save(update_fields=["payment_status", "updated_at"])
    OrderEvent.objects.create(order=order, kind="refunded", actor_kind="stripe")
    return "refunded"
