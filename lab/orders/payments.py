"""Stripe: PaymentIntents for server-computed amounts, refunds, and signed webhook events.

We store Stripe ids and statuses only; card data goes from the customer's browser to Stripe, never here.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from lab.lib.clock import database_now
from lab.lib.errors import DomainError, UpstreamError
from lab.lib.tasks import enqueue
from lab.orders.errors import OrderError
from lab.orders.models import Order, OrderEvent, StripeEvent
from lab.orders.states import PAYMENT_HOLDABLE, OrderStatus
from lab.orders.transitions import order_transition

logger = logging.getLogger(__name__)


def stripe_client() -> stripe.StripeClient:
    """This process's client for the configured account and API base.

    One per process, not one per call: its HTTP session (one per thread, in the SDK) keeps the connection to
    Stripe open, so a PaymentIntent pays the TCP and TLS handshake once per web process instead of once per
    order. A kept connection that Stripe closed is replaced by the pool, and a call that fails on it is
    retried by the SDK with the same idempotency key. The process id is part of the key: a forked worker
    never writes to a socket its parent opened.
    """
    if not settings.STRIPE_SECRET_KEY:
        raise UpstreamError(OrderError.PAYMENTS_NOT_CONFIGURED, "Payments are not configured on this lab.")
    return _stripe_client_for(
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS, os.getpid()
    )


@functools.lru_cache(maxsize=4)
def _stripe_client_for(
    secret_key: str, api_base: str, timeout_seconds: float, process_id: int
) -> stripe.StripeClient:
    base = {"api": api_base} if api_base else None
    return stripe.StripeClient(
        secret_key,
        base_addresses=base,  # type: ignore[arg-type]
        max_network_retries=2,
        # The SDK's default waits 80 s for an answer, three times: a Stripe that accepts and stalls would
        # outlast the web worker, which gunicorn then kills, and the customer gets no answer at all.
        http_client=stripe.RequestsClient(timeout=timeout_seconds),
    )


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
            OrderError.PAYMENT_PROVIDER_UNAVAILABLE,
            "The order is saved but payment could not be prepared; retry with the same Idempotency-Key.",
            order=order.ref,
        ) from error
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
    if order.payment_intent_id != intent.id:
        # The order left `awaiting_payment` meanwhile: nobody got this intent's secret, and it is cancelled at
        # Stripe too, so it never shows as payable on the lab's account.
        _intent_cancel(intent_id=intent.id, order_ref=order.ref)
    return order


def _intent_cancel(*, intent_id: str, order_ref: str) -> None:
    """Cancel a PaymentIntent at Stripe; one Stripe refuses to cancel (cancelled, succeeded) is logged."""
    try:
        stripe_client().v1.payment_intents.cancel(intent_id)
    except stripe.StripeError as error:
        logger.info("payment intent cancel skipped order=%s error=%s", order_ref, type(error).__name__)


# The metadata key that marks a refund at Stripe as the one this lab decided for an order.
REFUND_TAG = "lab_refund"
# The order event of a partial refund made at Stripe (the payment stays `succeeded`).
PARTLY_REFUNDED = "partly_refunded"


def refund_decide(*, order: Order) -> bool:
    """Under the order's lock: a captured payment becomes `refund_pending`; True when a refund is due.

    The decision commits with the state change that caused it (a cancel); the money moves afterwards in
    `refund_issue`, from the request, a retried task or the reconciler, so a failed call to Stripe never
    leaves a cancelled order with the money kept, nor a refund for an order that went on printing.
    """
    if order.payment_status not in (Order.PaymentStatus.SUCCEEDED, Order.PaymentStatus.REFUND_PENDING):
        return False
    order.payment_status = Order.PaymentStatus.REFUND_PENDING
    order.save(update_fields=["payment_status", "updated_at"])
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    return True


def refund_issue(*, order_id: int) -> bool:
    """Ask Stripe for the decided refund; True once the order is refunded. Safe to call any number of times:
    the status moves only from `refund_pending`, and a refund of ours that Stripe already made (the process
    died before it committed the answer) is found at Stripe, tagged with the order, and not made again. The
    idempotency key alone would not do: Stripe forgets it after 24 hours."""
    order = Order.objects.get(pk=order_id)
    if order.payment_status != Order.PaymentStatus.REFUND_PENDING:
        return order.payment_status == Order.PaymentStatus.REFUNDED
    tag = f"order-{order.ref}-refund"
    try:
        client = stripe_client()
        made = client.v1.refunds.list(params={"payment_intent": order.payment_intent_id, "limit": 100}).data
        if not any(_is_our_refund(refund, tag=tag) for refund in made):
            client.v1.refunds.create(
                params={"payment_intent": order.payment_intent_id, "metadata": {REFUND_TAG: tag}},
                options={"idempotency_key": tag},
            )
    except stripe.StripeError as error:
        logger.warning("refund failed, left pending order=%s error=%s", order.ref, type(error).__name__)
        raise UpstreamError(OrderError.REFUND_FAILED, "The refund is decided and will be retried.") from error
    with transaction.atomic():
        updated = Order.objects.filter(pk=order_id, payment_status=Order.PaymentStatus.REFUND_PENDING).update(
            payment_status=Order.PaymentStatus.REFUNDED, updated_at=timezone.now()
        )
        if updated:
            OrderEvent.objects.create(order=order, kind="refunded", actor_kind="system")
    logger.info("refund issued order=%s", order.ref)
    return True


def _is_our_refund(refund: stripe.Refund, *, tag: str) -> bool:
    metadata = refund.metadata.to_dict() if refund.metadata is not None else {}
    return metadata.get(REFUND_TAG) == tag and refund.status not in ("failed", "canceled")


def refund_issue_soon(*, order_id: int) -> None:
    """After the commit that decided it: try the refund now; when Stripe is not answering, a task retries
    it, and `refunds_reconcile` on beat finds any decided refund that is still pending."""
    try:
        refund_issue(order_id=order_id)
    except UpstreamError:
        enqueue("payments.refund_issue", order_id=order_id, countdown=30)


def refunds_reconcile() -> int:
    """Every refund decided but not yet confirmed by Stripe is asked for again (idempotently)."""
    done = 0
    for order_id in Order.objects.filter(payment_status=Order.PaymentStatus.REFUND_PENDING).values_list(
        "pk", flat=True
    ):
        try:
            done += int(refund_issue(order_id=order_id))
        except UpstreamError:
            continue
    return done


def payment_intent_cancel(*, order_id: int) -> None:
    order = Order.objects.get(pk=order_id)
    if not order.payment_intent_id or order.payment_status == Order.PaymentStatus.SUCCEEDED:
        return
    # Already cancelled or succeeded in the meantime: a later charge is refunded by the webhook path.
    _intent_cancel(intent_id=order.payment_intent_id, order_ref=order.ref)


# --- Webhooks ------------------------------------------------------------------------------------


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
    try:
        # The signature alone (tolerance None); its age below.
        stripe.WebhookSignature.verify_header(text, signature_header, settings.STRIPE_WEBHOOK_SECRET)
    except stripe.SignatureVerificationError as error:
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


HANDLED_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
}


def webhook_event_handle(*, event: Any) -> str:
    """Apply one verified event exactly once; replays and out-of-order events change nothing.

    A signed event whose fields are not what the handlers read is refused (400 `malformed_event`) and kept
    as a StripeEvent with outcome `malformed` (or, without a usable id, as a log line).
    """
    data = _event_object(event)
    intent_id = data.get("payment_intent") if str(event["type"]).startswith("charge.") else data.get("id")
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


def _is_text(value: object, max_length: int) -> bool:
    """A string the database takes as it is: 1..max_length printable characters (no NUL)."""
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isprintable()


def _event_problem(event: Any) -> str | None:
    """What makes a signed event unusable, in words without personal data; None when it is usable."""
    if not isinstance(event, dict):
        return "the event is not a JSON object"
    if not _is_text(event.get("id"), 100):
        return "id is missing or not a short string"
    event_type = event.get("type")
    if not _is_text(event_type, 100):
        return "type is missing or not a short string"
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return "data.object is missing or not an object"
    if event_type not in HANDLED_EVENTS:
        return None
    payload = data["object"]
    intent_field = "payment_intent" if event_type.startswith("charge.") else "id"
    intent_id = payload.get(intent_field)
    if not (_is_text(intent_id, 64) or (intent_id is None and intent_field == "payment_intent")):
        return f"data.object.{intent_field} is not a PaymentIntent id"
    for field in ("amount", "amount_received"):
        amount = payload.get(field)
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount < 0):
            return f"data.object.{field} is not a whole number"
    if payload.get("last_payment_error") is not None and not isinstance(payload["last_payment_error"], dict):
        return "data.object.last_payment_error is not an object"
    return None


def _event_object(event: Any) -> dict[str, Any]:
    """The event's `data.object`, or a recorded 400 when the signed event cannot be applied."""
    problem = _event_problem(event)
    if problem is None:
        return dict(event["data"]["object"])
    event_id = event.get("id") if isinstance(event, dict) else None
    if isinstance(event_id, str) and _is_text(event_id, 100):
        event_type = event.get("type")
        try:
            with transaction.atomic():
                StripeEvent.objects.create(
                    event_id=event_id,
                    event_type=event_type if _is_text(event_type, 100) else "",
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


def _apply(*, event_type: str, data: dict[str, Any], intent_id: str) -> str:
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
        if int(data.get("amount_received") or data.get("amount") or 0) != order.total_minor:
            OrderEvent.objects.create(order=order, kind="payment_amount_mismatch", actor_kind="stripe")
            return "amount_mismatch"
        if order.payment_status not in (
            Order.PaymentStatus.NONE,
            Order.PaymentStatus.REQUIRES_PAYMENT,
            Order.PaymentStatus.FAILED,
        ):
            return "already_applied"
        order.payment_status = Order.PaymentStatus.SUCCEEDED
        if order.status == OrderStatus.AWAITING_PAYMENT:
            # `paid` is the durable record that the order must be released: the release message sent after
            # this commit is a nudge, and the reconciler releases any paid order whose message was lost.
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
            # Paid after the customer cancelled: decide the refund now, ask Stripe after the commit.
            refund_decide(order=order)
            order_id = order.pk
            transaction.on_commit(lambda: refund_issue_soon(order_id=order_id))
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
    if event_type == "charge.dispute.created":
        if order.payment_status == Order.PaymentStatus.DISPUTED:
            return "already_applied"
        order.payment_status = Order.PaymentStatus.DISPUTED
        order.save(update_fields=["payment_status", "updated_at"])
        OrderEvent.objects.create(order=order, kind="disputed", actor_kind="stripe")
        return _hold_for_payment(order=order, why="The payment is disputed") or "disputed"
    # charge.refunded: ours (a cancel's decided refund) or one made in Stripe's dashboard.
    if order.payment_status == Order.PaymentStatus.REFUNDED:
        return "already_applied"
    ours = order.payment_status == Order.PaymentStatus.REFUND_PENDING
    if data.get("refunded") is False:
        # Stripe sends charge.refunded for a partial refund too (`refunded` false): the rest of the money is
        # still the lab's, so the payment stays captured and a later cancel refunds the rest (before, the
        # order was called refunded, and a cancel refunded nothing more). A person decides, as for a refund.
        note = f"{data.get('amount_refunded', '?')} of {data.get('amount', '?')} refunded at Stripe"
        OrderEvent.objects.create(order=order, kind=PARTLY_REFUNDED, actor_kind="stripe", note=note[:100])
        if ours:
            return "partial_refund_noted"  # our refund, still to be made, refunds what is left
        return _hold_for_payment(order=order, why="Part of the payment was refunded at Stripe") or (
            "partial_refund_noted"
        )
    order.payment_status = Order.PaymentStatus.REFUNDED
    order.save(update_fields=["payment_status", "updated_at"])
    OrderEvent.objects.create(order=order, kind="refunded", actor_kind="stripe")
    if ours:
        return "refunded"
    return _hold_for_payment(order=order, why="The payment was refunded at Stripe") or "refunded"


def _hold_for_payment(*, order: Order, why: str) -> str | None:
    """Money taken back while the order is being made: stop it for a person, never print on silently nor
    throw printed copies away. Jobs already at a printer finish; the unsent ones wait (a held order's jobs
    are not submitted) until a supervisor cancels the order or releases the hold."""
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
