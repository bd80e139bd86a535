"""Quotes, idempotent order creation with a Stripe PaymentIntent, reading, cancelling, access rules."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from lab.audit.models import AuditRecord
from lab.catalog.demo import catalog_seed_demo
from lab.catalog.models import Product
from lab.orders import payment_client, payments
from lab.orders.cancellation import order_cancel
from lab.orders.models import Asset, IdempotencyKey, Order, OrderEvent
from lab.orders.pricing import MAX_COPIES_PER_ITEM, MAX_ITEMS_PER_ORDER
from tests.builders import (
    ADDRESS,
    TOO_LONG_EMAILS,
    ProductFactory,
    UserFactory,
    asset_for,
    blob_path,
    order_body,
)
from tests.support.http import stalled
from tests.support.images import jpeg_bytes

# Orders ask Stripe (localstripe) for their PaymentIntent.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_api")]


@pytest.fixture(autouse=True)
def catalog() -> None:
    catalog_seed_demo()


def test_quote_prices_come_from_the_server_with_preflight(api):
    user = UserFactory.create()
    api.force_authenticate(user)
    small = asset_for(user, width=600, height=400)  # 100 DPI at 4x6: a warning, not a refusal

    response = api.post(
        "/api/v1/quotes",
        {
            "items": [
                {
                    "sku": "PRINT-4X6-LUSTRE",
                    "asset": str(small.pk),
                    "copies": 2,
                    "sizing": "fill",
                    "unit_price_minor": 1,
                }
            ],
            "shipping_method": "express",
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["subtotal_minor"], body["shipping_minor"], body["total_minor"]) == (70, 1499, 1569)
    preflight = body["items"][0]["preflight"]
    assert preflight["effective_dpi"] == 100
    assert preflight["warnings"] == ["low_resolution"]
    assert preflight["cropped_percent"] == 0.0


def test_preflight_reports_crop_for_fill_and_border_for_fit(api):
    user = UserFactory.create()
    api.force_authenticate(user)
    square = asset_for(user, width=3000, height=3000)

    body = api.post(
        "/api/v1/quotes",
        {
            "items": [
                {"sku": "PRINT-4X6-GLOSSY", "asset": str(square.pk), "copies": 1, "sizing": "fill"},
                {"sku": "PRINT-4X6-GLOSSY", "asset": str(square.pk), "copies": 1, "sizing": "fit"},
            ],
            "shipping_method": "pickup",
        },
        format="json",
    ).json()

    fill, fit = (item["preflight"] for item in body["items"])
    assert (fill["effective_dpi"], fill["cropped_percent"], fill["warnings"]) == (500, 33.3, ["large_crop"])
    assert (fit["effective_dpi"], fit["border_percent"], fit["cropped_percent"]) == (750, 33.3, 0.0)


def test_order_creates_payment_intent_and_replays_by_idempotency_key(api):
    user = UserFactory.create()
    api.force_authenticate(user)
    body = order_body(asset_for(user))

    first = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    other_body = api.post(
        "/api/v1/orders", {**body, "shipping_method": "express"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert first.status_code == 201, first.json()
    created = first.json()
    assert created["status"] == "awaiting_payment"
    assert created["total_minor"] == 3 * 35 + 499
    assert created["payment"]["payment_intent"].startswith("pi_")
    assert created["payment"]["client_secret"]
    assert created["ref"].startswith("PL-") and len(created["ref"]) == 15
    assert [e["kind"] for e in created["timeline"]] == ["created"]
    assert again.status_code == 200
    assert again.json()["ref"] == created["ref"]
    assert again.json()["payment"]["payment_intent"] == created["payment"]["payment_intent"]
    assert (other_body.status_code, other_body.json()["code"]) == (409, "idempotency_key_reused")
    assert Order.objects.count() == 1


def test_the_payment_intent_is_for_the_orders_total_in_its_currency(api):
    # given a basket with shipping: its total is more than its prints
    user = UserFactory.create()
    api.force_authenticate(user)
    body = order_body(asset_for(user), shipping_method="express")

    # when it is quoted, then ordered
    quote = api.post("/api/v1/quotes", {"items": body["items"], "shipping_method": "express"}, format="json")
    created = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="total-1")

    # then Stripe's PaymentIntent charges what the quote said and the order holds, shipping included
    assert quote.status_code == 200, quote.json()
    assert created.status_code == 201, created.json()
    quoted = quote.json()
    assert quoted["shipping_minor"] > 0 and quoted["total_minor"] > quoted["subtotal_minor"]
    order = Order.objects.get()
    intent = payment_client.stripe_client().v1.payment_intents.retrieve(order.payment_intent_id)
    assert (
        (intent.amount, intent.currency)
        == (quoted["total_minor"], quoted["currency"])
        == (order.total_minor, order.currency)
    )


def test_the_answer_to_an_order_is_the_order_as_read_back(api):
    # given a customer and a basket that uses every placement option
    user = UserFactory.create()
    api.force_authenticate(user)
    photo = asset_for(user)  # 1800 x 1200
    items = [
        {
            "sku": "PRINT-4X6-LUSTRE",
            "asset": str(photo.pk),
            "copies": 2,
            "crop": {"x": 0.1, "y": 0.2, "width": 0.5, "height": 0.5},
        },
        {
            "sku": "PRINT-8X10-MATTE",
            "asset": str(photo.pk),
            "copies": 1,
            "sizing": "fit",
            "border_mm": 5,
            "orientation": "portrait",
        },
        {"sku": "PRINT-5X7-LUSTRE", "asset": str(photo.pk), "copies": 3, "focal_point": {"x": 0.2, "y": 0.7}},
    ]

    # when they order it, then read the order
    created = api.post(
        "/api/v1/orders", order_body(photo, items=items), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    read = api.get(f"/api/v1/orders/{created.json()['ref']}")

    # then the answer to the order (built from the rows as written) is what reading it back shows
    assert created.status_code == 201, created.json()
    assert read.status_code == 200
    assert {name: value for name, value in created.json().items() if name != "guest_token"} == read.json()
    assert [item["position"] for item in read.json()["items"]] == [1, 2, 3]


def test_order_requires_idempotency_key(api):
    user = UserFactory.create()
    api.force_authenticate(user)

    response = api.post("/api/v1/orders", order_body(asset_for(user)), format="json")

    assert (response.status_code, response.json()["code"]) == (400, "idempotency_key_required")
    assert Order.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_order(live_server):
    user = UserFactory.create()
    from lab.accounts.tokens import api_token_issue

    token = api_token_issue(user=user, name="test").key
    payload = json.dumps(order_body(asset_for(user))).encode()
    statuses: list[int] = []
    refs: list[str] = []
    barrier = threading.Barrier(6)

    def submit() -> None:
        request = urllib.request.Request(
            f"{live_server.url}/api/v1/orders",
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Token {token}",
                "Idempotency-Key": "same-key",
            },
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                statuses.append(response.status)
                refs.append(json.load(response)["ref"])
        except urllib.error.HTTPError as error:
            statuses.append(error.code)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 200, 200, 200, 200, 201]
    assert len(set(refs)) == 1
    assert Order.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1


def test_guest_orders_with_age_check_and_reads_with_its_token(api):
    asset_id = api.post("/api/v1/assets", {"file": _upload()}, format="multipart").json()["id"]
    guest = {"email": "guest@example.org", "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}

    created = api.post(
        "/api/v1/orders",
        order_body(Asset.objects.get(pk=asset_id), guest=guest),
        format="json",
        HTTP_IDEMPOTENCY_KEY="g-1",
    ).json()
    anonymous = api.get(f"/api/v1/orders/{created['ref']}")
    wrong = api.get(f"/api/v1/orders/{created['ref']}", HTTP_X_ORDER_TOKEN="not-it")
    right = api.get(f"/api/v1/orders/{created['ref']}", HTTP_X_ORDER_TOKEN=created["guest_token"])

    assert (anonymous.status_code, wrong.status_code, right.status_code) == (404, 404, 200)
    assert right.json()["items"][0]["asset"] == asset_id
    order = Order.objects.get()
    assert order.guest_email == "guest@example.org"
    photo = Asset.objects.get(pk=asset_id)  # bound to its order, and sealed so (it prints)
    assert photo.guest_order_id == order.pk and photo.is_sealed and photo.belongs_to(order)
    consent = order.consents.get()
    assert consent.policy_version is not None
    assert consent.policy_version.version == "1.0"
    reuse = api.post(
        "/api/v1/orders",
        order_body(Asset.objects.get(pk=asset_id), guest=guest),
        format="json",
        HTTP_IDEMPOTENCY_KEY="g-2",
    )
    assert (reuse.status_code, reuse.json()["code"]) == (404, "asset_not_found")


def test_guest_under_13_is_refused_without_a_trace(api, django_capture_on_commit_callbacks):
    """COPPA: the refused child's photos go with the refusal (data key destroyed, file deleted, purged), not
    seven days later; a photo of someone else named in the same request (an account's, one bound to another
    order) is left as it was."""
    asset_id = api.post("/api/v1/assets", {"file": _upload()}, format="multipart").json()["id"]
    photo = Asset.objects.get(pk=asset_id)
    blob, key = photo.blob_name, photo.data_key
    assert key is not None and blob_path(blob).exists()
    others = asset_for(UserFactory.create())
    adult = {"email": "adult@example.org", "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}
    ordered_id = api.post("/api/v1/assets", {"file": _upload()}, format="multipart").json()["id"]
    placed = api.post(
        "/api/v1/orders",
        order_body(Asset.objects.get(pk=ordered_id), guest=adult),
        format="json",
        HTTP_IDEMPOTENCY_KEY="a-1",
    )
    assert placed.status_code == 201, placed.json()
    young = date.today().replace(year=date.today().year - 10).isoformat()
    guest = {"email": "kid@example.org", "birth_date": young, "privacy_policy_version": "1.0"}
    body = order_body(photo, guest=guest)
    body["items"] = [
        {"sku": "PRINT-4X6-LUSTRE", "asset": asset, "copies": 1, "sizing": "fill"}
        for asset in (asset_id, str(others.pk), ordered_id)
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="g-1")

    assert (response.status_code, response.json()["code"]) == (403, "under_minimum_age")
    assert Order.objects.count() == 1  # the adult's only
    assert IdempotencyKey.objects.count() == 1
    photo.refresh_from_db()
    key.refresh_from_db()
    assert (photo.status, photo.blob_name, photo.purged_at is not None) == ("purged", "", True)
    assert (key.wrapped_key, key.is_destroyed) == (None, True)
    assert not blob_path(blob).exists()
    purges = AuditRecord.objects.filter(action="image.purge")
    assert list(purges.values_list("asset_id", "rule")) == [(asset_id, "under_age")]
    untouched = [others, Asset.objects.get(pk=ordered_id)]
    for asset in untouched:
        asset.refresh_from_db()
        assert asset.data_key is not None
        assert (asset.status, asset.data_key.is_destroyed, blob_path(asset.blob_name).exists()) == (
            "ready",
            False,
            True,
        )


def _upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("p.jpg", jpeg_bytes())


def test_customer_cannot_see_or_cancel_or_use_anything_of_another(api):
    owner, intruder = UserFactory.create(), UserFactory.create()
    api.force_authenticate(owner)
    asset = asset_for(owner)
    ref = api.post("/api/v1/orders", order_body(asset), format="json", HTTP_IDEMPOTENCY_KEY="o-1").json()[
        "ref"
    ]
    api.force_authenticate(intruder)

    read = api.get(f"/api/v1/orders/{ref}")
    cancel = api.post(f"/api/v1/orders/{ref}/cancel")
    listing = api.get("/api/v1/orders")
    quote = api.post(
        "/api/v1/quotes", {"items": order_body(asset)["items"], "shipping_method": "standard"}, format="json"
    )
    steal = api.post("/api/v1/orders", order_body(asset), format="json", HTTP_IDEMPOTENCY_KEY="o-2")

    assert (read.status_code, read.json()["code"]) == (404, "order_not_found")
    assert (cancel.status_code, cancel.json()["code"]) == (404, "order_not_found")
    assert listing.json()["count"] == 0
    assert (quote.status_code, quote.json()["code"]) == (404, "asset_not_found")
    assert (steal.status_code, steal.json()["code"]) == (404, "asset_not_found")
    assert Order.objects.get().status == "awaiting_payment"
    assert Order.objects.count() == 1


def test_list_is_paginated_and_filtered_by_status(api):
    user = UserFactory.create()
    api.force_authenticate(user)
    asset = asset_for(user)
    refs = [
        api.post("/api/v1/orders", order_body(asset), format="json", HTTP_IDEMPOTENCY_KEY=f"k{i}").json()[
            "ref"
        ]
        for i in range(3)
    ]
    api.post(f"/api/v1/orders/{refs[0]}/cancel")

    page = api.get("/api/v1/orders?page_size=2").json()
    cancelled = api.get("/api/v1/orders?status=cancelled").json()

    assert (page["count"], len(page["results"])) == (3, 2)
    assert [o["ref"] for o in cancelled["results"]] == [refs[0]]


def test_cancel_before_payment_records_the_transition(api):
    user = UserFactory.create()
    api.force_authenticate(user)
    ref = api.post(
        "/api/v1/orders", order_body(asset_for(user)), format="json", HTTP_IDEMPOTENCY_KEY="c-1"
    ).json()["ref"]

    response = api.post(f"/api/v1/orders/{ref}/cancel")
    again = api.post(f"/api/v1/orders/{ref}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert [(e["kind"], e["to_status"]) for e in response.json()["timeline"]] == [
        ("created", "awaiting_payment"),
        ("status_changed", "cancelled"),
    ]
    assert (again.status_code, again.json()["code"]) == (409, "order_not_cancellable")
    assert OrderEvent.objects.count() == 2


def test_an_order_cancelled_while_stripe_makes_its_intent_gets_no_payable_intent(api, monkeypatch):
    user = UserFactory.create()
    api.force_authenticate(user)
    client = payment_client.stripe_client()
    create = client.v1.payment_intents.create
    made = []

    def cancelled_meanwhile(**kwargs):
        # the customer's cancel (another request) commits while Stripe is making the order's intent
        order = Order.objects.get(ref=kwargs["params"]["metadata"]["order_ref"])
        order_cancel(order=order, actor=user, actor_kind="customer")
        made.append(create(**kwargs))
        return made[-1]

    monkeypatch.setattr(client.v1.payment_intents, "create", cancelled_meanwhile)

    response = api.post(
        "/api/v1/orders", order_body(asset_for(user)), format="json", HTTP_IDEMPOTENCY_KEY="race-1"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "cancelled"
    assert response.json()["payment"] == {"status": "none", "payment_intent": "", "client_secret": ""}
    order = Order.objects.get()
    assert (order.payment_intent_id, order.payment_client_secret) == ("", "")
    assert len(made) == 1 and made[0].status == "requires_payment_method"
    assert client.v1.payment_intents.retrieve(made[0].id).status == "canceled"  # at Stripe, not payable


def test_an_intent_whose_cancel_fails_after_its_order_was_cancelled_meanwhile_is_cancelled_later(
    api, settings, stripe_api, monkeypatch
):
    # given a customer's cancel that commits while Stripe is making the order's intent, and Stripe out of
    # reach once the intent is made (its cancel right after gets no answer)
    user = UserFactory.create()
    api.force_authenticate(user)
    client = payment_client.stripe_client()
    create = client.v1.payment_intents.create
    made = []

    def cancelled_meanwhile(**kwargs):
        order = Order.objects.get(ref=kwargs["params"]["metadata"]["order_ref"])
        order_cancel(order=order, actor=user, actor_kind="customer")
        made.append(create(**kwargs))
        settings.STRIPE_TIMEOUT_SECONDS = 1
        settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the discard port: nothing listens
        return made[-1]

    monkeypatch.setattr(client.v1.payment_intents, "create", cancelled_meanwhile)

    response = api.post(
        "/api/v1/orders", order_body(asset_for(user)), format="json", HTTP_IDEMPOTENCY_KEY="race-1"
    )

    # then the order owes the intent's cancel, never offering its secret
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "cancelled"
    assert response.json()["payment"]["client_secret"] == ""
    order = Order.objects.get()
    assert (order.payment_intent_id, order.payment_intent_cancel_due) == (made[0].id, True)
    assert order.payment_client_secret == ""
    assert client.v1.payment_intents.retrieve(made[0].id).status == "requires_payment_method"

    # and once Stripe answers, the payments sweep cancels it: before, nothing recorded the intent, and it
    # stayed open at Stripe for good
    settings.STRIPE_API_BASE = stripe_api.url
    swept = payments.payments_reconcile()

    assert swept["intents_cancelled"] == 1
    assert client.v1.payment_intents.retrieve(made[0].id).status == "canceled"
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is False
    cancelled = OrderEvent.objects.filter(order=order, kind="payment_intent_cancelled")
    assert list(cancelled.values_list("note", flat=True)) == ["cancelled"]


def test_unknown_sku_and_bad_items_are_clear_errors(api):
    user = UserFactory.create()
    api.force_authenticate(user)
    asset = asset_for(user)

    unknown = api.post(
        "/api/v1/quotes",
        {"items": [{"sku": "NOPE", "asset": str(asset.pk), "copies": 1}], "shipping_method": "standard"},
        format="json",
    )
    zero = api.post(
        "/api/v1/quotes",
        {
            "items": [{"sku": "PRINT-4X6-LUSTRE", "asset": str(asset.pk), "copies": 0}],
            "shipping_method": "standard",
        },
        format="json",
    )
    junk = api.post("/api/v1/quotes", "{not json", content_type="application/json")

    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_sku")
    assert (zero.status_code, zero.json()["code"]) == (400, "invalid_request")
    assert (junk.status_code, junk.json()["code"]) == (400, "malformed_request")


@pytest.mark.parametrize("asked_for", ["quote", "order"])
def test_a_deactivated_product_can_be_neither_quoted_nor_ordered(api, asked_for):
    # given a product the lab took out of its catalog (the catalog fixture seeded it active)
    user = UserFactory.create()
    api.force_authenticate(user)
    Product.objects.filter(sku="PRINT-4X6-LUSTRE").update(is_active=False)
    body = order_body(asset_for(user))

    # when a customer quotes it (a plain read), or orders it (read FOR SHARE in the order's transaction)
    if asked_for == "quote":
        response = api.post(
            "/api/v1/quotes", {"items": body["items"], "shipping_method": "standard"}, format="json"
        )
    else:
        response = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="retired")

    # then it is refused as a product that does not exist, and nothing is kept
    assert (response.status_code, response.json().get("code")) == (400, "unknown_sku"), response.json()
    assert response.json()["sku"] == "PRINT-4X6-LUSTRE"
    assert (Order.objects.count(), IdempotencyKey.objects.count()) == (0, 0)


def test_products_are_listed_and_filterable(api):
    response = api.get("/api/v1/products?paper=metallic")

    assert response.status_code == 200
    assert [p["sku"] for p in response.json()["results"]] == [
        "PRINT-4X6-METALLIC",
        "PRINT-5X7-METALLIC",
        "PRINT-8X10-METALLIC",
        "PRINT-11X14-METALLIC",
    ]
    assert api.get("/api/v1/products").json()["count"] == 16


def test_schema_and_docs_are_served(api):
    schema = api.get("/api/v1/schema/")
    docs = api.get("/api/v1/docs/")

    assert schema.status_code == 200
    assert b"/api/v1/orders" in schema.content
    assert docs.status_code == 200


GUEST = {"email": "Guest@Example.org", "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_guest_retries_with_one_key_all_get_the_order_and_a_working_token(live_server):
    payload = json.dumps(order_body(asset_for(None), guest=GUEST)).encode()
    answers: list[tuple[int, dict[str, object]]] = []
    barrier = threading.Barrier(20)

    def submit() -> None:
        request = urllib.request.Request(
            f"{live_server.url}/api/v1/orders",
            data=payload,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": "guest-retry"},
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answers.append((response.status, json.load(response)))
        except urllib.error.HTTPError as error:
            answers.append((error.code, json.load(error)))

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(status for status, _ in answers) == [200] * 19 + [201], answers
    assert len({body["ref"] for _, body in answers}) == 1
    assert len({body["guest_token"] for _, body in answers}) == 1
    ref, token = answers[0][1]["ref"], answers[0][1]["guest_token"]
    assert isinstance(token, str) and token
    read = urllib.request.Request(f"{live_server.url}/api/v1/orders/{ref}", headers={"X-Order-Token": token})
    with urllib.request.urlopen(read, timeout=60) as response:
        assert (response.status, json.load(response)["ref"]) == (200, ref)
    assert Order.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1


def test_a_guest_replay_returns_the_token_that_reads_and_cancels_the_order(api):
    body = order_body(asset_for(None), guest=GUEST)

    first = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="lost-answer")
    replay = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="lost-answer")

    assert (first.status_code, replay.status_code) == (201, 200)
    token = replay.json()["guest_token"]
    assert token == first.json()["guest_token"]
    ref = replay.json()["ref"]
    assert api.get(f"/api/v1/orders/{ref}", HTTP_X_ORDER_TOKEN=token).status_code == 200
    cancel = api.post(f"/api/v1/orders/{ref}/cancel", HTTP_X_ORDER_TOKEN=token)
    assert (cancel.status_code, cancel.json()["status"]) == (200, "cancelled")


def _kept_by_no_cache(response) -> tuple[str, set[str]]:
    vary = {name.strip().lower() for name in response.get("Vary", "").split(",") if name.strip()}
    return response.get("Cache-Control", ""), vary & {"x-order-token", "authorization"}


def test_an_orders_answers_are_kept_by_no_cache_and_vary_with_who_asks(api):
    # given a guest's order, placed with its token
    created = api.post(
        "/api/v1/orders", order_body(asset_for(None), guest=GUEST), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    ref, token = created.json()["ref"], created.json()["guest_token"]

    # when the guest reads it, changes its address and cancels it, and a customer lists theirs
    read = api.get(f"/api/v1/orders/{ref}", HTTP_X_ORDER_TOKEN=token)
    changed = api.patch(
        f"/api/v1/orders/{ref}", {"shipping_address": ADDRESS}, format="json", HTTP_X_ORDER_TOKEN=token
    )
    cancelled = api.post(f"/api/v1/orders/{ref}/cancel", HTTP_X_ORDER_TOKEN=token)
    api.force_authenticate(UserFactory.create())
    listed = api.get("/api/v1/orders")

    # then each answer (the address, the client secret, the token) is for no cache to keep, and one keyed
    # by the URL alone would not serve it to another asker (before, none said either: a shared cache could
    # serve the guest's page to anyone who knows the ref printed on the slip)
    answers = [created, read, changed, cancelled, listed]
    assert [answer.status_code for answer in answers] == [201, 200, 200, 200, 200]
    assert [_kept_by_no_cache(answer) for answer in answers] == [
        ("private, no-store", {"x-order-token", "authorization"})
    ] * 5


def test_customers_idempotency_keys_are_scoped_per_customer(api):
    # given two customers whose apps both name their first checkout "checkout-1"
    first, second = UserFactory.create(), UserFactory.create()
    bodies = {first: order_body(asset_for(first)), second: order_body(asset_for(second))}

    # when each places an order with that key
    answers = []
    for customer, body in bodies.items():
        api.force_authenticate(customer)
        answers.append(api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="checkout-1"))

    # then each gets an order of their own: the key is not another customer's replay (nor a 409)
    assert [answer.status_code for answer in answers] == [201, 201], [answer.json() for answer in answers]
    assert answers[0].json()["ref"] != answers[1].json()["ref"]
    assert [Order.objects.filter(customer=customer).count() for customer in (first, second)] == [1, 1]
    assert IdempotencyKey.objects.count() == 2


def test_guest_idempotency_keys_are_scoped_per_guest(api):
    first_guest = order_body(asset_for(None), guest=GUEST)
    other_guest = order_body(asset_for(None), guest={**GUEST, "email": "someone.else@example.org"})
    same_guest_other_case = {**first_guest, "guest": {**GUEST, "email": "guest@example.org"}}

    first = api.post("/api/v1/orders", first_guest, format="json", HTTP_IDEMPOTENCY_KEY="checkout-1")
    other = api.post("/api/v1/orders", other_guest, format="json", HTTP_IDEMPOTENCY_KEY="checkout-1")
    reused = api.post(
        "/api/v1/orders", same_guest_other_case, format="json", HTTP_IDEMPOTENCY_KEY="checkout-1"
    )

    assert (first.status_code, other.status_code) == (201, 201)
    assert first.json()["ref"] != other.json()["ref"]
    assert first.json()["guest_token"] != other.json()["guest_token"]
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    assert Order.objects.count() == 2
    assert sorted(IdempotencyKey.objects.values_list("scope", flat=True)) == sorted(
        "guest:" + hashlib.sha256(email.encode()).hexdigest()
        for email in ("guest@example.org", "someone.else@example.org")
    )


def test_an_order_over_the_payment_providers_maximum_is_refused_before_anything_is_stored(api):
    user = UserFactory.create()
    api.force_authenticate(user)
    ProductFactory.create(sku="PRINT-MURAL", price_minor=1_000_000)
    asset = asset_for(user)
    too_much = order_body(asset, items=[{"sku": "PRINT-MURAL", "asset": str(asset.pk), "copies": 100}])

    quote = api.post("/api/v1/quotes", {**too_much, "shipping_method": "pickup"}, format="json")
    order = api.post("/api/v1/orders", too_much, format="json", HTTP_IDEMPOTENCY_KEY="big")

    assert (quote.status_code, quote["Content-Type"]) == (400, "application/problem+json")
    assert (quote.json()["code"], quote.json()["max_total_minor"]) == ("order_total_too_large", 99_999_999)
    assert quote.json()["total_minor"] == 100_000_000
    assert (order.status_code, order.json()["code"]) == (400, "order_total_too_large")
    assert order.json()["total_minor"] == 100_000_000 + 499
    assert Order.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def test_an_order_under_the_card_payments_minimum_is_refused_before_anything_is_stored(api):
    """Stripe refuses a PaymentIntent under its minimum charge (50 cents): before, the order was stored and
    answered 502 `payment_provider_unavailable` ("retry"), which failed the same way at every retry, and a
    guest's photo stayed bound to that order. A quote of it is still answered: more may be added."""
    user = UserFactory.create()
    api.force_authenticate(user)
    ProductFactory.create(sku="PRINT-WALLET", price_minor=35)
    asset = asset_for(user)
    line = {"sku": "PRINT-WALLET", "asset": str(asset.pk), "copies": 1}
    body = order_body(asset, items=[line], shipping_method="pickup")

    quote = api.post("/api/v1/quotes", {"items": [line], "shipping_method": "pickup"}, format="json")
    order = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="small")
    two = api.post(
        "/api/v1/orders",
        {**body, "items": [{**line, "copies": 2}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="small-2",
    )

    assert (quote.status_code, quote.json()["total_minor"]) == (200, 35)
    assert (order.status_code, order.json()["code"]) == (400, "order_total_too_small")
    assert (order.json()["total_minor"], order.json()["min_total_minor"]) == (35, 50)
    assert (two.status_code, two.json()["total_minor"]) == (201, 70)  # the same key space: nothing was kept
    assert Order.objects.count() == 1 and IdempotencyKey.objects.count() == 1


def test_an_order_of_exactly_the_maximum_is_accepted(api):
    user = UserFactory.create()
    api.force_authenticate(user)
    ProductFactory.create(sku="PRINT-MURAL", price_minor=99_999_999)
    asset = asset_for(user)
    body = order_body(
        asset,
        items=[{"sku": "PRINT-MURAL", "asset": str(asset.pk), "copies": 1}],
        shipping_method="pickup",
    )

    response = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="max")

    assert response.status_code == 201, response.json()
    assert response.json()["total_minor"] == 99_999_999


def quote_of_lines(api, *, copies: int, items: int):
    """A signed-in customer's quote of `items` lines of one photo, `copies` each."""
    user = UserFactory.create()
    api.force_authenticate(user)
    line = {"sku": "PRINT-4X6-LUSTRE", "asset": str(asset_for(user).pk), "copies": copies}
    return api.post("/api/v1/quotes", {"items": [line] * items, "shipping_method": "pickup"}, format="json")


@pytest.mark.parametrize(("copies", "items"), [(501, 1), (1, 501)])
def test_copies_and_items_per_order_are_capped(api, copies, items):
    response = quote_of_lines(api, copies=copies, items=items)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert "items" in response.json()["errors"]


@pytest.mark.parametrize(
    ("copies", "items"), [(MAX_COPIES_PER_ITEM, 1), (1, MAX_ITEMS_PER_ORDER)], ids=["copies", "items"]
)
def test_copies_and_items_per_order_at_their_caps_are_quoted(api, copies, items):
    response = quote_of_lines(api, copies=copies, items=items)

    assert response.status_code == 200, response.json()
    assert [item["copies"] for item in response.json()["items"]] == [copies] * items


@pytest.mark.parametrize(("country", "stored"), [("US", "US"), ("DE", "DE"), ("de", "DE")])
def test_iso_country_codes_are_accepted(api, country, stored):
    user = UserFactory.create()
    api.force_authenticate(user)

    response = api.post(
        "/api/v1/orders",
        order_body(asset_for(user), shipping_address={**ADDRESS, "country": country}),
        format="json",
        HTTP_IDEMPOTENCY_KEY="c",
    )

    assert response.status_code == 201, response.json()
    assert Order.objects.get().shipping_address["country"] == stored


@pytest.mark.parametrize("country", ["XX", "ZZ", "UK", "1A", "ÄÖ"])
def test_country_codes_outside_iso_3166_are_refused(api, country):
    user = UserFactory.create()
    api.force_authenticate(user)

    response = api.post(
        "/api/v1/orders",
        order_body(asset_for(user), shipping_address={**ADDRESS, "country": country}),
        format="json",
        HTTP_IDEMPOTENCY_KEY="c",
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert list(response.json()["errors"]["shipping_address"]) == ["country"]
    assert Order.objects.count() == 0


@pytest.mark.parametrize("stripe_is", ["refusing", "stalled"])
def test_an_order_stripe_cannot_prepare_is_kept_and_its_retry_gets_the_payment(
    api, settings, stripe_api, stripe_is
):
    user = UserFactory.create()
    api.force_authenticate(user)
    body = order_body(asset_for(user))
    settings.STRIPE_TIMEOUT_SECONDS = 1

    # when Stripe refuses connections, or takes them and never answers
    with contextlib.ExitStack() as stack:
        refusing = "http://127.0.0.1:9"  # the discard port: nothing listens
        settings.STRIPE_API_BASE = refusing if stripe_is == "refusing" else stack.enter_context(stalled())
        started = time.monotonic()
        first = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
        waited = time.monotonic() - started

    # then the customer is told at once (three tries of 1 s, not the SDK's 80 s each), and the order is kept
    assert (first.status_code, first.json()["code"]) == (502, "payment_provider_unavailable"), first.json()
    assert waited < 20
    (order,) = Order.objects.all()
    assert (order.status, order.payment_intent_id) == ("awaiting_payment", "")

    # and the retry with the same key, Stripe back, gets that order with its payment
    settings.STRIPE_API_BASE = stripe_api.url
    retry = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert retry.status_code == 200, retry.json()
    assert retry.json()["ref"] == order.ref
    assert retry.json()["payment"]["payment_intent"].startswith("pi_")
    assert Order.objects.count() == 1


@pytest.mark.parametrize("email", TOO_LONG_EMAILS.values(), ids=TOO_LONG_EMAILS.keys())
def test_a_guest_email_longer_than_its_column_is_refused_with_nothing_stored(api, email):
    # Before: a 500 from PostgreSQL's "value too long" (the order rolled back, the customer told nothing).
    api.raise_request_exception = False
    body = order_body(asset_for(None), guest={**GUEST, "email": email})

    response = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="long-email")

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert "email" in json.dumps(response.json())
    assert (Order.objects.count(), IdempotencyKey.objects.count()) == (0, 0)
