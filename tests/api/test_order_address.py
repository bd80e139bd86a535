"""A customer changes an open order's shipping address (PATCH orders/{ref}), as the privacy policy promises
(CalOPPA: change one's information at any time).

Before, nothing changed an order's address after it was placed: My Account's address change left every open
order's as it was, a paid order is in production within seconds (then the customer's cancel is refused), and
the box was labelled for the old address. The endpoint did not exist (405)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from lab.orders.guest_tokens import guest_token_hash
from lab.orders.models import IdempotencyKey, Order, OrderEvent
from lab.packing import station
from lab.packing.models import PackingSlip
from lab.packing.services import packing_slip_render, slip_data_for
from tests.builders import (
    ADDRESS,
    TO_PACKED,
    UserFactory,
    asset_for,
    order_body,
    order_for,
    order_move,
    pay,
    person,
    token_client,
)
from tests.builders.guest_tokens import guest_token_grant
from tests.support.dba import dba

pytestmark = pytest.mark.django_db

NEW_ADDRESS = {
    "name": "Ada Quill",
    "line1": "9 Darkroom Row",
    "line2": "Flat 2",
    "city": "Aperture",
    "region": "CA",
    "postal_code": "94016",
    "country": "us",
}
STORED_NEW_ADDRESS = {**NEW_ADDRESS, "country": "US"}  # as the creation's validation stores it
GUEST_TOKEN = "guest-token-of-the-order"


def change(client: APIClient, ref: str, address: object = NEW_ADDRESS, *, token: str | None = None):
    path, body = f"/api/v1/orders/{ref}", {"shipping_address": address}
    if token is None:
        return client.patch(path, body, format="json")
    return client.patch(path, body, format="json", HTTP_X_ORDER_TOKEN=token)


def guest_order() -> Order:
    return guest_token_grant(order_for(None, guest_email="guest@example.org"), GUEST_TOKEN)


def test_the_owner_changes_the_address_of_an_order_in_production_and_its_slip_labels_the_new_one(api):
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_move(order_for(customer), "paid", "in_production")

    response = change(client, order.ref)

    assert response.status_code == 200, response.json()
    assert response.json()["shipping_address"] == STORED_NEW_ADDRESS
    read = client.get(f"/api/v1/orders/{order.ref}").json()
    assert read["shipping_address"] == STORED_NEW_ADDRESS
    assert read["timeline"][-1]["kind"] == "address_changed"
    order.refresh_from_db()
    assert order.status == "in_production"
    assert order.address_is_sealed  # sealed again by the model's save: the slip is made for it
    ship_to = slip_data_for(order).ship_to
    assert "9 Darkroom Row" in ship_to and "94016 Aperture" in ship_to
    assert not any(ADDRESS["line1"] in line for line in ship_to)
    event = OrderEvent.objects.get(order=order, kind="address_changed")
    assert (event.actor_id, event.actor_kind) == (customer.pk, "customer")
    assert "Darkroom" not in event.note and "Lens Lane" not in event.note  # no address in the timeline


def test_a_slip_rendered_before_a_reprint_is_dropped_and_rendered_again_with_the_new_address(api):
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_move(order_for(customer), "paid", "in_production", "ready_to_pack")
    packing_slip_render(order_id=order.pk)  # by the worker: stored, never served at the station
    order_move(order, "in_production")  # sent back to the floor (a reprint) before it was packed

    assert change(client, order.ref).status_code == 200

    assert not PackingSlip.objects.filter(order=order).exists()
    order_move(order, "ready_to_pack")
    slip = packing_slip_render(order_id=order.pk)
    assert slip.order_id == order.pk
    assert "9 Darkroom Row" in slip_data_for(Order.objects.get(pk=order.pk)).ship_to


@pytest.mark.parametrize("served", ["the order's slip", "the day's slips"])
@pytest.mark.parametrize("back_to", ["in_production", "on_hold"], ids=["reprint", "hold"])
def test_once_its_slip_was_printed_at_the_station_an_order_back_on_the_floor_keeps_its_address(
    api, served, back_to
):
    """Before, an order sent back to the floor (a reprint, a hold) after its slip was printed took the
    customer's new address: the paper slip printed that morning still carried the old one, and nothing at the
    station said so."""
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_move(order_for(customer), "paid", "in_production", "ready_to_pack")
    if served == "the order's slip":
        station.slip_pdf(code=order.ref, actor=person("packer"))
    else:
        assert station.day_slips_pdf(actor=person("packer")).count == 1
    assert Order.objects.get(pk=order.pk).slip_served_at is not None
    order_move(order, back_to)

    response = change(client, order.ref)

    assert (response.status_code, response.json()["code"]) == (409, "order_address_locked")
    order.refresh_from_db()
    assert order.shipping_address == ADDRESS
    assert not OrderEvent.objects.filter(kind="address_changed").exists()


def test_a_guest_changes_it_with_the_order_token_and_nobody_else_does(api):
    order = guest_order()

    anonymous = change(api, order.ref)
    wrong = change(api, order.ref, token="not-it")
    order.refresh_from_db()
    assert order.shipping_address == ADDRESS
    right = change(api, order.ref, token=GUEST_TOKEN)

    assert (anonymous.status_code, anonymous.json()["code"]) == (404, "order_not_found")
    assert (wrong.status_code, wrong.json()["code"]) == (404, "order_not_found")
    assert right.status_code == 200, right.json()
    order.refresh_from_db()
    assert (order.shipping_address, order.address_is_sealed) == (STORED_NEW_ADDRESS, True)
    assert OrderEvent.objects.get(order=order, kind="address_changed").actor_kind == "guest"


def test_a_guest_token_planted_in_the_database_opens_nothing_and_the_labs_own_still_does(api):
    # given a paid guest order whose token the lab issued, and another guest order a DBA holds the token of
    order = order_move(guest_order(), "paid")
    theirs = guest_token_grant(order_for(None, guest_email="dba@example.org"), "the-dbas-own-token")
    planted = "a-token-the-dba-made-up"

    # when the DBA writes the bare SHA-256 of a token of their own on the paid order, then the value of the
    # order whose token they hold (a seal for another ref), and tries each
    dba("UPDATE orders_order SET guest_token_hash = %s WHERE id = %s", guest_token_hash(planted), order.pk)
    with_bare_hash = [
        change(api, order.ref, token=planted),
        api.get(f"/api/v1/orders/{order.ref}", HTTP_X_ORDER_TOKEN=planted),
        api.post(f"/api/v1/orders/{order.ref}/cancel", HTTP_X_ORDER_TOKEN=planted),
    ]
    dba("UPDATE orders_order SET guest_token_hash = %s WHERE id = %s", theirs.guest_token_hash, order.pk)
    with_moved_seal = change(api, order.ref, token="the-dbas-own-token")

    # then nobody is authenticated (before, the bare hash re-addressed the box), the order is as it was
    answers = [
        (answer.status_code, answer.json().get("code")) for answer in [*with_bare_hash, with_moved_seal]
    ]
    assert answers == [(404, "order_not_found")] * 4
    order.refresh_from_db()
    assert (order.shipping_address, order.status, order.address_is_sealed) == (ADDRESS, "paid", True)
    assert not OrderEvent.objects.filter(order=order, kind="address_changed").exists()

    # and the token the lab issued still opens it once the lab's own value is back
    guest_token_grant(order, GUEST_TOKEN)
    assert change(api, order.ref, token=GUEST_TOKEN).status_code == 200


def test_a_guest_tokens_value_moved_with_its_ref_onto_another_row_opens_nothing_there(api):
    # given the DBA's own guest order, whose token they hold, and a victim's paid guest order
    theirs = guest_token_grant(order_for(None, guest_email="dba@example.org"), "the-dbas-own-token")
    victim = order_move(guest_order(), "paid")

    # when the DBA moves their order's ref and token value onto the victim's row (through a spare ref)
    dba("UPDATE orders_order SET ref = 'PL-SPARE' WHERE id = %s", theirs.pk)
    dba(
        "UPDATE orders_order SET ref = %s, guest_token_hash = %s WHERE id = %s",
        theirs.ref,
        theirs.guest_token_hash,
        victim.pk,
    )
    answers = [
        api.get(f"/api/v1/orders/{theirs.ref}", HTTP_X_ORDER_TOKEN="the-dbas-own-token"),
        api.post(f"/api/v1/orders/{theirs.ref}/cancel", HTTP_X_ORDER_TOKEN="the-dbas-own-token"),
    ]

    # then their token opens nothing on the victim's row (the seal names the row), and the order is as it was
    assert [(answer.status_code, answer.json().get("code")) for answer in answers] == [
        (404, "order_not_found")
    ] * 2
    victim.refresh_from_db()
    assert victim.status == "paid"


def test_another_customer_is_told_the_order_does_not_exist(api):
    order = order_move(order_for(UserFactory.create()), "paid")
    client = token_client(api, UserFactory.create())

    response = change(client, order.ref)

    assert (response.status_code, response.json()["code"]) == (404, "order_not_found")
    order.refresh_from_db()
    assert order.shipping_address == ADDRESS
    assert not OrderEvent.objects.filter(kind="address_changed").exists()


@pytest.mark.parametrize(
    "statuses",
    [
        TO_PACKED[:3],  # ready to pack: its slip may be printed
        TO_PACKED,
        (*TO_PACKED, "shipped"),
        ("cancelled",),
        (*TO_PACKED, "on_hold"),  # held at the station (a dispute): its box is packed and labelled
    ],
    ids=["ready_to_pack", "packed", "shipped", "cancelled", "held_after_packing"],
)
def test_once_the_box_is_at_the_packing_stage_or_gone_the_address_is_locked(api, statuses):
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_move(order_for(customer), *statuses)

    response = change(client, order.ref)

    assert (response.status_code, response.json()["code"]) == (409, "order_address_locked")
    order.refresh_from_db()
    assert order.shipping_address == ADDRESS
    assert not OrderEvent.objects.filter(kind="address_changed").exists()


def test_a_pickup_order_has_no_address_to_change(api):
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_for(customer)
    Order.objects.filter(pk=order.pk).update(shipping_method=Order.ShippingMethod.PICKUP)

    response = change(client, order.ref)

    assert (response.status_code, response.json()["code"]) == (409, "pickup_order_has_no_address")


@pytest.mark.parametrize(
    "address",
    [
        {**NEW_ADDRESS, "country": "XX"},
        {key: value for key, value in NEW_ADDRESS.items() if key != "line1"},
        {**NEW_ADDRESS, "postal_code": "1" * 21},
        "9 Darkroom Row",
    ],
    ids=["unknown_country", "no_line1", "postal_code_too_long", "not_an_object"],
)
def test_an_address_the_order_would_not_have_been_placed_with_is_refused(api, address):
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_move(order_for(customer), "paid")

    response = change(client, order.ref, address)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert "shipping_address" in response.json()["errors"]
    order.refresh_from_db()
    assert order.shipping_address == ADDRESS


def test_the_same_address_again_changes_nothing(api):
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_move(order_for(customer), "paid")

    first, again = change(client, order.ref), change(client, order.ref)

    assert (first.status_code, again.status_code) == (200, 200)
    assert OrderEvent.objects.filter(order=order, kind="address_changed").count() == 1


def test_an_address_written_in_the_database_alone_is_not_made_the_labs_own_by_a_change(api):
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_move(order_for(customer), "paid")
    Order.objects.filter(pk=order.pk).update(shipping_address={**ADDRESS, "line1": "Written in the database"})

    response = change(client, order.ref)

    assert (response.status_code, response.json()["code"]) == (409, "order_address_locked")
    order.refresh_from_db()
    assert not order.address_is_sealed


def test_a_customers_address_changes_are_throttled_per_customer_but_not_the_reads(api, settings):
    # given two address changes an hour per signed-in customer
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "customer_order_changes": "2/hour",
        },
    }
    customer = UserFactory.create()
    client = token_client(api, customer)
    order = order_move(order_for(customer), "paid")

    responses = [change(client, order.ref, address) for address in (NEW_ADDRESS, ADDRESS, NEW_ADDRESS)]

    # then the third change is refused and changes nothing: before, AnonThrottle counted nobody signed in,
    # and a token's changes were unlimited, each an `address_changed` event on the order's timeline
    assert [response.status_code for response in responses] == [200, 200, 429]
    assert responses[-1].json()["code"] == "throttled"
    assert int(responses[-1].headers["Retry-After"]) > 0
    order.refresh_from_db()
    assert order.shipping_address["line1"] == ADDRESS["line1"]
    assert OrderEvent.objects.filter(order=order, kind="address_changed").count() == 2
    # and reading the order is no change
    assert client.get(f"/api/v1/orders/{order.ref}").status_code == 200


GUEST = {"email": "quill@example.org", "birth_date": "1984-02-29", "privacy_policy_version": "1.0"}
THIEF_ADDRESS = {**NEW_ADDRESS, "name": "Mal Ory", "line1": "1 Drop St"}


def _guest_order_placed(api: APIClient, *, key: str) -> tuple[Order, str, dict[str, object]]:
    """A guest order placed through the API: the order, its token and the body it was placed with."""
    body = order_body(asset_for(None), guest=GUEST)
    created = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert created.status_code == 201, created.json()
    return Order.objects.get(ref=created.json()["ref"]), created.json()["guest_token"], body


def _plain_sha256(body: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.mark.usefixtures("stripe_api", "demo_catalog")
def test_a_key_rows_request_hash_rewritten_in_the_database_replays_no_token_and_readdresses_nothing(api):
    # given a paid guest order; a DBA reads its key row and order and has the rest of a body of their own
    order, token, placed = _guest_order_placed(api, key="victim-key-7f3a")
    pay(order, event_id="evt_victim_1")
    row = IdempotencyKey.objects.get(order=order)
    body = {**placed, "shipping_address": THIEF_ADDRESS, "guest": {**GUEST, "birth_date": "1970-01-01"}}

    # when they write the hash of their body into the key row, as the lab stored it before, and replay it
    dba("UPDATE orders_idempotencykey SET request_sha256 = %s WHERE id = %s", _plain_sha256(body), row.pk)
    replay = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY=row.key)

    # then the replay answers the order without its token (before: the guest's token, and with it the PATCH
    # re-addressed the paid order's prints)
    assert replay.status_code == 200, replay.json()
    assert replay.json()["ref"] == order.ref
    assert replay.json()["guest_token"] is None
    # and a change of address with what they got opens nothing and changes nothing
    response = change(api, order.ref, THIEF_ADDRESS, token=replay.json()["guest_token"] or "")
    assert response.status_code == 404
    order.refresh_from_db()
    assert order.shipping_address["line1"] == ADDRESS["line1"]
    assert not OrderEvent.objects.filter(order=order, kind="address_changed").exists()
    assert token  # the guest's own token was issued, and never handed back


@pytest.mark.usefixtures("stripe_api", "demo_catalog")
def test_a_key_rows_request_hash_is_keyed_and_a_guests_token_is_replayed_only_while_awaiting_payment(api):
    # given a guest order just placed
    order, token, placed = _guest_order_placed(api, key="retry-key")
    row = IdempotencyKey.objects.get(order=order)

    # then its key row keeps no plain hash of the body: from a backup, the birth date (the one field the
    # database does not hold) was some 40,000 guesses away
    assert row.request_sha256 != _plain_sha256(placed)
    assert len(row.request_sha256) == 64
    # and a retry of the same body with the same key gets the order and its token while it awaits payment
    retry = api.post("/api/v1/orders", placed, format="json", HTTP_IDEMPOTENCY_KEY="retry-key")
    assert (retry.status_code, retry.json()["ref"], retry.json()["guest_token"]) == (200, order.ref, token)
    # and once it is paid, the same retry answers the order without its token
    pay(order, event_id="evt_retry_1")
    paid = api.post("/api/v1/orders", placed, format="json", HTTP_IDEMPOTENCY_KEY="retry-key")
    assert (paid.status_code, paid.json()["ref"], paid.json()["guest_token"]) == (200, order.ref, None)


@pytest.mark.usefixtures("stripe_api", "demo_catalog")
def test_a_guests_token_is_not_replayed_for_an_order_a_day_old(api):
    # given a guest order still awaiting payment, placed more than a day ago
    order, _token, placed = _guest_order_placed(api, key="old-key")
    Order.objects.filter(pk=order.pk).update(created_at=order.created_at - timedelta(hours=25))

    # when its key and body are replayed
    replay = api.post("/api/v1/orders", placed, format="json", HTTP_IDEMPOTENCY_KEY="old-key")

    # then the order is answered without its token
    assert (replay.status_code, replay.json()["ref"], replay.json()["guest_token"]) == (200, order.ref, None)


@pytest.mark.usefixtures("stripe_api", "demo_catalog")
def test_a_key_row_moved_onto_another_order_replays_nothing_of_it(api):
    # given two guest orders to one e-mail address awaiting payment, the second placed by the DBA
    victim, _token, _placed = _guest_order_placed(api, key="victim-key")
    theirs, _their_token, their_body = _guest_order_placed(api, key="their-key")
    victim_row = IdempotencyKey.objects.get(order=victim)

    # when they point their key row at the victim's order, under the victim's key, and replay their body
    dba("DELETE FROM orders_idempotencykey WHERE id = %s", victim_row.pk)
    dba(
        "UPDATE orders_idempotencykey SET key = %s, order_id = %s WHERE order_id = %s",
        "victim-key",
        victim.pk,
        theirs.pk,
    )
    replay = api.post("/api/v1/orders", their_body, format="json", HTTP_IDEMPOTENCY_KEY="victim-key")

    # then the row's hash no longer holds: it named their order and key (409, nothing replayed)
    assert (replay.status_code, replay.json()["code"]) == (409, "idempotency_key_reused")


@pytest.mark.usefixtures("stripe_api", "demo_catalog")
def test_a_retry_after_a_secret_key_rotation_replays_its_order(api, settings):
    # given a guest order placed under one SECRET_KEY, which a rotation then keeps as a fallback
    order, _token, placed = _guest_order_placed(api, key="rotated-key")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-the-rotation-0123456789abcdef"

    # when the same request is sent again with its key
    retry = api.post("/api/v1/orders", placed, format="json", HTTP_IDEMPOTENCY_KEY="rotated-key")

    # then it replays the order (before: 409 idempotency_key_reused, "a different body", and a client that
    # took a new key made a second order); the token, derived under the new key, is not the one issued
    assert (retry.status_code, retry.json()["ref"]) == (200, order.ref), retry.json()
    assert Order.objects.count() == 1


@pytest.mark.usefixtures("demo_catalog")
def test_a_guest_order_kept_without_its_payment_gets_its_token_from_a_retry_a_day_later(
    api, settings, stripe_api
):
    # given a guest order kept without its payment (Stripe out of reach: 502, no token), a day ago
    settings.STRIPE_TIMEOUT_SECONDS = 1
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the discard port: nothing listens
    body = order_body(asset_for(None), guest=GUEST)
    first = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="late-key")
    assert (first.status_code, first.json()["code"]) == (502, "payment_provider_unavailable")
    order = Order.objects.get()
    Order.objects.filter(pk=order.pk).update(created_at=order.created_at - timedelta(hours=25))

    # when the guest retries as told, once Stripe answers again
    settings.STRIPE_API_BASE = stripe_api.url
    retry = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="late-key")

    # then the order is payable and its token opens it (before: payable, and no token, ever)
    assert retry.status_code == 200, retry.json()
    token = retry.json()["guest_token"]
    assert token and retry.json()["payment"]["client_secret"]
    opened = api.get(f"/api/v1/orders/{order.ref}", HTTP_X_ORDER_TOKEN=token)
    assert opened.status_code == 200, opened.json()
