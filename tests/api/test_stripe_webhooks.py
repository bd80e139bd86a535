"""Stripe webhooks: real signatures, replays, forgeries, stale and out-of-order events; refunds on cancel."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import stripe
from django.conf import settings
from django.db import IntegrityError

from lab.customer_data import retention_rules, unpaid_expiry
from lab.customer_data.unpaid_expiry import orders_expire_unpaid
from lab.lib.errors import Conflict, PermissionDenied
from lab.orders import stripe_events
from lab.orders.models import Order, OrderEvent, StripeEvent
from lab.production import routing
from lab.production.cancellation import order_cancel_in_production
from lab.production.holds import order_hold, order_release_hold
from tests.builders import person
from tests.support.clock import host_clock_off
from tests.support.stripe_server import signed_event
from tests.support.stripe_webhooks import (
    deliver,
    order_placed,
    pay_at_stripe,
    refunds_made,
    stripe_test_client,
    succeeded,
)

pytestmark = pytest.mark.django_db
SKEW = timedelta(minutes=10)  # twice the signature's tolerance


@pytest.fixture
def order(api, stripe_api) -> Order:
    return order_placed(api)


def test_signed_success_marks_paid_once_and_replay_is_harmless(api, order):
    first = deliver(api, "payment_intent.succeeded", succeeded(order))
    replay = deliver(api, "payment_intent.succeeded", succeeded(order))
    second_id = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_2")

    assert (first.status_code, first.json()["outcome"]) == (200, "paid")
    assert (replay.status_code, replay.json()["outcome"]) == (200, "duplicate")
    assert second_id.json()["outcome"] == "already_applied"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert OrderEvent.objects.filter(order=order, to_status="paid").count() == 1


def test_an_integrity_error_while_applying_an_event_is_not_answered_as_a_duplicate(api, order, monkeypatch):
    # given applying the payment fails on a database constraint that is not the event's own id (a fault
    # injected into the handler: no such constraint is known to fail today)
    def constraint_failed(**kwargs):
        raise IntegrityError("some other row's unique constraint")

    monkeypatch.setattr(stripe_events, "payment_succeeded", constraint_failed)

    # when Stripe delivers the payment, then the error is not acknowledged as a replay (Stripe would never
    # deliver it again): the request fails, so Stripe retries, and nothing of it was recorded
    with pytest.raises(IntegrityError):
        deliver(api, "payment_intent.succeeded", succeeded(order))
    assert not StripeEvent.objects.exists()

    # and Stripe's retry, once the fault is gone, applies it
    monkeypatch.undo()
    retry = deliver(api, "payment_intent.succeeded", succeeded(order))
    assert (retry.status_code, retry.json()["outcome"]) == (200, "paid")


@pytest.mark.parametrize("tamper", ["wrong_secret", "stale", "no_header", "body_changed"])
def test_forged_or_stale_payloads_are_refused_and_change_nothing(api, order, tamper):
    if tamper == "wrong_secret":
        response = deliver(api, "payment_intent.succeeded", succeeded(order), secret="whsec_attacker")
    elif tamper == "stale":
        response = deliver(
            api, "payment_intent.succeeded", succeeded(order), timestamp=int(time.time()) - 3600
        )
    else:
        payload, header = signed_event(
            event_type="payment_intent.succeeded",
            data_object=succeeded(order),
            secret=settings.STRIPE_WEBHOOK_SECRET,
            event_id="evt_x",
        )
        if tamper == "body_changed":
            payload = payload.replace(b'"amount": ', b'"amount": 1')
        extra = {} if tamper == "no_header" else {"HTTP_STRIPE_SIGNATURE": header}
        response = api.post("/api/v1/webhooks/stripe", payload, content_type="application/json", **extra)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_signature")
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "requires_payment")
    assert StripeEvent.objects.count() == 0


@pytest.mark.parametrize("header", ["t=1,v1=\xe9", "t=1,v1=\u00fc"], ids=["e-acute", "u-umlaut"])
def test_a_signature_header_that_is_not_ascii_is_refused_as_a_400(api, order, header):
    """Stripe's check compares the header's signature with hmac.compare_digest, which takes ASCII text only:
    a non-ASCII byte in the header (WSGI hands it over as Latin-1) was a TypeError, and a 500."""
    payload, _header = signed_event(
        event_type="payment_intent.succeeded",
        data_object=succeeded(order),
        secret=settings.STRIPE_WEBHOOK_SECRET,
        event_id="evt_x",
    )

    response = api.post(
        "/api/v1/webhooks/stripe", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_signature")
    assert StripeEvent.objects.count() == 0


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_web_host_whose_clock_is_off_judges_a_signature_s_age_on_the_database_s_clock(
    api, order, monkeypatch, offset
):
    # given a genuine event Stripe signs now, and a replay of one it signed 12 minutes ago (tolerance: 5 min)
    now = int(time.time())
    stale = now - 12 * 60

    # when a web host whose clock is 10 minutes off receives them (before: one ahead refused the genuine
    # event as stale, and one behind took the replay for fresh)
    with host_clock_off(offset, monkeypatch):
        old = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_old", timestamp=stale)
        genuine = deliver(api, "payment_intent.succeeded", succeeded(order), timestamp=now)

    # then the replay is refused and the genuine event applied
    assert (old.status_code, old.json()["code"]) == (400, "invalid_signature")
    assert (genuine.status_code, genuine.json()["outcome"]) == (200, "paid")
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("paid", "succeeded")


def test_wrong_amount_does_not_mark_paid(api, order):
    response = deliver(api, "payment_intent.succeeded", succeeded(order, amount=1))

    assert response.json()["outcome"] == "amount_mismatch"
    order.refresh_from_db()
    assert order.status == "awaiting_payment"


def test_a_payment_in_another_currency_does_not_mark_paid(api, order):
    # given an order priced in its own currency
    other = "jpy" if order.currency.lower() != "jpy" else "usd"

    # when Stripe says the same number was received in another currency (before, only the number was
    # compared: 1,200 yen paid an order of 12.00 in euros)
    response = deliver(api, "payment_intent.succeeded", succeeded(order, currency=other))

    # then the order is not paid
    assert response.json()["outcome"] == "amount_mismatch"
    order.refresh_from_db()
    assert order.status == "awaiting_payment"
    assert OrderEvent.objects.get(order=order, kind="payment_amount_mismatch").note == (
        f"{order.total_minor} {other} received, {order.total_minor} {order.currency.lower()} due"
    )


def test_failure_then_success_and_out_of_order_failure_is_stale(api, order):
    failed = {
        "id": order.payment_intent_id,
        "object": "payment_intent",
        "last_payment_error": {"code": "card_declined"},
    }

    assert (
        deliver(api, "payment_intent.payment_failed", failed, event_id="e1").json()["outcome"]
        == "payment_failed"
    )
    assert (
        deliver(api, "payment_intent.succeeded", succeeded(order), event_id="e2").json()["outcome"] == "paid"
    )
    late = deliver(api, "payment_intent.payment_failed", failed, event_id="e0")

    assert late.json()["outcome"] == "stale"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert OrderEvent.objects.get(order=order, kind="payment_failed").note == "card_declined"


def test_unknown_event_types_and_orders_are_acknowledged_without_change(api, order):
    other = deliver(api, "customer.created", {"id": "cus_1"}, event_id="e1")
    stranger = deliver(api, "payment_intent.succeeded", {"id": "pi_unknown", "amount": 5}, event_id="e2")

    assert other.json()["outcome"] == "ignored"
    assert stranger.json()["outcome"] == "unknown_payment_intent"
    order.refresh_from_db()
    assert order.status == "awaiting_payment"


def test_malformed_body_with_valid_signature_is_a_clear_400(api):
    payload = b"not json"
    stamp = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(
        f"{stamp}.not json", settings.STRIPE_WEBHOOK_SECRET
    )

    response = api.post(
        "/api/v1/webhooks/stripe",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=f"t={stamp},v1={signature}",
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_payload")


def test_cancel_of_a_paid_order_refunds_through_stripe(api, order):
    client = stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE})
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    client.v1.payment_intents.update(order.payment_intent_id, params={"payment_method": method.id})
    assert client.v1.payment_intents.confirm(order.payment_intent_id).status == "succeeded"
    deliver(api, "payment_intent.succeeded", succeeded(order))
    api.force_authenticate(order.customer)

    response = api.post(f"/api/v1/orders/{order.ref}/cancel")

    assert response.status_code == 200, response.json()
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    intent = client.v1.payment_intents.retrieve(order.payment_intent_id, params={"expand": ["charges"]})
    refunds = client.v1.refunds.list(params={"payment_intent": order.payment_intent_id})
    assert intent.status == "succeeded"
    assert len(refunds.data) == 1
    replayed = deliver(
        api,
        "charge.refunded",
        {"id": "ch_1", "payment_intent": order.payment_intent_id},
        event_id="evt_refund",
    )
    assert replayed.json()["outcome"] == "already_applied"


def deliver_raw(api, body: bytes):
    """A body of any shape, correctly signed: Stripe's signature says who sent it, not that it is usable."""
    stamp = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(
        f"{stamp}.{body.decode()}", settings.STRIPE_WEBHOOK_SECRET
    )
    return api.post(
        "/api/v1/webhooks/stripe",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=f"t={stamp},v1={signature}",
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[]", "the event is not a JSON object"),
        (b"null", "the event is not a JSON object"),
        (b'{"type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}}', "id is missing"),
        (
            b'{"id": "evt_\\u0000", "type": "payment_intent.succeeded", "data": {"object": {}}}',
            "id is missing",
        ),
    ],
)
def test_signed_events_without_a_usable_id_are_400_and_logged(api, order, caplog, body, problem):
    response = deliver_raw(api, body)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "malformed_event"
    assert response.json()["problem"].startswith(problem)
    assert StripeEvent.objects.count() == 0
    assert [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()] == [
        f"stripe event malformed without a usable id problem={response.json()['problem']}"
    ]
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "requires_payment")


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"type": "payment_intent.succeeded"}, "data.object is missing or not an object"),
        ({"type": "payment_intent.succeeded", "data": None}, "data.object is missing or not an object"),
        (
            {"type": "payment_intent.succeeded", "data": {"object": None}},
            "data.object is missing or not an object",
        ),
        ({"type": "charge.refunded", "data": {"object": "ch_1"}}, "data.object is missing or not an object"),
        ({"data": {"object": {"id": "pi_1"}}}, "type is missing or not a short string"),
        (
            {"type": "payment_intent.succeeded", "data": {"object": {}}},
            "data.object.id is not a PaymentIntent id",
        ),
        (
            {"type": "charge.refunded", "data": {"object": {"payment_intent": 7}}},
            "data.object.payment_intent is",
        ),
        (
            {
                "type": "payment_intent.payment_failed",
                "data": {"object": {"id": "pi_1", "last_payment_error": "x"}},
            },
            "data.object.last_payment_error is not an object",
        ),
        (
            {"type": "charge.dispute.closed", "data": {"object": {"payment_intent": "pi_1"}}},
            "data.object.status is not a dispute status",
        ),
    ],
)
def test_signed_malformed_events_are_400_and_recorded(api, order, event, problem):
    body = json.dumps({"id": "evt_bad", "object": "event", **event}).encode()

    response = deliver_raw(api, body)
    retried = deliver_raw(api, body)

    assert (response.status_code, response["Content-Type"]) == (400, "application/problem+json")
    assert (response.json()["code"], retried.status_code) == ("malformed_event", 400)
    assert response.json()["problem"].startswith(problem)
    record = StripeEvent.objects.get()
    assert (record.event_id, record.event_type, record.outcome) == (
        "evt_bad",
        event.get("type", ""),
        "malformed",
    )
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "requires_payment")


