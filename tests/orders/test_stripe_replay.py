"""`manage.py stripe_replay --since TIME` after a restore from a backup: what Stripe knows since the backup is
applied again through the webhook handler, against the tests' real localstripe.

A restore is played on the rows it concerns: the orders' rows as the backup held them written back, the
orders, order events and Stripe events made since deleted. Stripe keeps what happened since (payments,
refunds, its events): the webhooks that told the lab were acknowledged, and are never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from lab.orders.models import Order, OrderEvent, StripeEvent
from lab.orders.payments import payments_reconcile
from lab.production.alerts import alerts_check
from lab.production.models import Alert, PrintJob
from lab.production.reconcile import production_reconcile
from tests.support.stripe_webhooks import (
    order_placed,
    pay_at_stripe,
    refunds_made,
    stripe_events_delivered,
    stripe_forgotten,
)

pytestmark = pytest.mark.django_db
# How long before the test's backup it was taken: the orders' rows it holds are older than the production
# sweep's grace, as after any real restore.
BACKUP_AGE = timedelta(hours=1)


@dataclass(frozen=True)
class Backup:
    at: datetime
    orders: dict[int, dict[str, Any]]
    last_order_event: int
    last_stripe_event: int


def backup_taken() -> Backup:
    """What a dump taken now holds of the orders and their payment's records."""
    at = timezone.now()
    Order.objects.update(updated_at=at - BACKUP_AGE)
    return Backup(
        at=at,
        orders={row["id"]: dict(row) for row in Order.objects.values()},
        last_order_event=max(OrderEvent.objects.values_list("pk", flat=True), default=0),
        last_stripe_event=max(StripeEvent.objects.values_list("pk", flat=True), default=0),
    )


def restored_from(backup: Backup) -> None:
    """The database put back to the backup: orders made since gone, the others as they were then."""
    Order.objects.exclude(pk__in=backup.orders).delete()
    for pk, row in backup.orders.items():
        Order.objects.filter(pk=pk).update(**row)
    OrderEvent.objects.filter(pk__gt=backup.last_order_event).delete()
    StripeEvent.objects.filter(pk__gt=backup.last_stripe_event).delete()


def replay(backup: Backup) -> str:
    out = StringIO()
    call_command("stripe_replay", "--since", (backup.at - timedelta(minutes=10)).isoformat(), stdout=out)
    return out.getvalue()


def order_paid_through_stripe(api, key: str) -> Order:
    """An order its customer paid at Stripe, the payment's event delivered and applied."""
    order = order_placed(api, key=key)
    pay_at_stripe(order)
    assert stripe_events_delivered(api, order) == ["paid"]
    order.refresh_from_db()
    return order


def customer_cancels(api, order: Order) -> None:
    api.force_authenticate(order.customer)
    response = api.post(f"/api/v1/orders/{order.ref}/cancel")
    api.force_authenticate(None)
    assert response.status_code == 200, response.json()


def state(order: Order) -> tuple[str, str]:
    order.refresh_from_db()
    return (order.status, order.payment_status)


@pytest.fixture
def stripe(stripe_api):
    """The session's localstripe, holding nothing of the tests before (the replay reads the whole account)."""
    stripe_forgotten()
    return stripe_api


