"""A cancelled order's PaymentIntent is cancelled at Stripe (localstripe here), whoever cancelled the order
and whatever was lost on the way, and its client secret is never answered again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db.models import F
from django.utils import timezone

from lab.customer_data.retention import retention_sweep
from lab.customer_data.retention_rules import RULE_UNPAID
from lab.customer_data.unpaid_expiry import orders_expire_unpaid
from lab.lib.errors import UpstreamError
from lab.orders import payments
from lab.orders.models import Asset, Order, OrderEvent
from lab.production.cancellation import order_cancel_in_production
from tests.builders import person
from tests.support.stripe_proxy import IntentStatusProxy
from tests.support.stripe_webhooks import deliver, order_placed, pay_at_stripe, stripe_test_client, succeeded
from workers import notify_tasks, tasks

pytestmark = pytest.mark.django_db
STRIPE_UNREACHABLE = "http://127.0.0.1:9"  # nothing listens there


@pytest.fixture
def order(api, stripe_api) -> Order:
    return order_placed(api)


def intent_status(order: Order) -> str:
    return str(stripe_test_client().v1.payment_intents.retrieve(order.payment_intent_id).status)


def payments_sweep() -> None:
    """Beat's payments sweep, run as a worker runs it."""
    tasks.refunds_reconcile()


def customer_cancel(api, order: Order) -> None:
    api.force_authenticate(order.customer)
    response = api.post(f"/api/v1/orders/{order.ref}/cancel")
    assert response.status_code == 200, response.json()


def intent_cancels(order: Order) -> list[str]:
    return list(
        OrderEvent.objects.filter(order=order, kind="payment_intent_cancelled").values_list("note", flat=True)
    )


@pytest.mark.parametrize("canceller", ["supervisor", "retention"])
def test_an_unpaid_order_cancelled_by_a_supervisor_or_the_retention_sweep_has_its_intent_cancelled(
    order, canceller
):
    # given an unpaid order whose intent the customer could still pay at Stripe
    assert intent_status(order) == "requires_payment_method"

    # when a supervisor cancels it (before, that never asked Stripe), or it expires unpaid, and the sweep runs
    if canceller == "supervisor":
        order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    else:
        assert orders_expire_unpaid(before=order.created_at + timedelta(days=30), limit=10) == 1
    payments_sweep()

    # then its intent is cancelled at Stripe, and nothing more is owed
    assert intent_status(order) == "canceled"
    order.refresh_from_db()
    assert (order.status, order.payment_status, order.payment_intent_cancel_due) == (
        "cancelled",
        "requires_payment",
        False,
    )
    assert intent_cancels(order) == ["cancelled"]


def test_a_customer_cancel_whose_task_message_was_lost_has_its_intent_cancelled_by_the_sweep(
    api, order, django_capture_on_commit_callbacks
):
    # given a customer's cancel whose after-commit work never runs: its task message is lost
    with django_capture_on_commit_callbacks(execute=False):
        customer_cancel(api, order)
    assert intent_status(order) == "requires_payment_method"

    # when beat's payments sweep runs
    payments_sweep()

    # then the intent is cancelled at Stripe (before, it stayed payable for good)
    assert intent_status(order) == "canceled"
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is False


def test_an_owed_cancel_stripe_did_not_answer_stays_owed_until_stripe_cancels_the_intent(
    api, order, settings
):
    # given a cancelled unpaid order, and Stripe not answering
    customer_cancel(api, order)
    reachable = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = STRIPE_UNREACHABLE

    # when the task tries (before, the error was swallowed and the task never retried) and the sweep too
    with pytest.raises(UpstreamError):
        payments.payment_intent_cancel(order_id=order.pk)
    payments_sweep()

    # then the cancel is still owed
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is True
    assert intent_cancels(order) == []

    # when Stripe answers again, then the next sweep cancels the intent
    settings.STRIPE_API_BASE = reachable
    payments_sweep()
    assert intent_status(order) == "canceled"
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is False
    assert intent_cancels(order) == ["cancelled"]


def previous_version_cancel(api, order: Order, django_capture_on_commit_callbacks) -> None:
    """A cancel made by the previous version (before orders/0010): it sent the task, never set the flag."""
    with django_capture_on_commit_callbacks(execute=False):
        customer_cancel(api, order)
    Order.objects.filter(pk=order.pk).update(payment_intent_cancel_due=False)


