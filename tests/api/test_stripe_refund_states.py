"""Refunds are done when Stripe says they succeeded: pending ones are asked about again, failed ones remade.

The lab's real Stripe SDK talks over HTTP to localstripe through a proxy that answers refunds in the status
each test sets (tests/support/stripe_proxy.py): localstripe itself makes every refund `succeeded` at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from lab.orders import payment_refunds, stripe_events
from lab.orders.models import Order, OrderEvent
from lab.production.cancellation import order_cancel_in_production
from lab.staff.board import board_snapshot
from tests.builders import person
from tests.support.stripe_proxy import RefundStatusProxy
from tests.support.stripe_server import LocalStripe
from tests.support.stripe_webhooks import (
    deliver,
    order_placed,
    pay_at_stripe,
    refunds_made,
    stripe_test_client,
    succeeded,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def stripe_proxy(settings, localstripe: LocalStripe) -> Iterator[RefundStatusProxy]:
    proxy = RefundStatusProxy(upstream=localstripe.url).start()
    settings.STRIPE_API_BASE = proxy.url
    yield proxy
    proxy.stop()


@pytest.fixture
def paid(api, stripe_proxy) -> Order:
    """An order the customer paid at Stripe, its payment_intent.succeeded applied."""
    order = order_placed(api)
    pay_at_stripe(order)
    assert (
        deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_paid").json()["outcome"]
        == "paid"
    )
    order.refresh_from_db()
    return order


def cancel(api, order: Order) -> Order:
    api.force_authenticate(order.customer)
    response = api.post(f"/api/v1/orders/{order.ref}/cancel")
    api.force_authenticate(None)
    assert response.status_code == 200, response.json()
    order.refresh_from_db()
    return order


def refund_ids(order: Order) -> list[str]:
    refunds = stripe_test_client().v1.refunds.list(params={"payment_intent": order.payment_intent_id}).data
    return [refund.id for refund in refunds]


def payment_events(order: Order) -> list[str]:
    return list(
        OrderEvent.objects.filter(order=order).exclude(kind="status_changed").values_list("kind", flat=True)
    )


def test_a_pending_refund_keeps_the_order_refund_pending_until_the_sweep_finds_it_succeeded(
    api, paid, stripe_proxy
):
    # given Stripe answers the cancel's refund `pending` (before, the order was called refunded at once)
    stripe_proxy.default_status = "pending"
    tag = {"lab_refund": f"order-{paid.ref}-refund"}

    # when the customer cancels, and Stripe's charge.refunded for that refund comes in while it is pending
    order = cancel(api, paid)
    charge_refunded = deliver(
        api,
        "charge.refunded",
        {"id": "ch_1", "object": "charge", "payment_intent": order.payment_intent_id, "refunded": True},
        event_id="evt_charge_refunded",
    )

    # then the order waits for Stripe, and the sweep asks again without making another refund
    assert charge_refunded.json()["outcome"] == "refund_confirming"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refund_pending")
    assert payment_refunds.refunds_reconcile() == 0
    order.refresh_from_db()
    assert order.payment_status == "refund_pending"
    assert refunds_made(order) == [("pending", tag)]

    # when Stripe has made the refund
    stripe_proxy.default_status = None

    # then the next sweep finds it succeeded: the order is refunded, with the one refund
    assert payment_refunds.refunds_reconcile() == 1
    order.refresh_from_db()
    assert order.payment_status == "refunded"
    assert refunds_made(order) == [("succeeded", tag)]
    assert payment_events(order) == ["created", "refund_decided", "refunded"]
    assert [key for _, key in stripe_proxy.refunds_created] == [f"order-{order.ref}-refund"]


def test_a_refund_that_failed_is_made_again_under_a_key_of_its_own(api, paid, stripe_proxy):
    # given the cancel's refund is pending at Stripe
    stripe_proxy.default_status = "pending"
    order = cancel(api, paid)
    assert order.payment_status == "refund_pending"
    (first_refund,) = refund_ids(order)

    # when Stripe fails it, and the sweep runs
    stripe_proxy.statuses[first_refund] = "failed"
    stripe_proxy.default_status = None
    refunded = payment_refunds.refunds_reconcile()

    # then a second refund is made, with a new idempotency key (Stripe would answer the first key with the
    # failed refund), and once it succeeded the order is refunded
    assert refunded == 1
    order.refresh_from_db()
    assert order.payment_status == "refunded"
    tag = {"lab_refund": f"order-{order.ref}-refund"}
    assert refunds_made(order) == [("failed", tag), ("succeeded", tag)]
    assert [key for _, key in stripe_proxy.refunds_created] == [
        f"order-{order.ref}-refund",
        f"order-{order.ref}-refund-1",
    ]
    assert payment_refunds.refunds_reconcile() == 0
    assert len(refunds_made(order)) == 2


@pytest.mark.parametrize("undone", ["failed", "canceled"])
def test_refunds_that_fail_every_time_stop_at_three_and_ask_a_person(api, paid, stripe_proxy, undone):
    # given every refund Stripe makes for the order ends failed (a closed card) or canceled
    stripe_proxy.default_status = undone

    # when the customer cancels and the sweep runs again and again
    order = cancel(api, paid)
    for _ in range(5):
        assert payment_refunds.refunds_reconcile() == 0

    # then three refunds were made, each under a key of its own, and then a person is asked, once; the order
    # stays refund_pending (the money is still owed), with no fourth refund made every minute
    tag = f"order-{order.ref}-refund"
    assert [key for _, key in stripe_proxy.refunds_created] == [tag, f"{tag}-1", f"{tag}-2"]
    assert [status for status, _ in refunds_made(order)] == [undone] * 3
    asked = OrderEvent.objects.filter(order=order, kind="refund_needs_person")
    assert list(asked.values_list("note", flat=True)) == ["3 refunds failed at Stripe"]
    order.refresh_from_db()
    assert order.payment_status == "refund_pending"


def refusing_refunds(monkeypatch, proxy: RefundStatusProxy, error: dict[str, str]) -> list[str]:
    """Make the proxy answer every `POST /v1/refunds` 400 with Stripe's `error` (no refund is made); the
    path of each request refused, in order."""
    refused: list[str] = []

    def refusal(method: str, path: str, body: bytes) -> dict[str, Any] | None:
        if method != "POST" or path.split("?")[0] != "/v1/refunds":
            return None
        refused.append(path)
        return {"error": {"message": "Stripe refused the refund.", **error}}

    monkeypatch.setattr(proxy, "refusal", refusal)
    return refused


def test_a_refund_stripe_refuses_for_good_is_asked_for_three_times_then_left_to_a_person(
    api, paid, stripe_proxy, monkeypatch
):
    # given Stripe refuses every refund of the payment for good: the charge is disputed (400, no refund made)
    refused = refusing_refunds(
        monkeypatch, stripe_proxy, {"type": "invalid_request_error", "code": "charge_disputed"}
    )

    # when the customer cancels, and the sweep runs again and again
    order = cancel(api, paid)
    for _ in range(5):
        assert payment_refunds.refunds_reconcile() == 0

    # then the refund was asked for three times in all, each refusal on the timeline, and then a person is
    # asked, once (before, every refusal read as "Stripe not answering": asked for every minute, for ever,
    # with no refund_needs_person, since Stripe made no failed refund to count)
    assert len(refused) == 3
    assert OrderEvent.objects.filter(order=order, kind="refund_refused").count() == 3
    asked = OrderEvent.objects.filter(order=order, kind="refund_needs_person")
    assert list(asked.values_list("note", flat=True)) == ["3 refunds failed at Stripe (3 refused)"]
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refund_pending")
    assert refunds_made(order) == []

    # and the order is on the supervisor's board, with the customer still owed the money
    assert [owed.ref for owed in board_snapshot().refunds_need_person] == [order.ref]


def test_an_idempotency_clash_is_no_refusal_and_asks_no_person(api, paid, stripe_proxy, monkeypatch):
    # given Stripe answers each refund with an idempotency error (another request under the key is running)
    refused = refusing_refunds(monkeypatch, stripe_proxy, {"type": "idempotency_error"})

    # when the customer cancels, and the sweep runs again and again
    order = cancel(api, paid)
    for _ in range(5):
        assert payment_refunds.refunds_reconcile() == 0

    # then the refund is asked for again at every run, and nobody is asked yet
    assert len(refused) == 6
    assert not OrderEvent.objects.filter(order=order, kind__in=["refund_refused", "refund_needs_person"])
    assert board_snapshot().refunds_need_person == []


def test_a_full_refund_made_in_stripes_dashboard_settles_a_decided_refund(api, paid, stripe_proxy, settings):
    # given a cancel whose refund could not be asked for (Stripe not answering), left refund_pending
    settings.STRIPE_API_BASE = "http://127.0.0.1:1"
    order = cancel(api, paid)
    settings.STRIPE_API_BASE = stripe_proxy.url
    assert (order.payment_status, refunds_made(order)) == ("refund_pending", [])

    # when a person refunds the whole payment in Stripe's dashboard (no tag of ours), and the sweep runs
    stripe_test_client().v1.refunds.create(params={"payment_intent": order.payment_intent_id})
    assert payment_refunds.refunds_reconcile() == 1

    # then the order is refunded, on the timeline as refunded at Stripe, and no refund of ours was made on top
    # (before, the sweep asked Stripe for one every run, which Stripe refused: refund_pending for ever)
    order.refresh_from_db()
    assert order.payment_status == "refunded"
    assert payment_events(order)[-1] == "refunded_at_stripe"
    assert refunds_made(order) == [("succeeded", {})]


def test_a_refund_that_fails_after_the_order_was_refunded_puts_it_back_and_is_made_again(
    api, paid, stripe_proxy, django_capture_on_commit_callbacks
):
    # given a cancelled order refunded at Stripe (localstripe answers `succeeded`)
    order = cancel(api, paid)
    assert order.payment_status == "refunded"
    (refund_id,) = refund_ids(order)

    # when Stripe fails that refund later, and says so in a signed refund.failed
    stripe_proxy.statuses[refund_id] = "failed"
    failed_refund = {
        "id": refund_id,
        "object": "refund",
        "payment_intent": order.payment_intent_id,
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
        "metadata": {"lab_refund": f"order-{order.ref}-refund"},
    }
    with django_capture_on_commit_callbacks() as after_commit:
        response = deliver(api, "refund.failed", failed_refund, event_id="evt_refund_failed")

    # then the order is refund_pending again, on its timeline (before, `refunded` was final and the money
    # never went back to the customer)
    assert (response.status_code, response.json()["outcome"]) == (200, "refund_reissued")
    order.refresh_from_db()
    assert order.payment_status == "refund_pending"
    assert OrderEvent.objects.get(order=order, kind="refund_failed").note == (
        f"{refund_id} failed expired_or_canceled_card"
    )

    # when the work it sent after its commit runs
    for callback in after_commit:
        callback()

    # then a new refund is made and the order is refunded again
    order.refresh_from_db()
    assert order.payment_status == "refunded"
    tag = {"lab_refund": f"order-{order.ref}-refund"}
    assert refunds_made(order) == [("failed", tag), ("succeeded", tag)]
    assert payment_events(order) == ["created", "refund_decided", "refunded", "refund_failed", "refunded"]


def test_a_dashboard_refund_that_failed_gives_the_held_order_its_payment_back(api, paid, stripe_proxy):
    # given a refund made in Stripe's dashboard, which held the paid order for a supervisor
    refund = stripe_test_client().v1.refunds.create(params={"payment_intent": paid.payment_intent_id})
    refunded = deliver(
        api,
        "charge.refunded",
        {"id": "ch_1", "object": "charge", "payment_intent": paid.payment_intent_id, "refunded": True},
        event_id="evt_dashboard_refund",
    )
    assert refunded.json()["outcome"] == "held_for_payment"

    # when that refund fails at Stripe
    stripe_proxy.statuses[str(refund.id)] = "failed"
    response = deliver(
        api,
        "charge.refund.updated",
        {
            "id": refund.id,
            "object": "refund",
            "payment_intent": paid.payment_intent_id,
            "status": "failed",
            "metadata": {},
        },
        event_id="evt_dashboard_refund_failed",
    )

    # then the money is the lab's again: the payment is `succeeded`, the order still held, and the hold and
    # the timeline say why
    assert response.json()["outcome"] == "payment_captured_again"
    order = Order.objects.get(pk=paid.pk)
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")
    assert order.hold_message.startswith(
        "A refund made at Stripe failed: the payment is captured again. The payment was refunded at Stripe"
    )
    assert OrderEvent.objects.get(order=order, kind="refund_failed_at_stripe").note == f"{refund.id} failed"
    assert payment_refunds.refunds_reconcile() == 0
    assert len(stripe_proxy.refunds_created) == 1  # the dashboard's; none of the lab's


def test_a_dashboard_refund_and_its_failure_before_the_payment_s_event_leave_the_order_paid_and_held(
    api, stripe_proxy
):
    # given an order the customer paid, refunded in Stripe's dashboard, and that refund failed, all before
    # the payment's own event arrived
    order = order_placed(api)
    pay_at_stripe(order)
    refund = stripe_test_client().v1.refunds.create(params={"payment_intent": order.payment_intent_id})
    stripe_proxy.statuses[str(refund.id)] = "failed"
    charge = {"id": "ch_1", "object": "charge", "payment_intent": order.payment_intent_id, "refunded": True}
    failed = {
        "id": refund.id,
        "object": "refund",
        "payment_intent": order.payment_intent_id,
        "status": "failed",
    }

    # when the events arrive in that order, the payment's last
    answered = [
        deliver(api, "charge.refunded", charge, event_id="evt_refund").json()["outcome"],
        deliver(api, "refund.failed", failed, event_id="evt_refund_failed").json()["outcome"],
        deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_paid").json()["outcome"],
    ]

    # then the money is captured: the order is paid and held for a person, never left awaiting payment
    # (Stripe, asked at the first event, says the refund failed: the order is paid and held then)
    assert answered == ["held_for_payment", "refund_failure_noted", "already_applied"]
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")
    assert order.hold_message == (
        "A refund made at Stripe failed: a supervisor decides whether to cancel the order or go on."
    )


def test_a_dashboard_partial_refund_that_fails_after_the_cancel_s_refund_is_refunded_by_one_more(
    api, paid, stripe_proxy
):
    # given 100 refunded in Stripe's dashboard, still pending there, which held the paid order
    dashboard = stripe_test_client().v1.refunds.create(
        params={"payment_intent": paid.payment_intent_id, "amount": 100}
    )
    stripe_proxy.statuses[str(dashboard.id)] = "pending"
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": paid.payment_intent_id,
        "amount": paid.total_minor,
        "amount_refunded": 100,
        "refunded": False,
    }
    held = deliver(api, "charge.refunded", charge, event_id="evt_dashboard_partial")
    assert held.json()["outcome"] == "held_for_payment"

    # when a supervisor cancels the order: the lab refunds what the dashboard's refund leaves
    order = order_cancel_in_production(order_ref=paid.ref, actor=person("supervisor"))

    # then the order waits while the dashboard's refund may still fail (before, it was refunded at once)
    assert (order.status, order.payment_status) == ("cancelled", "refund_pending")
    tag = f"order-{order.ref}-refund"
    ours = [key for _, key in stripe_proxy.refunds_created if key.startswith(tag)]
    assert ours == [tag]

    # when the dashboard's refund fails, Stripe says so, and the sweep runs
    stripe_proxy.statuses[str(dashboard.id)] = "failed"
    failed = {
        "id": dashboard.id,
        "object": "refund",
        "payment_intent": order.payment_intent_id,
        "status": "failed",
        "metadata": {},
    }
    assert deliver(api, "refund.failed", failed, event_id="evt_dashboard_failed").json()["outcome"] == (
        "refund_rechecking"
    )
    assert payment_refunds.refunds_reconcile() == 1

    # then one more refund of the lab's refunds the shortfall: what went back adds up to what was paid
    # (before, the order stayed `refunded` and the customer was 100 short)
    order.refresh_from_db()
    assert order.payment_status == "refunded"
    ours = [key for _, key in stripe_proxy.refunds_created if key.startswith(tag)]
    assert ours == [tag, f"{tag}-1"]
    refunds = stripe_test_client().v1.refunds.list(params={"payment_intent": order.payment_intent_id}).data
    assert len(refunds) == 3
    assert sum(int(refund.amount or 0) for refund in refunds if refund.status == "succeeded") == (
        order.total_minor
    )
    assert sorted(int(refund.amount or 0) for refund in refunds) == [100, 100, order.total_minor - 100]
    assert payment_refunds.refunds_reconcile() == 0
    assert len(refund_ids(order)) == 3


def test_a_payment_of_the_wrong_amount_is_refunded(api, stripe_proxy, django_capture_on_commit_callbacks):
    # given an order the customer paid at Stripe
    order = order_placed(api)
    pay_at_stripe(order)

    # when its payment_intent.succeeded says an amount other than the order's
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(api, "payment_intent.succeeded", succeeded(order, amount=1), event_id="evt_wrong")

    # then the order is not paid, and the money is refunded (before, it was kept with nothing owed)
    assert response.json()["outcome"] == "amount_mismatch"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "refunded")
    assert OrderEvent.objects.get(order=order, kind="payment_amount_mismatch").note == (
        f"1 received, {order.total_minor} due"
    )
    assert [status for status, _ in refunds_made(order)] == ["succeeded"]


def dashboard_charge_refunded(api: APIClient, order: Order, *, event_id: str) -> str:
    """Stripe's charge.refunded for a full refund made in its dashboard, delivered: its outcome."""
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": order.payment_intent_id,
        "amount": order.total_minor,
        "amount_refunded": order.total_minor,
        "refunded": True,
    }
    return str(deliver(api, "charge.refunded", charge, event_id=event_id).json()["outcome"])