def test_a_refund_made_after_the_backup_is_applied_again_and_the_order_never_released(api, stripe):
    # given an order paid before the backup, cancelled by its customer and refunded at Stripe after it
    order = order_paid_through_stripe(api, "x")
    backup = backup_taken()
    customer_cancels(api, order)
    assert state(order) == ("cancelled", "refunded")
    assert [status for status, _tag in refunds_made(order)] == ["succeeded"]

    # when the database is restored from the backup: the order is paid again, and the payments sweep does
    # not see the refund (before: the production sweep released it, and the lab printed an order it had
    # refunded and told its customer was cancelled)
    restored_from(backup)
    payments_reconcile()
    assert state(order) == ("paid", "succeeded")
    with transaction.atomic():
        assert production_reconcile()["orders_released"] == 1
        transaction.set_rollback(True)

    # and the operator replays Stripe since the backup
    out = replay(backup)

    # then the refund is the order's again: refunded, the order held for a supervisor, who cancels it
    assert state(order) == ("on_hold", "refunded")
    assert "refunded at Stripe" in order.hold_message
    assert "applied: 1 (held_for_payment 1)" in out
    assert "already known: 1" in out  # the payment's own event, applied before the backup
    # and the production sweep releases nothing; no second refund was made
    production_reconcile()
    assert not PrintJob.objects.filter(order=order).exists()
    assert state(order) == ("on_hold", "refunded")
    assert [status for status, _tag in refunds_made(order)] == ["succeeded"]


def test_a_payment_made_after_the_backup_pays_the_order_again(api, stripe):
    # given an order awaiting payment at the backup, its PaymentIntent made, paid after it
    order = order_placed(api, key="a")
    backup = backup_taken()
    pay_at_stripe(order)
    assert stripe_events_delivered(api, order) == ["paid"]

    # when the database is restored: the order awaits payment, and the payments sweep does not find it paid
    restored_from(backup)
    payments_reconcile()
    assert state(order) == ("awaiting_payment", "requires_payment")

    # and the operator replays Stripe since the backup
    out = replay(backup)

    # then the order is paid, by the event Stripe sent after the backup
    assert state(order) == ("paid", "succeeded")
    assert "applied: 1 (paid 1)" in out
    assert StripeEvent.objects.filter(payment_intent_id=order.payment_intent_id, outcome="paid").count() == 1


def test_a_payment_whose_order_the_backup_never_held_is_listed_and_alerted_never_refunded(api, stripe):
    # given an order placed and paid after the backup
    backup = backup_taken()
    order = order_paid_through_stripe(api, "b")
    intent_id, total = order.payment_intent_id, order.total_minor

    # when the database is restored: no row of it is left, and its money is at Stripe
    restored_from(backup)
    assert not Order.objects.exists()

    out = replay(backup)

    # then the payment is listed by its PaymentIntent and amount, and a supervisor alerted to refund it
    assert f"payment without order: {intent_id} succeeded captured {total} refunded 0" in out
    assert "unknown: 1 (1 payments with no order, 1 alerts raised)" in out
    alert = Alert.objects.get()
    assert (alert.kind, alert.key) == ("payment_without_order", f"payment_without_order:{intent_id}")
    assert intent_id in alert.message
    # and nothing else changed: no order, no refund at Stripe
    assert not Order.objects.exists()
    assert refunds_made(order) == []


def test_a_second_replay_changes_nothing(api, stripe):
    # given a restore that lost a refund, a payment and a paid order
    refunded = order_paid_through_stripe(api, "x")
    unpaid = order_placed(api, key="a")
    backup = backup_taken()
    customer_cancels(api, refunded)
    pay_at_stripe(unpaid)
    stripe_events_delivered(api, unpaid)
    lost = order_paid_through_stripe(api, "b")
    restored_from(backup)

    # when the operator replays Stripe twice
    replay(backup)
    after_first = database_state()
    again = replay(backup)

    # then the second run applies nothing and raises no alert again
    assert database_state() == after_first
    assert (state(refunded), state(unpaid)) == (("on_hold", "refunded"), ("paid", "succeeded"))
    assert "applied: 0;" in again
    assert "0 alerts raised" in again
    assert f"payment without order: {lost.payment_intent_id}" in again  # listed again, for whoever reads
    assert [status for status, _tag in refunds_made(refunded)] == ["succeeded"]
    assert refunds_made(lost) == []


def database_state() -> tuple[Any, ...]:
    return (
        sorted(Order.objects.values_list("pk", "status", "payment_status", "updated_at", "hold_message")),
        sorted(OrderEvent.objects.values_list("pk", flat=True)),
        sorted(StripeEvent.objects.values_list("event_id", "outcome")),
        sorted(Alert.objects.values_list("key", "message")),
    )


