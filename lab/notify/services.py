"""Customer notifications for order events: claim once per order event, e-mail, and emit webhooks.

The entry points run in Celery tasks ("notify.order_created", "notify.order_status_changed") after commit.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from lab.lib.clock import database_now
from lab.lib.errors import DomainError, NotFound
from lab.lib.mail import MailNotSent, MailRefused, mail_send
from lab.notify import emails
from lab.notify.errors import NotifyError
from lab.notify.models import EventType, Notification
from lab.notify.webhooks import webhook_event_emit
from lab.orders.models import Order, OrderEvent
from lab.orders.states import OrderStatus

logger = logging.getLogger(__name__)

# A worker that claimed a notification and died is replaced after this long; sending takes seconds.
CLAIM_LEASE = timedelta(minutes=10)


def notify_order_created(*, order_id: int) -> None:
    """E-mail "order received"; a redelivered task finds the notification already claimed."""
    event = OrderEvent.objects.filter(order_id=order_id, kind="created").order_by("pk").first()
    if event is None:
        raise NotFound(
            NotifyError.ORDER_EVENT_NOT_FOUND, "The order has no creation event.", order_id=order_id
        )
    _notify(order_event=event, kind=Notification.Kind.ORDER_RECEIVED, email_kind=emails.RECEIVED)


def notify_order_status_changed(*, order_id: int, status: str) -> None:
    """E-mail the customer (for the statuses that mail) and emit webhooks, once per transition."""
    if status not in OrderStatus.values:
        raise DomainError(NotifyError.UNKNOWN_ORDER_STATUS, "Unknown order status.", order_status=status)
    # The latest transition into `status`: a task for an older one that is redelivered after a newer one was
    # notified finds that notification claimed, so one e-mail goes out per distinct visit to the status.
    event = (
        OrderEvent.objects.filter(order_id=order_id, kind="status_changed", to_status=status)
        .order_by("-created_at", "-pk")
        .first()
    )
    if event is None:
        raise NotFound(
            NotifyError.ORDER_EVENT_NOT_FOUND, "The order never entered this status.", order_status=status
        )
    _notify(order_event=event, kind=Notification.Kind.STATUS_CHANGED, email_kind=status)


# The order events that record a refund made (orders/payment_refunds.py `_refunded`, and a full refund made in
# Stripe's dashboard: lab/orders/stripe_events.py). On a cancelled order whose cancellation e-mail did not say
# "We refunded", the sweep mails the customer that their money went back (`_refund_skip_reason`). The
# notification row is claimed like any other (one per order event), so a sweep run twice, or two at once,
# mails it once.
REFUND_EVENT_KINDS = ("refunded", "refunded_at_stripe")
# Notification.kind of a refund's e-mail: not a status change, so no status webhook goes with it.
REFUND_NOTIFICATION_KIND = Notification.Kind.ORDER_REFUNDED


# Order events older than this are not notified late by the sweep: a days-old "in production" mail misleads.
SWEEP_WINDOW = timedelta(hours=24)
# After this many sends failed one after another for want of a mail server, a sweep judges it down: it sends
# no more e-mails, but still claims the events never claimed, for their webhooks (see notifications_sweep).
SWEEP_FAILURES_IN_A_ROW = 3
# A sweep takes no new message after this long, well inside its task's hard time limit (300 s,
# workers/notify_tasks.py): one e-mail after another to a slow mail server, a backlog ran into the limit and
# the sweep was killed mid-send, run after run, each time leaving a claimed message the next one may send
# again. The rest waits for the next sweep.
SWEEP_TIME_BUDGET_SECONDS = 120.0


def notifications_sweep() -> int:
    """Notify the order events whose task message was lost (broker restart, worker killed before it acked).

    The order event, written in the transaction of the status change, is the durable record that the customer
    is owed a message; the claim row makes a late or doubled run send it once. A refund recorded on a
    cancelled order (REFUND_EVENT_KINDS) has no task of its own: this sweep is what mails it, a minute or two
    later (before, a payment found only after the cancel was refunded without a word to the customer, whose
    cancellation e-mail had said no payment was taken). Also taken up again: a notification whose sending
    failed after the task's own retries (a mail server down for an hour), and one claimed by a worker that
    died before it recorded the outcome (its pool process killed: Celery acknowledges such a message) once its
    claim lease has run out. The latter may have been sent just before the worker died; the customer then gets
    it twice, which SMTP cannot rule out.

    Webhooks do not wait for the mail server: they are emitted when an event is first claimed, so the events
    never claimed come first (a backlog of failed e-mails no longer stands in front of them), and once the
    mail server is judged down the sweep goes on claiming those, their e-mail left `failed` unsent for the
    next sweep. Before, a mail server down stopped the sweep after three sends, and the webhooks of every lost
    status change behind them waited for it, for ever once past the sweep's window, though their receivers
    were up.
    """
    now = database_now()  # claims' leases are judged on the clock every host shares (lab/lib/clock.py)
    handled = Notification.objects.exclude(status=Notification.Status.FAILED).exclude(
        status=Notification.Status.PENDING, claimed_at__lt=now - CLAIM_LEASE
    )
    events = (
        OrderEvent.objects.filter(
            Q(kind="created") | Q(kind="status_changed") | Q(kind__in=REFUND_EVENT_KINDS),
            created_at__gte=now - SWEEP_WINDOW,
            created_at__lt=now - timedelta(seconds=settings.NOTIFY_SWEEP_SECONDS),
        )
        .exclude(pk__in=handled.values("order_event_id"))
        .annotate(claimed=Exists(Notification.objects.filter(order_event_id=OuterRef("pk"))))
        .order_by("claimed", "pk")  # never claimed (webhooks owed as well) before failed or abandoned
    )
    sent = failures_in_a_row = 0
    mail_down = False
    started = time.monotonic()
    for index, event in enumerate(events[:500]):
        if index and time.monotonic() - started > SWEEP_TIME_BUDGET_SECONDS:  # (one message at least)
            logger.info("notifications sweep out of time sent=%s: the rest is for the next sweep", sent)
            break
        if mail_down and event.claimed:
            break  # its webhooks went out when it was claimed; its e-mail, like all after it, waits
        kind: str
        if event.kind == "created":
            kind, email_kind = Notification.Kind.ORDER_RECEIVED, emails.RECEIVED
        elif event.kind in REFUND_EVENT_KINDS:
            kind, email_kind = REFUND_NOTIFICATION_KIND, emails.REFUNDED
        else:
            kind, email_kind = Notification.Kind.STATUS_CHANGED, event.to_status
        try:
            _notify(order_event=event, kind=kind, email_kind=email_kind, send=not mail_down)
        except MailRefused:
            continue  # this message only (it stays `failed`, taken up next time): never holds up the others
        except OSError:
            # The mail server is unreachable: after a few in a row, send no more (the rest for the next sweep)
            # but go on claiming the events never claimed, which emits their webhooks.
            failures_in_a_row += 1
            if failures_in_a_row == SWEEP_FAILURES_IN_A_ROW:
                mail_down = True
                logger.warning("notifications sweep: the mail server is down; claiming for webhooks only")
            continue
        if not mail_down:  # (else it was only claimed, its e-mail left unsent)
            failures_in_a_row = 0
            sent += 1
    return sent


def _notify(*, order_event: OrderEvent, kind: str, email_kind: str, send: bool = True) -> None:
    """Claim the event (emitting its webhooks the first time) and send its e-mail; with `send` false (the
    mail server is down) an e-mail that would go out is left `failed`, unsent, for the next sweep."""
    notification = _claim(order_event=order_event, kind=kind)
    if notification is None:
        logger.info("notification already handled order_event=%s", order_event.pk)
        return
    order = Order.objects.select_related("customer").get(pk=order_event.order_id)
    email_kind = emails.email_kind_for(order=order, kind=email_kind)
    if not emails.has_email(kind=email_kind):
        _finish_skipped(notification=notification, reason="no_email_for_status")
        return
    if _is_payment_hold(order_event):
        # Held because money went back at Stripe (lab/orders/stripe_events.py): nothing is asked of the
        # customer, and the hold's words are for the supervisor. Before, the customer of a disputed, even
        # packed, order was told "we need something from you" and sent the staff's note.
        _finish_skipped(notification=notification, reason="payment_hold")
        return
    if (stale := _stale_reason(order_event=order_event, order=order)) is not None:
        _finish_skipped(notification=notification, reason=stale)
        return
    if not emails.order_recipient(order=order):
        _finish_skipped(notification=notification, reason="no_recipient")
        return
    if not send:
        Notification.objects.filter(pk=notification.pk).update(status=Notification.Status.FAILED)
        logger.info("notification left unsent notification=%s order=%s", notification.pk, order.ref)
        return
    message = emails.order_email(order=order, kind=email_kind)
    # What this e-mail says of the refund, from the very order it was rendered from (`_refund_skip_reason`).
    told_refund_made = emails.tells_refund_made(order=order, kind=email_kind)
    try:
        mail_send(message)
    except MailNotSent:  # an OSError: the task retries and reclaims the failed row
        Notification.objects.filter(pk=notification.pk).update(
            status=Notification.Status.FAILED, send_attempts=F("send_attempts") + 1
        )
        logger.warning("notification send failed notification=%s order=%s", notification.pk, order.ref)
        raise
    Notification.objects.filter(pk=notification.pk).update(
        status=Notification.Status.SENT,
        sent_at=timezone.now(),
        send_attempts=F("send_attempts") + 1,
        told_refund_made=told_refund_made,
    )
    logger.info("notification sent notification=%s order=%s email=%s", notification.pk, order.ref, email_kind)


def _claim(*, order_event: OrderEvent, kind: str) -> Notification | None:
    """Insert the notification (first run) or take over a failed/abandoned one; None when it is done.

    Webhooks are emitted in the transaction that inserts the row, so they, too, go out once per event.
    """
    now = database_now()  # the lease is judged on the clock every host shares (lab/lib/clock.py)
    with transaction.atomic():
        notification, created = Notification.objects.get_or_create(
            order_event=order_event,
            defaults={
                "order_id": order_event.order_id,
                "kind": kind,
                "order_status": order_event.to_status,
                "claimed_at": now,
            },
        )
        if created:
            if kind == Notification.Kind.STATUS_CHANGED:
                _emit_status_webhooks(
                    order_id=order_event.order_id,
                    status=order_event.to_status,
                    asks_customer=not _is_payment_hold(order_event),
                )
            return notification
    retakable = Q(status=Notification.Status.FAILED) | Q(
        status=Notification.Status.PENDING, claimed_at__lt=now - CLAIM_LEASE
    )
    taken = Notification.objects.filter(retakable, pk=notification.pk).update(
        status=Notification.Status.PENDING, claimed_at=now
    )
    return notification if taken == 1 else None


def _stale_reason(*, order_event: OrderEvent, order: Order) -> str | None:
    """Why an e-mail for this event would tell the customer something no longer true, or again (None: it
    would not). An e-mail is written from the order as it is now, and an event's message may run late (a
    backed-up queue, the sweep after a lost message):
    - a hold that has ended, or that a later hold replaced, asks nothing any more: its e-mail went out blank
      (the question is gone) or repeated the later hold's question, which that hold's own e-mail asks;
    - a hold ended back to `paid` (an order held before its release) was announced paid already: the same
      "payment confirmed" went out a second time;
    - a box no longer packed (unpacked at the station, or handed over at the counter) does not wait at the
      counter: a pickup's "ready to collect" went out for a box being counted again, or after "collected";
    - a refund is mailed only when the cancellation e-mail could not tell of it (`_refund_skip_reason`)."""
    if order_event.kind in REFUND_EVENT_KINDS:
        return _refund_skip_reason(order_event=order_event, order=order)
    if order_event.kind != "status_changed":
        return None
    if order_event.to_status == OrderStatus.ON_HOLD:
        later = _status_changes_after(order_event, to_status=OrderStatus.ON_HOLD)
        if order.status != OrderStatus.ON_HOLD or later.exists():
            return "hold_over"
    if order_event.to_status == OrderStatus.PACKED:
        # A later move out of `packed`: this visit ended, even if the box was packed again since (that
        # visit's own event mails it).
        left = _status_changes_after(order_event, from_status=OrderStatus.PACKED)
        if order.status != OrderStatus.PACKED or left.exists():
            return "packed_over"
    if order_event.to_status == OrderStatus.PAID and order_event.from_status == OrderStatus.ON_HOLD:
        return "hold_released"
    return None


def _status_changes_after(order_event: OrderEvent, **statuses: str) -> QuerySet[OrderEvent]:
    """The order's status changes (`to_status` / `from_status` as given) after `order_event`: by time, then
    by row for events of the same instant."""
    return OrderEvent.objects.filter(order_id=order_event.order_id, kind="status_changed", **statuses).filter(
        Q(created_at__gt=order_event.created_at) | Q(created_at=order_event.created_at, pk__gt=order_event.pk)
    )


def _refund_skip_reason(*, order_event: OrderEvent, order: Order) -> str | None:
    """Why a refund event owes the customer no e-mail of its own (None: it owes one).

    Only a cancelled order's: a refund made in Stripe's dashboard holds an order that goes on, for a
    supervisor to decide, and the refund of a payment of the wrong amount on an order still awaiting payment
    is told by the cancellation e-mail when the order expires. A cancelled order's refund is told by its
    cancellation e-mail when that e-mail, as sent, said "We refunded ..." (Notification.told_refund_made,
    recorded from the order it was rendered from); one that said "we are refunding" (Stripe's refund still
    pending) or that no payment had reached us promised word when the refund is made, which this e-mail is,
    and so does a cancellation e-mail never sent. A refund told once is not told again (it failed at Stripe
    after it succeeded, and was made again).

    Before, what the cancellation e-mail had said was guessed from times: its claim's (on the database's
    clock) before the refund event's (on the clock of the host that recorded it, orders/payment_refunds.py).
    A web host whose clock ran behind stamped the refund before the claim of a "we are refunding" e-mail, and
    the promised e-mail never went; one ahead had a "We refunded" e-mail followed by a second; and a claim
    made between the refund's INSERT and its COMMIT read the order still pending, its e-mail promising word
    that the times then said was not owed."""
    if order.status != OrderStatus.CANCELLED:
        return "refund_not_cancelled"
    cancelled = (
        OrderEvent.objects.filter(order=order, kind="status_changed", to_status=OrderStatus.CANCELLED)
        .order_by("-created_at", "-pk")
        .first()
    )
    if (
        cancelled is not None
        and Notification.objects.filter(
            order_event=cancelled, status=Notification.Status.SENT, told_refund_made=True
        ).exists()
    ):
        return "refund_told_with_cancel"
    told = Notification.objects.filter(
        order=order, kind=REFUND_NOTIFICATION_KIND, status=Notification.Status.SENT
    ).exclude(order_event=order_event)
    if told.exists():
        return "refund_told"
    return None


def _is_payment_hold(order_event: OrderEvent) -> bool:
    """The order went on hold because Stripe took money back (a refund, a dispute): nothing to ask."""
    return order_event.to_status == OrderStatus.ON_HOLD and order_event.actor_kind == "stripe"


def _emit_status_webhooks(*, order_id: int, status: str, asks_customer: bool = True) -> None:
    order = Order.objects.only("status", "carrier", "tracking_number", "shipping_method").get(pk=order_id)
    # What the customer must answer is theirs to see (a payment hold asks nothing: its words are the staff's,
    # and `hold_message` may carry them before a question: Order.customer_question); the shipping address
    # never goes into a payload.
    changed: dict[str, Any] = (
        {"hold_message": order.customer_question() if asks_customer else ""}
        if status == OrderStatus.ON_HOLD
        else {}
    )
    webhook_event_emit(order_id=order_id, event_type=EventType.ORDER_STATUS_CHANGED, data=changed)
    # A pickup handed over at the counter is no parcel: `order.status_changed` says it is done (`shipped`),
    # and no `order.shipped` tells an integration a parcel with a blank carrier is on its way.
    if status == OrderStatus.SHIPPED and order.shipping_method != Order.ShippingMethod.PICKUP:
        shipped: dict[str, Any] = {
            "carrier": order.carrier,
            "tracking_number": order.tracking_number,
            "tracking_url": emails.tracking_url(carrier=order.carrier, tracking_number=order.tracking_number),
        }
        webhook_event_emit(order_id=order_id, event_type=EventType.ORDER_SHIPPED, data=shipped)


def _finish_skipped(*, notification: Notification, reason: str) -> None:
    Notification.objects.filter(pk=notification.pk).update(
        status=Notification.Status.SKIPPED, skip_reason=reason
    )
    logger.info("notification skipped notification=%s reason=%s", notification.pk, reason)