def dashboard_refund_failed(api: APIClient, order: Order, refund_id: str, *, event_id: str) -> str:
    """Stripe's refund.failed for a refund made in its dashboard (no tag of ours), delivered: its outcome."""
    failed = {
        "id": refund_id,
        "object": "refund",
        "payment_intent": order.payment_intent_id,
        "status": "failed",
        "metadata": {},
    }
    return str(deliver(api, "refund.failed", failed, event_id=event_id).json()["outcome"])


def test_a_failed_dashboard_refund_whose_charge_refunded_comes_late_leaves_the_payment_to_refund(
    api, paid, stripe_proxy
):
    # given a full refund made in Stripe's dashboard that failed; its refund.failed came in (the payment was
    # still `succeeded`: only noted), and its charge.refunded, whose first delivery failed, comes after it
    dashboard = stripe_test_client().v1.refunds.create(params={"payment_intent": paid.payment_intent_id})
    stripe_proxy.statuses[str(dashboard.id)] = "failed"
    noted = dashboard_refund_failed(api, paid, str(dashboard.id), event_id="evt_failed")

    # when the late charge.refunded is delivered
    late = dashboard_charge_refunded(api, paid, event_id="evt_refunded_late")

    # then Stripe is asked: nothing went back, so the payment is still captured; the order is held all the
    # same (a person refunded it at Stripe: a supervisor decides). Before, the event's word made the payment
    # `refunded`, and the supervisor's cancel refunded nothing: the lab kept the money
    assert (noted, late) == ("refund_failure_noted", "held_for_payment")
    order = Order.objects.get(pk=paid.pk)
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")

    # when a supervisor cancels the order
    order = order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    payment_refunds.refunds_reconcile()

    # then the lab refunds the payment: the customer gets their money back, once
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    tag = {"lab_refund": f"order-{order.ref}-refund"}
    assert refunds_made(order) == [("failed", {}), ("succeeded", tag)]