@pytest.mark.parametrize("amount", ["12.50", "lots", 1.5, True, -5, [1]])
def test_a_success_with_a_non_numeric_amount_is_400_and_changes_nothing(api, order, amount):
    response = deliver(api, "payment_intent.succeeded", {**succeeded(order), "amount_received": amount})

    assert (response.status_code, response.json()["code"]) == (400, "malformed_event")
    assert StripeEvent.objects.get().outcome == "malformed"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "requires_payment")


def test_a_success_for_an_unknown_payment_intent_is_not_matched_by_metadata(api, order):
    foreign = {**succeeded(order), "id": "pi_someone_elses"}  # metadata.order_ref still names our order

    response = deliver(api, "payment_intent.succeeded", foreign, event_id="evt_foreign")

    assert (response.status_code, response.json()["outcome"]) == (200, "unknown_payment_intent")
    record = StripeEvent.objects.get()
    assert (record.event_id, record.payment_intent_id, record.outcome) == (
        "evt_foreign",
        "pi_someone_elses",
        "unknown_payment_intent",
    )
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "requires_payment")
    assert OrderEvent.objects.filter(order=order).count() == 1


def test_a_refund_without_a_payment_intent_does_not_touch_an_order_without_one(api, order):
    Order.objects.filter(pk=order.pk).update(payment_intent_id="")  # e.g. created while Stripe was down

    response = deliver(api, "charge.refunded", {"id": "ch_1", "payment_intent": None}, event_id="evt_r")

    assert (response.status_code, response.json()["outcome"]) == (200, "unknown_payment_intent")
    order.refresh_from_db()
    assert order.payment_status == "requires_payment"