def test_the_task_of_a_cancel_made_by_the_previous_version_cancels_the_intent(
    api, order, django_capture_on_commit_callbacks
):
    # given an unpaid order cancelled by the previous version: its task message, but no owed-cancel flag
    previous_version_cancel(api, order, django_capture_on_commit_callbacks)

    # when this version's worker runs that task (before, it found no flag and ended: the intent stayed
    # payable for good, and the sweep, which looks only at flagged orders, never saw it)
    assert payments.payment_intent_cancel(order_id=order.pk) is True

    # then the intent is cancelled at Stripe, and nothing more is owed
    assert intent_status(order) == "canceled"
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is False
    assert intent_cancels(order) == ["cancelled"]

    # when the task runs again (a redelivered message), then it asks Stripe nothing more
    assert payments.payment_intent_cancel(order_id=order.pk) is True
    assert intent_cancels(order) == ["cancelled"]


def test_a_previous_version_cancel_stripe_did_not_answer_is_owed_and_the_sweep_cancels_its_intent(
    api, order, settings, django_capture_on_commit_callbacks
):
    # given an unpaid order cancelled by the previous version, and Stripe not answering when its task runs
    previous_version_cancel(api, order, django_capture_on_commit_callbacks)
    reachable = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = STRIPE_UNREACHABLE

    # when the task runs, then the cancel is recorded as owed (under the order's lock) and retried
    with pytest.raises(UpstreamError):
        payments.payment_intent_cancel(order_id=order.pk)
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is True

    # when Stripe answers again, then beat's sweep cancels the intent
    settings.STRIPE_API_BASE = reachable
    payments_sweep()
    assert intent_status(order) == "canceled"
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is False
    assert intent_cancels(order) == ["cancelled"]


def test_the_task_of_an_order_that_owes_no_cancel_changes_nothing(api, order):
    # given an order awaiting payment (not cancelled): no cancel of its intent is owed
    # when a stray task for it runs, then it asks Stripe nothing and flags nothing
    assert payments.payment_intent_cancel(order_id=order.pk) is True
    assert intent_status(order) == "requires_payment_method"
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is False
    assert intent_cancels(order) == []


def stripe_refunds(order: Order) -> list[tuple[str, int]]:
    refunds = stripe_test_client().v1.refunds.list(params={"payment_intent": order.payment_intent_id}).data
    return [(str(refund.status), int(refund.amount or 0)) for refund in refunds]


def test_an_intent_paid_before_the_cancel_ends_the_owed_cancel_and_its_payment_is_refunded(
    api, order, django_capture_on_commit_callbacks
):
    # given the customer paid at Stripe, then cancelled before the payment's event arrived
    pay_at_stripe(order)
    customer_cancel(api, order)

    # when the sweep asks Stripe to cancel the intent, which Stripe refuses: it succeeded
    payments_sweep()

    # then nothing more is owed, and the payment is recorded and refunded without waiting for its event
    order.refresh_from_db()
    assert (order.payment_intent_cancel_due, intent_cancels(order)) == (False, ["succeeded"])
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    assert stripe_refunds(order) == [("succeeded", order.total_minor)]

    # when the payment's event arrives late, then it changes nothing and refunds nothing more
    with django_capture_on_commit_callbacks(execute=True):
        late = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_late_payment")
    assert late.json()["outcome"] == "already_applied"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    assert stripe_refunds(order) == [("succeeded", order.total_minor)]


def test_a_payment_whose_event_never_came_pays_the_order_when_the_unpaid_order_would_expire(
    api, order, django_capture_on_commit_callbacks
):
    # given the customer paid at Stripe before the deadline, and its payment_intent.succeeded has not reached
    # the lab (the endpoint was down, Stripe's retries back off)
    pay_at_stripe(order)

    # when the order would expire unpaid, and beat's payments sweep runs
    assert orders_expire_unpaid(before=order.created_at + timedelta(days=30), limit=10) == 0
    payments_sweep()

    # then Stripe's word pays the order, as the event would have (before: it was cancelled on the lab's own
    # record, its photos purged, and the payment refunded)
    order.refresh_from_db()
    assert (order.status, order.payment_status, order.payment_intent_cancel_due) == (
        "paid",
        "succeeded",
        False,
    )
    assert intent_cancels(order) == []
    assert stripe_refunds(order) == []
    assert intent_status(order) == "succeeded"

    # when the payment's event is delivered at last, then it changes nothing
    with django_capture_on_commit_callbacks(execute=True):
        late = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_late_payment")
    assert late.json()["outcome"] == "already_applied"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert OrderEvent.objects.filter(order=order, to_status="paid").count() == 1
    assert stripe_refunds(order) == []