def test_a_failed_dashboard_refund_s_late_event_does_not_undo_a_second_refund_that_succeeded(
    api, paid, stripe_proxy
):
    # given a full refund made in Stripe's dashboard, still pending, whose charge.refunded held the order
    first = stripe_test_client().v1.refunds.create(params={"payment_intent": paid.payment_intent_id})
    stripe_proxy.statuses[str(first.id)] = "pending"
    assert dashboard_charge_refunded(api, paid, event_id="evt_first") == "held_for_payment"

    # when it fails, a person refunds the payment again in the dashboard, that one succeeds (its
    # charge.refunded changes nothing: the payment is `refunded`), and the first one's refund.failed, whose
    # delivery failed before, comes last
    stripe_proxy.statuses[str(first.id)] = "failed"
    stripe_test_client().v1.refunds.create(params={"payment_intent": paid.payment_intent_id})
    second = dashboard_charge_refunded(api, paid, event_id="evt_second")
    late = dashboard_refund_failed(api, paid, str(first.id), event_id="evt_first_failed")

    # then Stripe is asked: all of the payment went back, so it stays `refunded` and the order held (before,
    # the failed refund's event made the payment `succeeded` again: the hold could be released and the fully
    # refunded order printed)
    assert (second, late) == ("already_applied", "refund_failure_noted")
    order = Order.objects.get(pk=paid.pk)
    assert (order.status, order.payment_status) == ("on_hold", "refunded")
    assert order.hold_message.startswith("The payment was refunded at Stripe")
    assert OrderEvent.objects.get(order=order, kind="refund_failed_at_stripe").note == f"{first.id} failed"

    # and a supervisor's cancel refunds nothing more
    order = order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    assert payment_refunds.refunds_reconcile() == 0
    assert refunds_made(order) == [("failed", {}), ("succeeded", {})]