# --- Events that come before the payment's (Stripe does not keep its events in order) -------------------

HELD_FOR_PARTIAL_REFUND = (
    "Part of the payment was refunded at Stripe: a supervisor decides whether to cancel the order or go on."
)


def partial_refund(order: Order) -> dict[str, object]:
    """The charge of a refund of 100 of the order's total made in Stripe's dashboard."""
    return {
        "id": "ch_partly_refunded",
        "object": "charge",
        "payment_intent": order.payment_intent_id,
        "amount": order.total_minor,
        "amount_refunded": 100,
        "refunded": False,
    }


def dispute(order: Order) -> dict[str, object]:
    return {
        "id": "dp_1",
        "object": "dispute",
        "payment_intent": order.payment_intent_id,
        "amount": order.total_minor,
        "reason": "fraudulent",
    }


def paid_with(
    api, order: Order, taken_back: tuple[str, dict[str, object]], *, payment_first: bool
) -> list[str]:
    """The customer pays at Stripe; the payment's event and `taken_back` (money Stripe took back) are
    delivered in the order given. Their outcomes."""
    pay_at_stripe(order)
    events = [(*taken_back, "evt_taken_back"), ("payment_intent.succeeded", succeeded(order), "evt_paid")]
    if payment_first:
        events.reverse()
    return [deliver(api, kind, data, event_id=event_id).json()["outcome"] for kind, data, event_id in events]