def test_stripe_not_answering_exits_non_zero_and_changes_nothing(api, stripe, settings):
    # given a restore that lost a payment and an order
    order = order_placed(api, key="a")
    backup = backup_taken()
    pay_at_stripe(order)
    stripe_events_delivered(api, order)
    order_paid_through_stripe(api, "b")
    restored_from(backup)
    before = database_state()

    # when Stripe does not answer
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    with pytest.raises(CommandError, match="Stripe could not be read") as refused:
        replay(backup)

    # then the command fails (exit 1) and nothing changed
    assert refused.value.returncode == 1
    assert database_state() == before
    assert state(order) == ("awaiting_payment", "requires_payment")


@pytest.mark.parametrize("since", ["2026-01-01T00:00:00", "yesterday"])
def test_a_time_without_its_zone_is_refused(since):
    with pytest.raises(CommandError, match="--since"):
        call_command("stripe_replay", "--since", since)


def test_a_payment_made_after_the_replay_for_an_order_the_restore_lost_is_alerted_once(api, stripe):
    # given an order placed after the backup, its PaymentIntent made, not paid yet: the restore loses it, and
    # the replay does not list it (no event of a kind the lab handles names it)
    backup = backup_taken()
    order = order_placed(api, key="late")
    intent_id = order.payment_intent_id
    restored_from(backup)
    out = replay(backup)
    assert "0 alerts raised" in out
    assert intent_id not in out

    # when the customer's checkout page, still open, pays the intent after the replay, and its event comes
    pay_at_stripe(order)
    assert stripe_events_delivered(api, order) == ["unknown_payment_intent"]

    # then the next alerts check raises the supervisors' alert by its PaymentIntent (before: the webhook
    # answered 200 and logged it, Stripe never sent it again, and nobody heard of the money)
    alerts_check()
    alert = Alert.objects.get()
    assert (alert.kind, alert.key) == ("payment_without_order", f"payment_without_order:{intent_id}")
    assert intent_id in alert.message
    # once: a second check, and the replay run again, raise no other (the replay's alert has the same key)
    alerts_check()
    assert "0 alerts raised" in replay(backup)
    assert Alert.objects.count() == 1
    # and nothing was refunded: a person decides
    assert refunds_made(order) == []


def newest_record() -> datetime:
    times: list[datetime | None] = [
        StripeEvent.objects.aggregate(at=Max("received_at"))["at"],
        OrderEvent.objects.aggregate(at=Max("created_at"))["at"],
        Order.objects.aggregate(at=Max("updated_at"))["at"],
    ]
    return max(at for at in times if at is not None)


def test_a_since_later_than_anything_the_restored_database_holds_is_refused_unless_meant(api, stripe):
    # given an order paid before the backup and refunded at Stripe after it, the database restored
    order = order_paid_through_stripe(api, "x")
    backup = backup_taken()
    customer_cancels(api, order)
    restored_from(backup)
    before = database_state()
    newest = newest_record()

    # when the operator types a time later than any record the restored database holds (the time the backup
    # finished, say): a refund between the two would be skipped and the refunded order released to print
    since = timezone.now()
    assert since > newest
    with pytest.raises(CommandError, match="--since-after-backup") as refused:
        call_command("stripe_replay", "--since", since.isoformat(), stdout=StringIO())

    # then the command refuses (exit 1), naming the newest time the database holds, and nothing changed
    assert refused.value.returncode == 1
    assert newest.isoformat() in str(refused.value)
    assert database_state() == before
    assert state(order) == ("paid", "succeeded")

    # and with --since-after-backup that time is taken as meant
    out = StringIO()
    call_command("stripe_replay", "--since", since.isoformat(), "--since-after-backup", stdout=out)
    assert f"stripe since {since.isoformat()}" in out.getvalue()
    # while a time before the newest record needs no flag
    replay(backup)
    assert state(order) == ("on_hold", "refunded")