@pytest.mark.django_db(transaction=True)
def test_a_dashboard_refund_s_event_reads_a_stalled_stripe_without_holding_the_order_s_lock(
    api, paid, stripe_proxy, settings, monkeypatch
):
    # given Stripe takes the connection for its refunds and never answers (a one-second timeout)
    settings.STRIPE_TIMEOUT_SECONDS = 1
    stalled, released = threading.Event(), threading.Event()

    def stall(method: str, path: str, body: bytes) -> dict[str, Any] | None:
        if method == "GET" and path.split("?")[0] == "/v1/refunds":
            stalled.set()
            released.wait(30)
        return None

    monkeypatch.setattr(stripe_proxy, "refusal", stall)
    lock_tries: list[str] = []

    def lock_the_order_while_stripe_stalls() -> None:
        # another session (a customer's or supervisor's cancel) takes the order's row lock mid-stall
        try:
            if not stalled.wait(10):
                lock_tries.append("stripe never asked")
                return
            try:
                with transaction.atomic():
                    Order.objects.select_for_update(nowait=True).get(pk=paid.pk)
                lock_tries.append("taken")
            except DatabaseError:
                lock_tries.append("held by the webhook")
        finally:
            connection.close()

    other_session = threading.Thread(target=lock_the_order_while_stripe_stalls)
    other_session.start()

    # when Stripe's charge.refunded for a refund made in its dashboard comes in
    try:
        started = time.monotonic()
        outcome = dashboard_charge_refunded(api, paid, event_id="evt_refunded_stalled")
        took = time.monotonic() - started
    finally:
        released.set()
        other_session.join(15)

    # then Stripe was read before the order's lock was taken (before, under it: the cancel waited for the
    # SDK's three tries), once, without retries: the event is answered within two timeouts (it took ~3.5 s
    # before), and its own word stands as Stripe could not be read
    assert lock_tries == ["taken"]
    assert took < 2 * settings.STRIPE_TIMEOUT_SECONDS, took
    assert outcome == "held_for_payment"
    order = Order.objects.get(pk=paid.pk)
    assert (order.status, order.payment_status) == ("on_hold", "refunded")


