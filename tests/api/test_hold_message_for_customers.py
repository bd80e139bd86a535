"""The hold message a customer reads on their order: only the question a person put to them, never the
supervisor's note of a payment hold, and nothing once the order is cancelled."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from lab.catalog.demo import catalog_seed_demo
from lab.notify.emails import order_email
from lab.orders.models import Asset, ClarificationCase, Order
from lab.production.cancellation import order_cancel_in_production
from lab.production.holds import order_hold
from tests.builders import order_body, person
from tests.support.images import jpeg_bytes
from tests.support.stripe_webhooks import deliver, order_placed, pay_at_stripe, succeeded

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_api")]

GUEST = {"email": "guest@example.org", "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}
QUESTION = "Photo 1 is 300 px wide: is a 4x6 print still what you want?"


def guest_order_paid(api: APIClient) -> tuple[Order, str]:
    """A guest's order placed through the API and paid at Stripe; the order and its guest token."""
    catalog_seed_demo()
    upload = api.post("/api/v1/assets", {"file": _photo()}, format="multipart")
    body = order_body(Asset.objects.get(pk=upload.json()["id"]), guest=GUEST)
    created = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="guest-1")
    assert created.status_code == 201, created.json()
    order = Order.objects.get(ref=created.json()["ref"])
    return _paid(api, order), created.json()["guest_token"]


def customer_order_paid(api: APIClient) -> Order:
    return _paid(api, order_placed(api))


def _paid(api: APIClient, order: Order) -> Order:
    pay_at_stripe(order)
    paid = deliver(api, "payment_intent.succeeded", succeeded(order), event_id="evt_paid")
    assert paid.json()["outcome"] == "paid"
    order.refresh_from_db()
    return order


def _photo() -> SimpleUploadedFile:
    return SimpleUploadedFile("p.jpg", jpeg_bytes())


def as_owner(api: APIClient, order: Order) -> APIClient:
    api.force_authenticate(order.customer)
    return api


def test_a_disputed_order_shows_its_guest_no_hold_message_and_the_floor_its_reason(api):
    # given a guest's paid order
    order, token = guest_order_paid(api)

    # when the guest's bank disputes the payment, which holds the order for a supervisor
    held = deliver(
        api,
        "charge.dispute.created",
        {
            "id": "dp_1",
            "object": "dispute",
            "payment_intent": order.payment_intent_id,
            "reason": "fraudulent",
        },
        event_id="evt_dispute",
    )
    answer = api.get(f"/api/v1/orders/{order.ref}", HTTP_X_ORDER_TOKEN=token)

    # then the guest is asked nothing (before: the supervisor's note was served as the hold message)
    assert held.json()["outcome"] == "held_for_payment"
    assert (answer.status_code, answer.json()["status"], answer.json()["hold_message"]) == (
        200,
        "on_hold",
        "",
    )
    # and the floor still reads why the order is held
    order.refresh_from_db()
    assert order.hold_message == (
        "The payment is disputed: a supervisor decides whether to cancel the order or go on."
    )


def test_an_order_held_with_a_question_then_refunded_at_stripe_shows_only_the_question(api):
    # given a paid order a technician held with a question to its customer
    order = customer_order_paid(api)
    order_hold(order_ref=order.ref, actor=person("technician"), message=QUESTION)

    # when the whole payment is refunded in Stripe's dashboard
    refunded = deliver(
        api,
        "charge.refunded",
        {
            "id": "ch_1",
            "object": "charge",
            "payment_intent": order.payment_intent_id,
            "amount": order.total_minor,
            "amount_refunded": order.total_minor,
            "refunded": True,
        },
        event_id="evt_refunded",
    )
    answer = as_owner(api, order).get(f"/api/v1/orders/{order.ref}")

    # then the customer reads the question alone (before: the supervisor's note came first), on the order, in
    # the hold's e-mail rendered now and in their data export
    assert refunded.json()["outcome"] == "held_for_payment"
    assert (answer.json()["status"], answer.json()["hold_message"]) == ("on_hold", QUESTION)
    order.refresh_from_db()
    mail = order_email(order=order, kind="on_hold").body
    assert QUESTION in mail and "supervisor" not in mail
    exported = api.get("/api/v1/me/export").json()
    assert [o["hold_message"] for o in exported["orders"]] == [QUESTION]
    # and the floor reads both
    order.refresh_from_db()
    assert order.hold_message == f"The payment was refunded at Stripe: a supervisor decides. {QUESTION}"


def test_a_held_order_cancelled_by_a_supervisor_shows_no_hold_message(api):
    # given a paid order held with a question to its customer
    order = customer_order_paid(api)
    order_hold(order_ref=order.ref, actor=person("technician"), message=QUESTION)

    # when a supervisor cancels it
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    answer = as_owner(api, order).get(f"/api/v1/orders/{order.ref}")

    # then the cancelled order asks its customer nothing any more (before: the question stayed for ever)
    assert (answer.json()["status"], answer.json()["hold_message"]) == ("cancelled", "")
    order.refresh_from_db()
    assert order.hold_message == ""
    # and the question's case is closed, as a release closes it
    assert ClarificationCase.objects.get(order=order).closed_at is not None