def test_an_order_paid_after_the_retention_sweep_read_it_is_not_expired(api, order, monkeypatch):
    # given an unpaid order the retention sweep reads as stale, whose customer pays at Stripe, and whose
    # payment's event commits right after the sweep read the order's id
    pay_at_stripe(order)
    read_stale = retention_rules.stale_unpaid_orders
    delivered = []

    def paid_after_the_read(before):
        stale_ids = list(read_stale(before).values_list("pk", flat=True))
        delivered.append(deliver(api, "payment_intent.succeeded", succeeded(order)).json()["outcome"])
        return Order.objects.filter(pk__in=stale_ids)

    monkeypatch.setattr(unpaid_expiry, "stale_unpaid_orders", paid_after_the_read)

    # when the sweep expires unpaid orders
    expired = orders_expire_unpaid(before=order.created_at + timedelta(days=30), limit=10)

    # then the paid order is left to be made (before: a customer's cancel took a paid order too, so it was
    # cancelled, refunded at Stripe, its customer told, and its photos purged in the same sweep)
    assert (delivered, expired) == (["paid"], 0)
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert not OrderEvent.objects.filter(order=order, to_status="cancelled").exists()
    assert refunds_made(order) == []


@pytest.mark.parametrize(
    ("first", "outcomes"),
    [("refund", ["partial_refund_noted", "held_for_payment"]), ("payment", ["paid", "held_for_payment"])],
)
def test_a_partial_refund_in_either_order_with_the_payment_holds_the_paid_order_and_a_cancel_refunds_the_rest(
    api, order, first, outcomes
):
    # given a customer who paid at Stripe, and part of it refunded in Stripe's dashboard; the two events come
    # in either order (before, a refund that came first found an unpaid order it could not hold, was
    # forgotten, and the late payment sent the order to print)

    # when both are delivered
    answered = paid_with(
        api, order, ("charge.refunded", partial_refund(order)), payment_first=first == "payment"
    )

    # then the payment is recorded and the order held for a supervisor, never released
    assert answered == outcomes
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")
    assert order.hold_message == HELD_FOR_PARTIAL_REFUND
    assert OrderEvent.objects.filter(order=order, to_status="paid").count() == 1
    assert routing.order_release(order_id=order.pk) == 0
    # and the supervisor's cancel refunds the rest at Stripe
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    assert refunds_made(order) == [("succeeded", {"lab_refund": f"order-{order.ref}-refund"})]