@pytest.mark.django_db(transaction=True)
def test_a_read_of_stripe_overtaken_by_another_event_of_the_payment_is_made_again(
    api, paid, stripe_proxy, monkeypatch
):
    # given a full refund made in Stripe's dashboard, pending
    first = stripe_test_client().v1.refunds.create(params={"payment_intent": paid.payment_intent_id})
    stripe_proxy.statuses[str(first.id)] = "pending"
    rewrite = stripe_proxy.rewrite
    overtaken: list[str] = []
    lists_read: list[int] = []

    def then_it_fails(answer: Any) -> Any:
        answer = rewrite(answer)
        if isinstance(answer, dict) and answer.get("object") == "list":
            lists_read.append(len(answer["data"]))
        if isinstance(answer, dict) and answer.get("object") == "list" and not overtaken:
            # Stripe has answered the charge.refunded's read (the refund pending: all of it taken back);
            # before that answer is applied the refund fails, and its refund.failed is applied first
            overtaken.append("failing")
            stripe_proxy.statuses[str(first.id)] = "failed"
            failed = {
                "id": str(first.id),
                "object": "refund",
                "payment_intent": paid.payment_intent_id,
                "status": "failed",
                "metadata": {},
            }
            try:
                event = {"id": "evt_failed_meanwhile", "type": "refund.failed", "data": {"object": failed}}
                overtaken.append(stripe_events.webhook_event_handle(event=event))
            finally:
                connection.close()
        return answer

    monkeypatch.setattr(stripe_proxy, "rewrite", then_it_fails)

    # when the charge.refunded of the refund is delivered
    outcome = dashboard_charge_refunded(api, paid, event_id="evt_refunded_overtaken")

    # then its read, older than the refund.failed applied meanwhile, is made again: nothing went back, the
    # payment is still captured (a cancel refunds it) and the order held for a person. Without the second
    # read the older one made the payment `refunded`, and a supervisor's cancel refunded nothing
    assert overtaken == ["failing", "refund_failure_noted"]
    assert outcome == "held_for_payment"
    order = Order.objects.get(pk=paid.pk)
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")
    assert lists_read == [1, 1, 1]  # the charge.refunded's read, the refund.failed's, the read made again
