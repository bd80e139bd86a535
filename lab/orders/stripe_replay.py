"""What Stripe knows since a time, applied again after the database was restored from a backup
(`manage.py stripe_replay --since TIME`).

Events Stripe delivered, and the lab acknowledged, after the backup are never sent again: a payment, a refund
or a dispute since is missing from the restored database, and the sweeps read no further than it (a refunded
order `paid` again is released to print). So Stripe is read, and what it says is applied through the webhook
handler itself (`webhook_event_handle`: the same checks, the same idempotency by event id):

- its events created since TIME, of the kinds the handler handles, oldest first;
- its refunds created since TIME of a payment no refund event in that list names. localstripe (the tests'
  and the demo's Stripe) records no refund event at all, and Stripe keeps events for 30 days only: such a
  refund is applied as the event Stripe sends for it, built from the objects read now (`charge.refunded`,
  whose object is the refund's Charge; `refund.updated` for one that failed or was cancelled), under an id of
  its own (`replay_<refund id>_<status>`): applied once, and again only if the refund's status changes.

A payment whose PaymentIntent no order in the database holds (an order placed after the backup) is not
refunded here: it is listed (`ReplayResult.payments_without_order`); the command raises the supervisors'
alert for it (lab.production.alerts.payment_without_order_alert: production's model, above orders).
Everything is read from Stripe before anything is applied: when Stripe cannot be read, nothing changes.
A payment made after the replay, for an order the restore lost, is alerted by `alerts_check` when its event
reaches the webhook (lab.production.alerts, the same key). `database_newest` is the time the command holds
TIME against: one later than anything the restored database holds skips what happened in between.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
from django.db.models import Max

from lab.lib.errors import DomainError, UpstreamError
from lab.orders.models import Order, OrderEvent, StripeEvent
from lab.orders.payment_client import stripe_client
from lab.orders.payment_refunds import REFUND_UNDONE
from lab.orders.stripe_event_shape import HANDLED_EVENTS, REFUND_EVENTS, payment_intent_field
from lab.orders.stripe_events import webhook_event_handle

logger = logging.getLogger(__name__)

PAGE = 100  # Stripe's largest page
REPLAYED_PREFIX = "replay_"  # the id of an event built here from a refund read at Stripe
# The handler's outcomes that changed nothing: the order already says what the event says.
ALREADY_KNOWN = frozenset({"duplicate", "already_applied"})
UNKNOWN = "unknown_payment_intent"


class StripeUnreadable(Exception):
    """Stripe could not be read (no answer, an error, payments not configured): nothing was applied."""


@dataclass(frozen=True)
class PaymentWithoutOrder:
    """A PaymentIntent Stripe named since TIME that no order in the database holds: ids and amounts only."""

    intent_id: str
    status: str
    captured: int  # what Stripe received (0 when it is not `succeeded`)
    refunded: int  # what refunds took back, or may still (pending)
    currency: str
    is_lab_s: bool  # made by this lab (its metadata names an order, as payment_intent_ensure writes)

    @property
    def left(self) -> int:
        return max(self.captured - self.refunded, 0)

    @property
    def needs_person(self) -> bool:
        """The lab's, and money of it still at Stripe: someone must refund it, or place the order again."""
        return self.is_lab_s and self.left > 0


@dataclass
class ReplayResult:
    events_read: int = 0
    events_not_handled: int = 0  # of kinds the webhook handler does not handle: not applied
    refunds_read: int = 0
    refunds_replayed: int = 0  # read as refunds, no refund event of their payment being listed
    applied: Counter[str] = field(default_factory=Counter)  # by the handler's outcome
    already_known: int = 0
    unknown: int = 0  # events of a payment no order holds
    refused: int = 0  # events the handler refused as malformed
    payments_without_order: list[PaymentWithoutOrder] = field(default_factory=list)


@dataclass(frozen=True)
class _Reads:
    events: list[dict[str, Any]]  # handled kinds and the refunds' own, oldest first
    events_read: int
    not_handled: int
    refunds_read: int
    refunds_replayed: int
    without_order: list[PaymentWithoutOrder]


def stripe_replay(*, since: datetime) -> ReplayResult:
    """Apply what Stripe knows since `since` (aware) through the webhook handler; StripeUnreadable, with
    nothing applied, when Stripe cannot be read. Safe to run any number of times."""
    reads = _stripe_read(since=since)
    result = ReplayResult(
        events_read=reads.events_read,
        events_not_handled=reads.not_handled,
        refunds_read=reads.refunds_read,
        refunds_replayed=reads.refunds_replayed,
        payments_without_order=reads.without_order,
    )
    unknown_intents = {payment.intent_id for payment in reads.without_order}
    for event in reads.events:
        try:
            outcome = webhook_event_handle(event=event)
        except DomainError as error:
            logger.warning("stripe replay event refused id=%s code=%s", event.get("id"), error.code)
            result.refused += 1
            continue
        if _intent_of(event) in unknown_intents or outcome == UNKNOWN:
            result.unknown += 1
        elif outcome in ALREADY_KNOWN:
            result.already_known += 1
        else:
            result.applied[outcome] += 1
    logger.info(
        "stripe replay since=%s applied=%d known=%d unknown=%d without_order=%d",
        since.isoformat(),
        sum(result.applied.values()),
        result.already_known,
        result.unknown,
        len(result.payments_without_order),
    )
    return result