@pytest.mark.parametrize(
    ("first", "outcomes"),
    [("dispute", ["disputed", "held_for_payment"]), ("payment", ["paid", "held_for_payment"])],
)
def test_a_dispute_in_either_order_with_the_payment_records_the_payment_disputed_and_holds_the_order(
    api, order, first, outcomes
):
    # given a paid intent whose charge the customer's bank disputes; the dispute may come first (before, the
    # late payment then answered `already_applied`, the order stayed unpaid, and the retention sweep
    # cancelled it as never paid)

    # when both are delivered
    answered = paid_with(
        api, order, ("charge.dispute.created", dispute(order)), payment_first=first == "payment"
    )

    # then the payment is recorded (the money was captured), disputed, and the order held for a supervisor
    assert answered == outcomes
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "disputed")
    assert order.hold_message == (
        "The payment is disputed: a supervisor decides whether to cancel the order or go on."
    )
    assert OrderEvent.objects.filter(order=order, to_status="paid").count() == 1
    assert routing.order_release(order_id=order.pk) == 0
    # and the retention sweep does not take it for an unpaid order
    assert orders_expire_unpaid(before=order.created_at + timedelta(days=365), limit=10) == 0
    # and a supervisor's cancel refunds nothing: Stripe refunds no disputed charge, the dispute settles it
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "disputed")
    assert refunds_made(order) == []


DISPUTE_TIMELINE = ["disputed", "dispute_won", "dispute_lost", "dispute_closed"]


def dispute_timeline(order: Order) -> list[tuple[str, str]]:
    kinds = OrderEvent.objects.filter(order=order, kind__in=DISPUTE_TIMELINE).order_by("pk")
    return list(kinds.values_list("kind", "note"))