def test_a_payment_made_after_the_unpaid_order_expired_is_refunded_once(
    api, order, django_capture_on_commit_callbacks
):
    # given an unpaid order that expired, its intent's cancel still owed at Stripe, and the customer who pays
    # it all the same before the cancel (the page still open), its event never reaching the lab
    assert orders_expire_unpaid(before=order.created_at + timedelta(days=30), limit=10) == 1
    pay_at_stripe(order)

    # when beat's payments sweep runs twice
    payments_sweep()
    payments_sweep()

    # then the payment is recorded and refunded, once (before, the owed cancel just ended on Stripe's
    # "succeeded": the order stayed cancelled with the money kept, and no refund)
    order.refresh_from_db()
    assert (order.status, order.payment_status, order.payment_intent_cancel_due) == (
        "cancelled",
        "refunded",
        False,
    )
    assert intent_cancels(order) == ["succeeded"]
    assert stripe_refunds(order) == [("succeeded", order.total_minor)]
    kinds = OrderEvent.objects.filter(order=order).values_list("kind", flat=True)
    assert {"payment_succeeded_at_stripe", "refund_decided", "refunded"} <= set(kinds)

    # when the payment's event is delivered at last, then it changes nothing and makes no second refund
    with django_capture_on_commit_callbacks(execute=True):
        late = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_late_payment")
    assert late.json()["outcome"] == "already_applied"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    assert stripe_refunds(order) == [("succeeded", order.total_minor)]


def assert_left_to_a_later_sweep(order: Order) -> None:
    """The unpaid order is as it was: awaiting payment, not cancelled, no cancel of its intent owed."""
    order.refresh_from_db()
    assert (order.status, order.payment_status, order.payment_intent_cancel_due) == (
        "awaiting_payment",
        "requires_payment",
        False,
    )
    assert not OrderEvent.objects.filter(order=order, to_status="cancelled").exists()


def test_an_unpaid_order_does_not_expire_while_stripe_does_not_answer_for_its_intent(order, settings):
    # given an unpaid order past its deadline, and Stripe not answering (the lab cannot tell whether the
    # customer paid)
    settings.STRIPE_API_BASE = STRIPE_UNREACHABLE

    # when the unpaid orders expire, then it is left to the next sweep (before: cancelled on the lab's own
    # record alone)
    assert orders_expire_unpaid(before=order.created_at + timedelta(days=30), limit=10) == 0
    assert_left_to_a_later_sweep(order)


@pytest.mark.parametrize("status", ["processing", "requires_capture"])
def test_an_unpaid_order_does_not_expire_while_its_money_is_on_its_way_at_stripe(
    order, settings, stripe_api, status
):
    # given an unpaid order past its deadline whose PaymentIntent Stripe calls `processing` (a bank debit on
    # its way) or `requires_capture` (authorised, to be captured): the customer's money may still arrive
    proxy = IntentStatusProxy(upstream=stripe_api.url, status=status).start()
    settings.STRIPE_API_BASE = proxy.url
    try:
        # when the unpaid orders expire
        expired = orders_expire_unpaid(before=order.created_at + timedelta(days=30), limit=10)
    finally:
        proxy.stop()
        settings.STRIPE_API_BASE = stripe_api.url

    # then it is left to a later sweep: not cancelled, its intent not cancelled at Stripe
    assert expired == 0
    assert_left_to_a_later_sweep(order)
    assert intent_status(order) != "canceled"


def test_a_payment_of_another_amount_found_at_stripe_is_refunded_and_the_order_expires(order):
    # given an unpaid order whose intent was changed at Stripe to another amount and paid, its event late
    client = stripe_test_client()
    client.v1.payment_intents.update(order.payment_intent_id, params={"amount": order.total_minor - 1})
    pay_at_stripe(order)

    # when the order would expire unpaid, and beat's payments sweep runs
    assert orders_expire_unpaid(before=order.created_at + timedelta(days=30), limit=10) == 1
    payments_sweep()

    # then the amount is compared as the event's is: the payment is refunded, and the order never paid
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    assert not OrderEvent.objects.filter(order=order, to_status="paid").exists()
    assert OrderEvent.objects.filter(order=order, kind="payment_amount_mismatch").count() == 1
    assert stripe_refunds(order) == [("succeeded", order.total_minor - 1)]