def database_newest() -> datetime | None:
    """The newest time the database holds a record of (a Stripe event received, an order event, an order
    changed): a restored database's is about its backup's. None when it holds none of them."""
    times = [
        StripeEvent.objects.aggregate(at=Max("received_at"))["at"],
        OrderEvent.objects.aggregate(at=Max("created_at"))["at"],
        Order.objects.aggregate(at=Max("updated_at"))["at"],
    ]
    return max((at for at in times if at is not None), default=None)


def _intent_of(event: dict[str, Any]) -> str:
    data = event["data"]["object"]
    return str(data.get(payment_intent_field(event["type"])) or "")


def _stripe_read(*, since: datetime) -> _Reads:
    """Everything the replay needs from Stripe, read before anything is applied."""
    start = int(since.timestamp())
    try:
        client = stripe_client()
        listed = client.v1.events.list(params={"created": {"gte": start}, "limit": PAGE})
        read = [event.to_dict() for event in listed.auto_paging_iter()]
        events = [event for event in read if event.get("type") in HANDLED_EVENTS]
        not_handled = len(read) - len(events)
        # Newest first, as Stripe lists them (auto_paging_iter): the refunds of the window are the first ones.
        refunds = []
        for refund in client.v1.refunds.list(params={"limit": PAGE}).auto_paging_iter():
            if refund.created < start:
                break
            refunds.append(refund.to_dict())
        replayed = _refund_events(client=client, events=events, refunds=refunds)
        events = sorted(events + replayed, key=lambda event: int(event.get("created") or 0))
        without_order = _payments_without_order(client=client, events=events)
    except (stripe.StripeError, UpstreamError) as error:
        raise StripeUnreadable(type(error).__name__) from error
    return _Reads(
        events=events,
        events_read=len(read),
        not_handled=not_handled,
        refunds_read=len(refunds),
        refunds_replayed=len(replayed),
        without_order=without_order,
    )


def _refund_events(
    *, client: stripe.StripeClient, events: list[dict[str, Any]], refunds: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The event Stripe sends for each refund of a payment no listed refund event names: `charge.refunded`
    (the refund's Charge as it is now: what was refunded of it) for a refund that moved money or may still,
    `refund.updated` (the Refund) for one that failed or was cancelled."""
    named = {
        _intent_of(event)
        for event in events
        if event["type"] == "charge.refunded" or event["type"] in REFUND_EVENTS
    }
    charges: dict[str, dict[str, Any]] = {}
    replayed = []
    for refund in refunds:
        charge_id = refund.get("charge")
        if not isinstance(charge_id, str) or not charge_id:
            continue
        if charge_id not in charges:
            charges[charge_id] = client.v1.charges.retrieve(charge_id).to_dict()
        charge = charges[charge_id]
        intent_id = refund.get("payment_intent") or charge.get("payment_intent")
        if not isinstance(intent_id, str) or not intent_id or intent_id in named:
            continue
        status = str(refund.get("status") or "")
        if status in REFUND_UNDONE:
            event_type, data = "refund.updated", {**refund, "payment_intent": intent_id}
        else:
            event_type, data = "charge.refunded", {**charge, "payment_intent": intent_id}
        replayed.append(
            {
                "id": f"{REPLAYED_PREFIX}{refund['id']}_{status}"[:100],
                "object": "event",
                "type": event_type,
                "created": refund.get("created"),
                "data": {"object": data},
            }
        )
    return replayed


def _payments_without_order(
    *, client: stripe.StripeClient, events: list[dict[str, Any]]
) -> list[PaymentWithoutOrder]:
    """The PaymentIntents the events name that no order holds, as Stripe has them now."""
    named = {intent for intent in map(_intent_of, events) if intent}
    held = set(Order.objects.filter(payment_intent_id__in=named).values_list("payment_intent_id", flat=True))
    payments = []
    for intent_id in sorted(named - held):
        intent = client.v1.payment_intents.retrieve(intent_id).to_dict()
        status = str(intent.get("status") or "")
        captured, refunded = 0, 0
        if status == "succeeded":
            received = intent.get("amount_received")
            captured = int(received if received is not None else intent.get("amount") or 0)
            made = client.v1.refunds.list(params={"payment_intent": intent_id, "limit": PAGE}).data
            refunded = sum(int(refund.amount or 0) for refund in made if refund.status not in REFUND_UNDONE)
        metadata = intent.get("metadata") or {}
        payments.append(
            PaymentWithoutOrder(
                intent_id=intent_id,
                status=status,
                captured=captured,
                refunded=refunded,
                currency=str(intent.get("currency") or "").lower(),
                is_lab_s=bool(metadata.get("order_ref")),
            )
        )
    return payments