@pytest.mark.parametrize(
    ("status", "outcome", "payment_status", "said"),
    [
        ("won", "dispute_won", "succeeded", "The dispute was won: the payment is the lab's again."),
        (
            "warning_closed",
            "dispute_won",
            "succeeded",
            "The dispute was won: the payment is the lab's again.",
        ),
        (
            "lost",
            "dispute_lost",
            "refunded",
            "The dispute was lost: the customer's bank returned the money to them.",
        ),
    ],
)
def test_a_closed_dispute_settles_the_payment_records_it_and_leaves_the_held_order_to_a_person(
    api, order, status, outcome, payment_status, said
):
    # given a paid order whose payment the customer's bank disputed: held for a supervisor
    paid_with(api, order, ("charge.dispute.created", dispute(order)), payment_first=True)

    # when Stripe says the dispute is closed (before: ignored, and the payment stayed `disputed` for good,
    # which also keeps the customer's data from being erased)
    closed = deliver(
        api, "charge.dispute.closed", {**dispute(order), "status": status}, event_id="evt_closed"
    )
    replay = deliver(
        api, "charge.dispute.closed", {**dispute(order), "status": status}, event_id="evt_closed"
    )
    resent = deliver(api, "charge.dispute.closed", {**dispute(order), "status": status}, event_id="evt_again")

    # then the payment is settled (lost: the bank gave the money back, which the order records as refunded),
    # the timeline says how the dispute ended, once, and the order stays held for a person to release
    assert [closed.json()["outcome"], replay.json()["outcome"], resent.json()["outcome"]] == [
        outcome,
        "duplicate",
        "already_applied",
    ]
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", payment_status)
    assert order.hold_message.startswith(f"{said} The payment is disputed: a supervisor decides")
    assert dispute_timeline(order) == [("disputed", ""), (outcome, f"dp_1 {status}")]
    assert routing.order_release(order_id=order.pk) == 0
    assert StripeEvent.objects.get(event_id="evt_closed").outcome == outcome


@pytest.mark.parametrize(
    ("status", "payment_status", "order_status"),
    [("won", "succeeded", "paid"), ("lost", "refunded", "on_hold")],
)
def test_a_dispute_s_creation_that_comes_after_its_close_neither_disputes_nor_holds_the_order(
    api, order, status, payment_status, order_status
):
    # given a paid order, and Stripe's events of one dispute out of order: its close comes first
    paid_with(api, order, ("charge.dispute.closed", {**dispute(order), "status": status}), payment_first=True)

    # when the dispute's creation comes after it (before: the settled payment was marked `disputed` again
    # and the order held for a person, for good, as no close was to come)
    late = deliver(api, "charge.dispute.created", dispute(order), event_id="evt_created_late")

    # then it is recorded and changes nothing: the payment stays settled, and the order is held only by a lost
    # dispute's close (the money went back: a person decides), never by the late creation
    assert late.json()["outcome"] == "already_applied"
    assert StripeEvent.objects.get(event_id="evt_created_late").outcome == "already_applied"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == (order_status, payment_status)
    assert order.hold_message.startswith("The payment is disputed") is False
    assert [kind for kind, _ in dispute_timeline(order)] == [f"dispute_{status}"]


def test_a_lost_dispute_whose_creation_never_came_holds_the_order_being_made(api, order):
    # given a paid order whose dispute's creation event is late or lost: nothing held it
    # when its close comes, lost: the customer's bank gave the money back
    outcomes = paid_with(
        api, order, ("charge.dispute.closed", {**dispute(order), "status": "lost"}), payment_first=True
    )

    # then the order is held for a person instead of being made for money the lab no longer has
    assert outcomes[-1] == "held_for_payment"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "refunded")
    assert order.hold_message.startswith("The dispute was lost")
    assert routing.order_release(order_id=order.pk) == 0


def test_a_dispute_won_before_the_payment_s_event_leaves_the_order_paid_and_held(api, order):
    # given a paid intent whose charge was disputed, and the dispute won, before the payment's own event came
    pay_at_stripe(order)
    answered = [
        deliver(api, "charge.dispute.created", dispute(order), event_id="evt_disputed").json()["outcome"],
        deliver(api, "charge.dispute.closed", {**dispute(order), "status": "won"}, event_id="evt_won").json()[
            "outcome"
        ],
    ]

    # when the payment's event comes last
    late = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_paid")

    # then the money is the lab's: the order is paid, once, and held for a person (before, the won dispute
    # made the payment `succeeded` on an order still awaiting payment, the late event answered
    # `already_applied`, and the order stayed unpaid for good, which also blocked the customer's erasure)
    assert [*answered, late.json()["outcome"]] == ["disputed", "held_for_payment", "already_applied"]
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")
    assert OrderEvent.objects.filter(order=order, to_status="paid").count() == 1
    assert order.hold_message.endswith("a supervisor decides whether to cancel the order or go on.")
    assert routing.order_release(order_id=order.pk) == 0
    assert orders_expire_unpaid(before=order.created_at + timedelta(days=365), limit=10) == 0


