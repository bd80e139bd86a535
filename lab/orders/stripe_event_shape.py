"""The Stripe events the lab handles, and what a signed event's fields must be before any handler reads them
(lab/orders/stripe_events.py records and refuses one that is not)."""

from __future__ import annotations

from typing import Any

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


def payment_intent_field(event_type: str) -> str:
    """Where a handled event's object names its PaymentIntent: its own id, or `payment_intent` (a charge, a
    dispute, a refund)."""
    return "id" if event_type.startswith("payment_intent.") else "payment_intent"


def is_text(value: object, max_length: int) -> bool:
    """A string the database takes as it is: 1..max_length printable characters (no NUL)."""
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isprintable()


def event_problem(event: Any) -> str | None:
    """What makes a signed event unusable, in words without personal data; None when it is usable."""
    if not isinstance(event, dict):
        return "the event is not a JSON object"
    if not is_text(event.get("id"), 100):
        return "id is missing or not a short string"
    event_type = event.get("type")
    if not is_text(event_type, 100):
        return "type is missing or not a short string"
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return "data.object is missing or not an object"
    if event_type not in HANDLED_EVENTS:
        return None
    payload = data["object"]
    intent_field = payment_intent_field(event_type)
    intent_id = payload.get(intent_field)
    if not (is_text(intent_id, 64) or (intent_id is None and intent_field == "payment_intent")):
        return f"data.object.{intent_field} is not a PaymentIntent id"
    for field in ("amount", "amount_received"):
        amount = payload.get(field)
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount < 0):
            return f"data.object.{field} is not a whole number"
    if event_type == "payment_intent.succeeded" and not (
        payload.get("currency") is None or is_text(payload["currency"], 10)
    ):
        return "data.object.currency is not a currency code"
    if payload.get("last_payment_error") is not None and not isinstance(payload["last_payment_error"], dict):
        return "data.object.last_payment_error is not an object"
    if event_type == DISPUTE_CLOSED and not is_text(payload.get("status"), 40):
        return "data.object.status is not a dispute status"
    if event_type in REFUND_EVENTS:
        if not is_text(payload.get("status"), 40):
            return "data.object.status is not a refund status"
        if payload.get("metadata") is not None and not isinstance(payload["metadata"], dict):
            return "data.object.metadata is not an object"
    return None