def test_an_order_paid_a_minute_before_its_deadline_is_not_cancelled_by_the_retention_sweep(
    api, order, settings
):
    # given an order placed 7 days less 30 seconds ago, paid at Stripe now, its event a few minutes late
    settings.RETENTION_UNPAID_DAYS = 7
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(days=7, seconds=-30))
    pay_at_stripe(order)

    # when the hourly retention sweep runs a minute later, and then the event comes
    counts = retention_sweep(now=timezone.now() + timedelta(minutes=1))
    late = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_late")

    # then the order is paid, its photos kept, nothing refunded (before: cancelled, its photos purged, the
    # intent's cancel refunded the payment, and the late event answered `refund_after_cancel`)
    assert (counts["orders_expired"], counts[RULE_UNPAID], late.json()["outcome"]) == (
        0,
        0,
        "already_applied",
    )
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert set(Asset.objects.filter(items__order=order).values_list("status", flat=True)) == {"ready"}
    assert stripe_refunds(order) == []


def notifications_sweep() -> None:
    """Beat's notifications sweep, run as a worker runs it, once the order events are old enough for it (it
    leaves those younger than NOTIFY_SWEEP_SECONDS to their own task)."""
    OrderEvent.objects.update(created_at=F("created_at") - timedelta(minutes=2))
    notify_tasks.notifications_sweep()


def test_the_customer_of_a_payment_found_after_the_order_expired_is_told_of_its_refund_once(
    api, order, django_capture_on_commit_callbacks
):
    # given an order that expired unpaid, whose customer pays at Stripe before its intent's cancel, and whose
    # payment_intent.succeeded never reaches the lab
    with django_capture_on_commit_callbacks(execute=True):
        assert orders_expire_unpaid(before=order.created_at + timedelta(days=30), limit=10) == 1
    pay_at_stripe(order)

    # when its cancellation e-mail goes out while the lab knows of no payment
    notify_tasks.order_status_changed(order_id=order.pk, status="cancelled")

    # then it does not deny the payment (before: "No payment was taken for this order." to a customer who
    # had been charged), and says a payment made all the same is refunded
    [cancelled] = mail.outbox
    assert cancelled.subject == f"Order {order.ref} is cancelled"
    assert "No payment was taken" not in cancelled.body
    assert "payment is refunded automatically, and we write to you when it is" in " ".join(
        cancelled.body.split()
    )

    # when beat's payments sweep finds the payment and refunds it, and the notifications sweep runs (each
    # twice)
    payments_sweep()
    payments_sweep()
    notifications_sweep()
    notifications_sweep()

    # then the customer is told of the refund, once (before, no e-mail: a refund is no status change)
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    refund_subject = f"Your payment for order {order.ref} is refunded"
    refunds = [message for message in mail.outbox if message.subject == refund_subject]
    assert [message.to for message in refunds] == [[order.customer.email]]
    assert "We have\nrefunded it to your card." in refunds[0].body
    assert [message.subject for message in mail.outbox].count(cancelled.subject) == 1
    assert not any("No payment was taken" in message.body for message in mail.outbox)

    # when the payment's event arrives at last, and the sweep runs again, then nothing more is mailed
    with django_capture_on_commit_callbacks(execute=True):
        late = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_late_payment")
    assert late.json()["outcome"] == "already_applied"
    notifications_sweep()
    assert [message.subject for message in mail.outbox].count(refund_subject) == 1


@pytest.mark.parametrize("then", ["cancelled", "paid"])
def test_an_order_that_no_longer_awaits_payment_is_answered_without_its_client_secret(api, order, then):
    # given an order whose secret the customer was given while it awaited payment
    api.force_authenticate(order.customer)
    before = api.get(f"/api/v1/orders/{order.ref}").json()["payment"]
    assert before["client_secret"] == order.payment_client_secret != ""

    # when it is cancelled, or paid
    if then == "cancelled":
        customer_cancel(api, order)
    else:
        pay_at_stripe(order)
        assert deliver(api, "payment_intent.succeeded", succeeded(order)).json()["outcome"] == "paid"

    # then its secret is never answered again
    api.force_authenticate(order.customer)
    after = api.get(f"/api/v1/orders/{order.ref}")
    assert after.status_code == 200
    assert after.json()["payment"] == {
        "status": "requires_payment" if then == "cancelled" else "succeeded",
        "payment_intent": order.payment_intent_id,
        "client_secret": "",
    }