def test_another_dispute_created_after_one_closed_still_disputes_and_holds_the_order(api, order):
    # given a paid order whose first dispute the lab won
    paid_with(api, order, ("charge.dispute.created", dispute(order)), payment_first=True)
    deliver(api, "charge.dispute.closed", {**dispute(order), "status": "won"}, event_id="evt_won")

    # when the bank opens another dispute of the same payment (its id starts as the first one's does)
    second = deliver(api, "charge.dispute.created", {**dispute(order), "id": "dp_12"}, event_id="evt_second")

    # then the payment is disputed again, and the held order's message says so
    assert second.json()["outcome"] == "held_for_payment"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "disputed")
    assert order.hold_message.startswith("The payment is disputed: a supervisor decides.")


def test_a_won_dispute_of_an_order_cancelled_meanwhile_refunds_the_customer(
    api, order, django_capture_on_commit_callbacks
):
    # given a disputed order a supervisor cancelled: Stripe refunds no disputed charge, so nothing was
    order = paid_with_dispute_cancelled(api, order)

    # when the lab wins the dispute: the money is the lab's again, for an order it will not make
    with django_capture_on_commit_callbacks(execute=True):
        closed = deliver(
            api, "charge.dispute.closed", {**dispute(order), "status": "won"}, event_id="evt_won"
        )

    # then the customer's refund is decided and made
    assert closed.json()["outcome"] == "refund_after_cancel"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    assert refunds_made(order) == [("succeeded", {"lab_refund": f"order-{order.ref}-refund"})]
    assert [kind for kind, _ in dispute_timeline(order)] == ["disputed", "dispute_won"]


def test_a_lost_dispute_of_an_order_cancelled_meanwhile_refunds_nothing_more(api, order):
    # given a disputed order a supervisor cancelled
    order = paid_with_dispute_cancelled(api, order)

    # when the bank decides for the customer: it gave them the money back
    closed = deliver(api, "charge.dispute.closed", {**dispute(order), "status": "lost"}, event_id="evt_lost")

    # then the order is refunded, by the bank: the lab refunds nothing more
    assert closed.json()["outcome"] == "dispute_lost"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "refunded")
    assert refunds_made(order) == []


def paid_with_dispute_cancelled(api, order: Order) -> Order:
    paid_with(api, order, ("charge.dispute.created", dispute(order)), payment_first=True)
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("cancelled", "disputed")
    return order


def test_an_event_we_do_not_handle_whose_object_id_is_longer_than_a_payment_intent_s_is_ignored(api, order):
    # given a genuine Checkout Session event: its object's id is 66 characters, longer than the PaymentIntent
    # id column (before, storing it there raised a DataError: 500, and Stripe retried it for days)
    session_id = "cs_test_" + "a1B2" * 14 + "xy"
    assert len(session_id) == 66

    # when it is delivered
    response = deliver(
        api,
        "checkout.session.completed",
        {"id": session_id, "object": "checkout.session", "payment_intent": None},
        event_id="evt_checkout",
    )

    # then it is acknowledged, recorded once, and changes nothing
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    record = StripeEvent.objects.get()
    assert (record.event_id, record.event_type, record.payment_intent_id, record.outcome) == (
        "evt_checkout",
        "checkout.session.completed",
        "",
        "ignored",
    )
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "requires_payment")


def paid_at_stripe_for(order: Order, amount: int) -> None:
    """The order's intent changed at Stripe to `amount` (its API or dashboard), then paid with a test card."""
    stripe_test_client().v1.payment_intents.update(order.payment_intent_id, params={"amount": amount})
    pay_at_stripe(order)


