"""Stripe's refunds of an order's payment, read for a refund event before the order's lock is taken, and
trusted under the lock only while nothing the read depends on has changed (lab/orders/stripe_events.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lab.orders.models import Order, StripeEvent
from lab.orders.payment_refunds import REFUND_TAG, RefundsAtStripe, refund_tag, refunds_at_stripe
from lab.orders.stripe_event_shape import REFUND_EVENTS


class ReadStale(Exception):
    """Stripe's refunds were read before the order's lock, and the order changed, or another event of the
    payment was applied, meanwhile: the read may be older than what that saw (rolls the attempt back)."""


@dataclass(frozen=True)
class RefundsRead:
    """What Stripe said of the payment's refunds (None: not read), and what the lab knew when it asked: the
    order's row (status, payment status, last change) and the payment's events already recorded."""

    at_stripe: RefundsAtStripe | None
    order_seen: tuple[str, str, datetime]
    events_seen: frozenset[int]


def _order_seen(order: Order) -> tuple[str, str, datetime]:
    return (order.status, order.payment_status, order.updated_at)


def _payment_events(intent_id: str) -> frozenset[int]:
    return frozenset(StripeEvent.objects.filter(payment_intent_id=intent_id).values_list("pk", flat=True))


def refunds_read_unlocked(
    *, event_id: str, event_type: str, data: dict[str, Any], intent_id: str
) -> RefundsRead | None:
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
    return RefundsRead(
        at_stripe=refunds_at_stripe(order=order), order_seen=_order_seen(order), events_seen=events_seen
    )


def _reads_refunds(*, order: Order, event_type: str, data: dict[str, Any]) -> bool:
    """Whether `charge_refunded` or `refund_changed` reads Stripe for the order in its state now."""
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
class RefundsReader:
    """What the handlers call, under the order's lock, for Stripe's refunds of its payment.

    The read made before the lock stands when Stripe could not be read (the event's word then stands, as it
    would have: nothing newer was learnt), or when neither the order's row nor the payment's recorded events
    changed since it was asked for: then no other event applied a newer read, and the lab made no refund
    (its refunds follow a change of the order's payment status). Otherwise the attempt is rolled back and
    made again with a new read, outside the lock; only if that one is overtaken too is Stripe read under the
    lock, as before (each call one try: at most two waits of STRIPE_TIMEOUT_SECONDS)."""

    read: RefundsRead | None
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
            raise ReadStale
        return refunds_at_stripe(order=order)
