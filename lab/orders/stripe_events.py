"""Stripe's signed webhook events: verified over the raw body, applied to the order they name exactly once.

Matched by our own PaymentIntent id only; replays and out-of-order events change nothing; money taken back
while an order is being made holds it for a person (lab/orders/payments.py moves the money); a closed
dispute settles the payment (won: `succeeded`; lost: `refunded`) and leaves a held order to a person.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from lab.lib.clock import database_now
from lab.lib.errors import DomainError, UpstreamError
from lab.orders.errors import OrderError
from lab.orders.models import Order, OrderEvent, StripeEvent
from lab.orders.payments import (
    PARTLY_REFUNDED,
    REFUND_TAG,
    REFUND_UNDONE,
    UNPAID_PAYMENT_STATUSES,
    RefundsAtStripe,
    refund_decide,
    refund_issue_soon,
    refund_tag,
    refunds_at_stripe,
)
from lab.orders.states import PAYMENT_HOLDABLE, OrderStatus
from lab.orders.transitions import order_transition

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


# A Refund object's status changed at Stripe (data.object is the Refund, with its payment_intent).
REFUND_EVENTS = frozenset({"charge.refund.updated", "refund.updated", "refund.failed"})
# A dispute is over (data.object is the Dispute, with its payment_intent and its final `status`).
DISPUTE_CLOSED = "charge.dispute.closed"
HANDLED_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.refunded",
        "charge.dispute.created",
        DISPUTE_CLOSED,
        *REFUND_EVENTS,
    }
)


def _intent_field(event_type: str) -> str:
    """Where a handled event's object names its PaymentIntent: its own id, or `payment_intent` (a charge, a
    dispute, a refund)."""
    return "id" if event_type.startswith("payment_intent.") else "payment_intent"


def webhook_event_handle(*, event: Any) -> str:
    """Apply one verified event exactly once; replays and out-of-order events change nothing.

    A signed event whose fields are not what the handlers read is refused (400 `malformed_event`) and kept
    as a StripeEvent with outcome `malformed` (or, without a usable id, as a log line). Only a handled
    event's PaymentIntent id is stored: the object of another type may have a longer id (a Checkout Session's
    is 66 characters), which the column refused with a 500, so Stripe retried a genuine event for days.
    """
    data = _event_object(event)
    event_type = event["type"]
    intent_id = str(data.get(_intent_field(event_type)) or "") if event_type in HANDLED_EVENTS else ""
    try:
        try:
            outcome = _handle_once(event=event, data=data, intent_id=intent_id, last=False)
        except _ReadStale:
            # The order, or the payment's other events, moved while Stripe was read: read again, once.
            outcome = _handle_once(event=event, data=data, intent_id=intent_id, last=True)
    except IntegrityError:
        return "duplicate"
    logger.info("stripe event id=%s type=%s outcome=%s", event["id"], event_type, outcome)
    return outcome


def _handle_once(*, event: Any, data: dict[str, Any], intent_id: str, last: bool) -> str:
    """Read Stripe's refunds when the event may need them, outside any transaction and without the order's
    lock; then record and apply the event under the lock in one transaction."""
    event_type = event["type"]
    read = _refunds_read_unlocked(event_id=event["id"], event_type=event_type, data=data, intent_id=intent_id)
    with transaction.atomic():
        recorded = StripeEvent.objects.create(
            event_id=event["id"], event_type=event_type, payment_intent_id=intent_id
        )
        reads = _RefundsReader(read=read, own_event=recorded.pk, last=last)
        outcome = _apply(event_type=event_type, data=data, intent_id=intent_id, reads=reads)
        StripeEvent.objects.filter(event_id=event["id"]).update(outcome=outcome)
    return outcome


class _ReadStale(Exception):
    """Stripe's refunds were read before the order's lock, and the order changed, or another event of the
    payment was applied, meanwhile: the read may be older than what that saw (rolls the attempt back)."""


@dataclass(frozen=True)
class _RefundsRead:
    """What Stripe said of the payment's refunds (None: not read), and what the lab knew when it asked: the
    order's row (status, payment status, last change) and the payment's events already recorded."""

    at_stripe: RefundsAtStripe | None
    order_seen: tuple[str, str, datetime]
    events_seen: frozenset[int]


def _order_seen(order: Order) -> tuple[str, str, datetime]:
    return (order.status, order.payment_status, order.updated_at)


def _payment_events(intent_id: str) -> frozenset[int]:
    return frozenset(StripeEvent.objects.filter(payment_intent_id=intent_id).values_list("pk", flat=True))


def _refunds_read_unlocked(
    *, event_id: str, event_type: str, data: dict[str, Any], intent_id: str
) -> _RefundsRead | None:
    """Stripe's refunds of the order's payment, read before the order's lock is taken, when this event would
    read them for the order as it is now (`_reads_refunds`); None when it would not.

    Before, the handlers read Stripe under the order's row lock, inside the event's transaction: while Stripe
    stalled each dashboard refund event held a web worker and the lock for the SDK's three tries of two calls
    (~31 s, up to ~63 s: past gunicorn's 60 s), the refund's other events queued on the lock behind it, and
    a customer's or supervisor's cancel of the order waited as long."""
    if not intent_id or event_type not in (REFUND_EVENTS | {"charge.refunded"}):
        return None
    if StripeEvent.objects.filter(event_id=event_id).exists():
        return None  # a replay: answered `duplicate`, nothing to read
    events_seen = _payment_events(intent_id)
    order = Order.objects.filter(payment_intent_id=intent_id).first()
    if order is None or not _reads_refunds(order=order, event_type=event_type, data=data):
        return None
    return _RefundsRead(
        at_stripe=refunds_at_stripe(order=order), order_seen=_order_seen(order), events_seen=events_seen
    )


def _reads_refunds(*, order: Order, event_type: str, data: dict[str, Any]) -> bool:
    """Whether `_charge_refunded` or `_refund_changed` reads Stripe for the order in its state now."""
    status = order.payment_status
    if event_type == "charge.refunded":
        if data.get("refunded") is False:
            return status == Order.PaymentStatus.SUCCEEDED
        return status not in (
            Order.PaymentStatus.REFUNDED,
            Order.PaymentStatus.REFUND_PENDING,
            Order.PaymentStatus.DISPUTED,
        )
    metadata = data.get("metadata") or {}
    return metadata.get(REFUND_TAG) != refund_tag(order) and status in (
        Order.PaymentStatus.SUCCEEDED,
        Order.PaymentStatus.REFUNDED,
    )


@dataclass(frozen=True)
class _RefundsReader:
    """What the handlers call, under the order's lock, for Stripe's refunds of its payment.

    The read made before the lock stands when Stripe could not be read (the event's word then stands, as it
    would have: nothing newer was learnt), or when neither the order's row nor the payment's recorded events
    changed since it was asked for: then no other event applied a newer read, and the lab made no refund
    (its refunds follow a change of the order's payment status). Otherwise the attempt is rolled back and
    made again with a new read, outside the lock; only if that one is overtaken too is Stripe read under the
    lock, as before (each call one try: at most two waits of STRIPE_TIMEOUT_SECONDS)."""

    read: _RefundsRead | None
    own_event: int
    last: bool

    def __call__(self, order: Order) -> RefundsAtStripe | None:
        read = self.read
        if read is not None and (
            read.at_stripe is None
            or (
                read.order_seen == _order_seen(order)
                and _payment_events(order.payment_intent_id) - {self.own_event} == read.events_seen
            )
        ):
            return read.at_stripe
        if not self.last:
            raise _ReadStale
        return refunds_at_stripe(order=order)


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
    intent_field = _intent_field(event_type)
    intent_id = payload.get(intent_field)
    if not (_is_text(intent_id, 64) or (intent_id is None and intent_field == "payment_intent")):
        return f"data.object.{intent_field} is not a PaymentIntent id"
    for field in ("amount", "amount_received"):
        amount = payload.get(field)
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount < 0):
            return f"data.object.{field} is not a whole number"
    if event_type == "payment_intent.succeeded" and not (
        payload.get("currency") is None or _is_text(payload["currency"], 10)
    ):
        return "data.object.currency is not a currency code"
    if payload.get("last_payment_error") is not None and not isinstance(payload["last_payment_error"], dict):
        return "data.object.last_payment_error is not an object"
    if event_type == DISPUTE_CLOSED and not _is_text(payload.get("status"), 40):
        return "data.object.status is not a dispute status"
    if event_type in REFUND_EVENTS:
        if not _is_text(payload.get("status"), 40):
            return "data.object.status is not a refund status"
        if payload.get("metadata") is not None and not isinstance(payload["metadata"], dict):
            return "data.object.metadata is not an object"
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


def _apply(*, event_type: str, data: dict[str, Any], intent_id: str, reads: _RefundsReader) -> str:
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
        return _payment_succeeded(order=order, data=data)
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
        if order.payment_status == Order.PaymentStatus.DISPUTED or _dispute_already_closed(
            order=order, dispute=data
        ):
            return "already_applied"
        order.payment_status = Order.PaymentStatus.DISPUTED
        order.save(update_fields=["payment_status", "updated_at"])
        OrderEvent.objects.create(order=order, kind="disputed", actor_kind="stripe")
        return _hold_for_payment(order=order, why=DISPUTED_WHY) or "disputed"
    if event_type == DISPUTE_CLOSED:
        return _dispute_closed(order=order, dispute=data)
    if event_type in REFUND_EVENTS:
        return _refund_changed(order=order, refund=data, reads=reads)
    return _charge_refunded(order=order, data=data, reads=reads)


DISPUTED_WHY = "The payment is disputed"
# Stripe took another amount (or currency) than the order's: the money goes back, and never pays the order.
AMOUNT_MISMATCH = "payment_amount_mismatch"
PARTLY_REFUNDED_WHY = "Part of the payment was refunded at Stripe"


def _payment_succeeded(*, order: Order, data: dict[str, Any]) -> str:
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
            _refund_issue_after_commit(order=order)
        return "amount_mismatch"
    if order.payment_status == Order.PaymentStatus.DISPUTED and order.status == OrderStatus.AWAITING_PAYMENT:
        # The dispute came first (Stripe does not keep its events in order): the money was captured, and is
        # disputed. Before, this answered `already_applied` and the order stayed unpaid until the retention
        # sweep cancelled it, refunding nothing. Now it is paid, disputed, and held for a supervisor.
        return _paid_by_stripe(order=order, note="payment succeeded, disputed", hold_why=DISPUTED_WHY)
    if order.payment_status not in UNPAID_PAYMENT_STATUSES:
        return "already_applied"
    order.payment_status = Order.PaymentStatus.SUCCEEDED
    if order.status == OrderStatus.AWAITING_PAYMENT:
        # `paid` is the durable record that the order must be released: the release message sent after
        # this commit is a nudge, and the reconciler releases any paid order whose message was lost.
        # A partial refund that came first found an unpaid order, which it could not hold, and the order
        # printed as if nothing had been refunded. It is held now, before any release.
        partly_refunded = OrderEvent.objects.filter(order=order, kind=PARTLY_REFUNDED).exists()
        return _paid_by_stripe(
            order=order, note="payment succeeded", hold_why=PARTLY_REFUNDED_WHY if partly_refunded else None
        )
    order.save(update_fields=["payment_status", "updated_at"])
    if order.status == OrderStatus.CANCELLED:
        # Paid after the customer cancelled: decide the refund now, ask Stripe after the commit.
        refund_decide(order=order)
        _refund_issue_after_commit(order=order)
        return "refund_after_cancel"
    return "recorded"


def payment_found_at_stripe_apply(*, order_id: int, intent: dict[str, Any]) -> str:
    """A PaymentIntent the lab read at Stripe itself (the unpaid-order expiry, customer_data/unpaid_expiry.py)
    and found `succeeded` before its payment_intent.succeeded came: applied under the order's lock as that
    event is (`_payment_succeeded`: amount and currency compared), so the event, when it comes, answers
    `already_applied`. `intent`: the PaymentIntent's fields (id, amount, amount_received, currency)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None or not order.payment_intent_id or order.payment_intent_id != intent.get("id"):
            return "unknown_payment_intent"
        outcome = _payment_succeeded(order=order, data=intent)
    logger.info("payment found at stripe order=%s outcome=%s", order.ref, outcome)
    return outcome


def _refund_issue_after_commit(*, order: Order) -> None:
    order_id = order.pk
    transaction.on_commit(lambda: refund_issue_soon(order_id=order_id))


REFUNDED_WHY = "The payment was refunded at Stripe"


def _charge_refunded(*, order: Order, data: dict[str, Any], reads: _RefundsReader) -> str:
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
        return _hold_for_payment(order=order, why=PARTLY_REFUNDED_WHY) or "partial_refund_noted"
    if ours:
        # Stripe sends it when a refund is made, before the refund has succeeded (and it may still fail):
        # the order is refunded when Stripe says our refund succeeded, which refund_issue asks.
        _refund_issue_after_commit(order=order)
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
                return _hold_for_payment(order=order, why=why) or "payment_still_captured"
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
    return _hold_for_payment(order=order, why=REFUNDED_WHY) or "refunded"


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
            # another amount paid it (`_paid_by_stripe` refuses it now, and refunds it).
            short = f"{at_stripe.captured} captured, {order.total_minor} due"
            OrderEvent.objects.create(order=order, kind=AMOUNT_MISMATCH, actor_kind="stripe", note=short)
    order.payment_status = Order.PaymentStatus.SUCCEEDED
    if order.status == OrderStatus.AWAITING_PAYMENT:
        return _paid_by_stripe(order=order, note=note, hold_why=why)
    fields = ["payment_status", "updated_at"]
    if order.status == OrderStatus.ON_HOLD:
        again = f"{why}: the payment is captured again."
        order.hold_message = f"{again} {order.hold_message}"[:1000]
        fields.append("hold_message")
    order.save(update_fields=fields)
    if order.status == OrderStatus.CANCELLED and refund_decide(order=order):
        # The money came back to a cancelled order: it is the customer's.
        _refund_issue_after_commit(order=order)
        return "refund_after_cancel"
    return "payment_captured_again"


def _refund_changed(*, order: Order, refund: dict[str, Any], reads: _RefundsReader) -> str:
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
            _refund_issue_after_commit(order=order)
            return "refund_confirming"
        OrderEvent.objects.create(order=order, kind="refund_failed", actor_kind="stripe", note=note)
        if order.payment_status == Order.PaymentStatus.REFUNDED:
            order.payment_status = Order.PaymentStatus.REFUND_PENDING
            order.save(update_fields=["payment_status", "updated_at"])
        _refund_issue_after_commit(order=order)
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
        _refund_issue_after_commit(order=order)
        return "refund_rechecking"
    if order.payment_status != Order.PaymentStatus.REFUNDED:
        return "refund_failure_noted"  # a partial refund's: the payment was still captured
    # Stripe not read: the event's word. The refund and its failure may have come before the payment's own
    # event, which a refunded payment answers `already_applied`: the order is paid, and held for a person.
    return _payment_captured(
        order=order, at_stripe=None, why=CAPTURED_AGAIN_WHY, note="payment captured again"
    )


# The dispute's final status (Stripe's Dispute object): the lab keeps the money (won; warning_closed, an
# inquiry that never became a chargeback) or the customer's bank gave it back to them (lost). Any other
# (prevented: Stripe refunded the charge to stop a dispute, which its own refund event records) is noted.
DISPUTE_KEPT = frozenset({"won", "warning_closed"})
DISPUTE_LOST = "lost"


DISPUTE_CLOSED_KINDS = ("dispute_won", "dispute_lost", "dispute_closed")


def _dispute_already_closed(*, order: Order, dispute: dict[str, Any]) -> bool:
    """Whether this dispute's close was applied already: Stripe does not keep its events in order, and a
    `charge.dispute.created` that comes after its own `charge.dispute.closed` changes nothing. Before, it
    marked the settled payment `disputed` again and held the order, for good (no close was to come), which
    also kept the customer's data from being erased. Matched by the dispute id `_dispute_closed` notes."""
    dispute_id = dispute.get("id")
    if not isinstance(dispute_id, str) or not dispute_id:
        return False
    return OrderEvent.objects.filter(
        order=order, kind__in=DISPUTE_CLOSED_KINDS, note__startswith=f"{dispute_id} "
    ).exists()


DISPUTE_LOST_WHY = "The dispute was lost: the customer's bank returned the money"
DISPUTE_WON_UNPAID_WHY = "The payment was disputed, and the dispute won, before the payment's own event came"


def _dispute_closed(*, order: Order, dispute: dict[str, Any]) -> str:
    """charge.dispute.closed: the payment is no longer `disputed`. Won, it is the lab's again (`succeeded`);
    lost, the bank returned the money to the customer, and the order is `refunded` as if the lab had refunded
    it (an OrderEvent `dispute_lost` says who did). Recorded on the order's timeline in every case, once per
    dispute. An order held for the dispute stays held: whoever releases or cancels it reads the outcome first
    in its hold message. A cancelled order whose dispute the lab won owes the customer their money: its refund
    is decided, as for a refund at Stripe that failed (`_refund_changed`)."""
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
        return _paid_by_stripe(
            order=order, note="payment succeeded, dispute won", hold_why=DISPUTE_WON_UNPAID_WHY
        )
    fields = ["payment_status", "updated_at"]
    if order.status == OrderStatus.ON_HOLD:
        order.hold_message = f"{why} {order.hold_message}"[:1000]
        fields.append("hold_message")
    order.save(update_fields=fields)
    if status == DISPUTE_LOST and order.status != OrderStatus.ON_HOLD:
        # The money went back to the customer while the order is still being made (its creation event late or
        # lost, so nothing held it): stop it for a person, as any money taken back (_hold_for_payment).
        held = _hold_for_payment(order=order, why=DISPUTE_LOST_WHY)
        if held is not None:
            return held
    if status in DISPUTE_KEPT and order.status == OrderStatus.CANCELLED and refund_decide(order=order):
        _refund_issue_after_commit(order=order)
        return "refund_after_cancel"
    return kind


def _paid_by_stripe(*, order: Order, note: str, hold_why: str | None) -> str:
    """Stripe captured the money of an order awaiting payment (its `payment_status` set by the caller): the
    order is `paid`, the durable record that it must be released, and held for a person when the payment
    needs one (`hold_why`: disputed, partly refunded, a refund that failed, a dispute won first).

    Never a payment Stripe took of another amount or currency than the order's (an AMOUNT_MISMATCH event,
    which `_payment_succeeded` or `_payment_captured` wrote): the order stays unpaid, and the money, once it
    is the lab's (`succeeded`), goes back to the customer. Before, a won dispute or a captured payment after a
    mismatched one paid the order, and a technician could release it to print."""
    if OrderEvent.objects.filter(order=order, kind=AMOUNT_MISMATCH).exists():
        if order.payment_status == Order.PaymentStatus.SUCCEEDED:
            refund_decide(order=order)
            _refund_issue_after_commit(order=order)
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
    return _hold_for_payment(order=order, why=hold_why) or "paid"


def _hold_for_payment(*, order: Order, why: str) -> str | None:
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