@pytest.mark.parametrize(
    ("first", "outcomes"),
    [
        ("dispute", ["disputed", "amount_mismatch", "amount_mismatch"]),
        ("refund", ["amount_mismatch", "amount_mismatch"]),
    ],
)
def test_a_payment_of_another_amount_never_pays_the_order_whatever_event_comes_first(
    api, order, first, outcomes
):
    # given a payment of 1 (not the order's total) captured at Stripe, whose events come in an order that
    # once paid the order all the same: a dispute opened, its payment, the dispute won (before, the win paid
    # the order and held it); or a refund at Stripe that failed, then the payment (before, the captured
    # money paid the order, without comparing it with the total)
    paid_at_stripe_for(order, 1)
    if first == "dispute":
        events = [
            ("charge.dispute.created", dispute(order)),
            ("payment_intent.succeeded", succeeded(order, amount=1)),
            ("charge.dispute.closed", {**dispute(order), "status": "won"}),
        ]
    else:
        refunded = {"id": "ch_1", "object": "charge", "payment_intent": order.payment_intent_id, "amount": 1}
        events = [
            ("charge.refunded", {**refunded, "amount_refunded": 1, "refunded": True}),
            ("payment_intent.succeeded", succeeded(order, amount=1)),
        ]

    # when they are delivered
    answered = [
        deliver(api, kind, data, event_id=f"evt_{index}").json()["outcome"]
        for index, (kind, data) in enumerate(events)
    ]

    # then the order is never paid, and the money is owed back to the customer
    assert answered == outcomes
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "refund_pending")
    assert not OrderEvent.objects.filter(order=order, to_status="paid").exists()
    assert OrderEvent.objects.filter(order=order, kind="refund_decided").count() == 1
    # and no technician can send it to print
    with pytest.raises(Conflict):
        order_release_hold(order_ref=order.ref, actor=person("technician"))
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("awaiting_payment", "refund_pending")


def test_a_technician_does_not_release_an_order_held_for_a_dispute_that_was_won(api, order):
    # given a paid order a dispute held, and the dispute then closed won (the payment `succeeded` again)
    pay_at_stripe(order)
    assert deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_paid").json()[
        "outcome"
    ] == ("paid")
    opened = deliver(api, "charge.dispute.created", dispute(order), event_id="evt_dispute")
    assert opened.json()["outcome"] == "held_for_payment"
    won = deliver(api, "charge.dispute.closed", {**dispute(order), "status": "won"}, event_id="evt_won")
    assert won.json()["outcome"] == "dispute_won"
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")

    # when a technician releases the hold, then it is refused: the README leaves it to a supervisor (before,
    # released) and nothing changed; a supervisor releases it
    with pytest.raises(PermissionDenied):
        order_release_hold(order_ref=order.ref, actor=person("technician"))
    order.refresh_from_db()
    assert order.status == "on_hold"
    assert not OrderEvent.objects.filter(order=order, note="hold released").exists()
    assert order_release_hold(order_ref=order.ref, actor=person("supervisor")).status == "paid"


def test_a_technician_does_not_release_a_held_order_whose_payment_event_named_another_amount(api, order):
    # given a paid order a technician held for the customer, and then a payment event of another amount
    pay_at_stripe(order)
    assert deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_paid").json()[
        "outcome"
    ] == ("paid")
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which crop do you want?")
    mismatch = deliver(api, "payment_intent.succeeded", succeeded(order, amount=1), event_id="evt_other")
    assert mismatch.json()["outcome"] == "amount_mismatch"

    # when the technician releases the hold, then it is refused (before: released, and printed) and nothing
    # changed
    with pytest.raises(PermissionDenied):
        order_release_hold(order_ref=order.ref, actor=person("technician"))
    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("on_hold", "succeeded")
    assert not OrderEvent.objects.filter(order=order, note="hold released").exists()
