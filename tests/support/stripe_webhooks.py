"""Stripe as the payment tests meet it: an order placed through the API (its PaymentIntent made at the
Stripe-compatible server the settings name), paid there with a test card, and Stripe's signed events
delivered to the webhook endpoint."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from typing import Any

import stripe
from django.conf import settings
from rest_framework.test import APIClient

from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import Order
from tests.builders import UserFactory, asset_for, order_body
from tests.support.stripe_server import card_payment_method, signed_event


def order_placed(api: APIClient, *, key: str = "w-1") -> Order:
    """A customer's order, awaiting payment, with its PaymentIntent made at the configured Stripe API."""
    catalog_seed_demo()
    user = UserFactory.create()
    api.force_authenticate(user)
    response = api.post(
        "/api/v1/orders", order_body(asset_for(user)), format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 201, response.json()
    api.force_authenticate(None)
    return Order.objects.get(ref=response.json()["ref"])


def stripe_test_client() -> stripe.StripeClient:
    """What the customer's browser and Stripe's dashboard do, against the Stripe API the settings name."""
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE})


def pay_at_stripe(order: Order) -> None:
    """The customer pays the order's intent with the always-successful test card: the money is captured."""
    client = stripe_test_client()
    client.v1.payment_intents.update(
        order.payment_intent_id, params={"payment_method": card_payment_method(client)}
    )
    assert client.v1.payment_intents.confirm(order.payment_intent_id).status == "succeeded"


def refunds_made(order: Order) -> list[tuple[str, dict[str, Any]]]:
    """(status, metadata) of each refund of the order's payment at the configured Stripe API, by status
    (localstripe orders refunds by their creation second, which two refunds of one test may share)."""
    refunds = stripe_test_client().v1.refunds.list(params={"payment_intent": order.payment_intent_id}).data
    return sorted(
        (str(refund.status), refund.metadata.to_dict() if refund.metadata is not None else {})
        for refund in refunds
    )


def deliver(
    api: APIClient,
    event_type: str,
    data: Mapping[str, object],
    *,
    event_id: str = "evt_1",
    secret: str | None = None,
    timestamp: int | None = None,
) -> Any:
    """One event, signed as Stripe signs it, posted to the webhook endpoint."""
    payload, header = signed_event(
        event_type=event_type,
        data_object=dict(data),
        secret=secret or settings.STRIPE_WEBHOOK_SECRET,
        event_id=event_id,
        timestamp=timestamp,
    )
    return api.post(
        "/api/v1/webhooks/stripe", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def succeeded(order: Order, amount: int | None = None, currency: str | None = None) -> dict[str, object]:
    """The data.object of the order's payment_intent.succeeded (Stripe writes the currency in lower case)."""
    return {
        "id": order.payment_intent_id,
        "object": "payment_intent",
        "amount": amount or order.total_minor,
        "amount_received": amount or order.total_minor,
        "currency": (currency or order.currency).lower(),
        "metadata": {"order_ref": order.ref},
    }


def stripe_forgotten() -> None:
    """localstripe forgets every object and event it holds: a test that reads Stripe's whole account (its
    events, its refunds) sees only its own (the server is the session's, shared by every test before it)."""
    request = urllib.request.Request(f"{settings.STRIPE_API_BASE}/_config/data", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def stripe_events_delivered(api: APIClient, order: Order) -> list[str]:
    """Deliver, as Stripe's webhook does, every event the configured Stripe API recorded for the order's
    payment that the endpoint has not been sent yet (under its own id: one sent already answers
    `duplicate`); their outcomes, oldest first. localstripe records a PaymentIntent's own events only
    (succeeded, failed), never a refund's."""
    intent_id = order.payment_intent_id
    outcomes = []
    for event in stripe_test_client().v1.events.list(params={"limit": 100}).auto_paging_iter():
        data = event.to_dict()["data"]["object"]
        if intent_id in (data.get("id"), data.get("payment_intent")):
            response = deliver(api, event.type, data, event_id=event.id)
            assert response.status_code == 200, response.json()
            outcomes.append(str(response.json()["outcome"]))
    return outcomes
