"""A guest's photo is never a signed-in customer's: quoting or ordering it answers 404 `asset_not_found`,
whether a guest order holds it yet or not (README: "Another customer's order or photo answers 404"; "A
guest's photo is usable only by the first guest order that uses it"). A mutation review found no test that
failed when the photo's owner check let an owner-less (guest) photo through."""

from __future__ import annotations

import pytest

from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import Asset, Order
from tests.builders import UserFactory, asset_for, order_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_api")]

GUEST = {"email": "guest@example.org", "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}


@pytest.mark.parametrize("bound", [False, True], ids=["unordered", "in-a-guest-order"])
def test_a_customer_cannot_quote_or_order_a_guests_photo(api, bound):
    catalog_seed_demo()
    photo = asset_for(None)  # a guest's upload
    if bound:
        guest_order = api.post(
            "/api/v1/orders", order_body(photo, guest=GUEST), format="json", HTTP_IDEMPOTENCY_KEY="g-1"
        )
        assert guest_order.status_code == 201, guest_order.json()
    api.force_authenticate(UserFactory.create())

    quote = api.post(
        "/api/v1/quotes", {"items": order_body(photo)["items"], "shipping_method": "standard"}, format="json"
    )
    steal = api.post("/api/v1/orders", order_body(photo), format="json", HTTP_IDEMPOTENCY_KEY="c-1")

    assert (quote.status_code, quote.json().get("code")) == (404, "asset_not_found")
    assert (steal.status_code, steal.json().get("code")) == (404, "asset_not_found")
    assert Order.objects.filter(customer__isnull=False).count() == 0
    assert Asset.objects.get(pk=photo.pk).owner_id is None


def test_a_photo_a_guest_order_holds_is_no_other_guests_to_quote_or_order(api):
    # given a guest's photo in that guest's order
    catalog_seed_demo()
    photo = asset_for(None)
    first = api.post(
        "/api/v1/orders", order_body(photo, guest=GUEST), format="json", HTTP_IDEMPOTENCY_KEY="g-1"
    )
    assert first.status_code == 201, first.json()

    # when another guest who has learnt the photo's id quotes it, or orders it under another key
    quote = api.post(
        "/api/v1/quotes", {"items": order_body(photo)["items"], "shipping_method": "standard"}, format="json"
    )
    other = {**GUEST, "email": "other-guest@example.org"}
    second = api.post(
        "/api/v1/orders", order_body(photo, guest=other), format="json", HTTP_IDEMPOTENCY_KEY="g-2"
    )

    # then both answer 404 as for a photo that does not exist: no price, no preflight of its size or colour
    assert (quote.status_code, quote.json().get("code")) == (404, "asset_not_found")
    assert (second.status_code, second.json().get("code")) == (404, "asset_not_found")
    assert Order.objects.count() == 1
    assert Asset.objects.get(pk=photo.pk).guest_order_id == Order.objects.get().pk


def test_a_customers_photo_is_no_guests_to_quote_or_order(api):
    """The other way round: a guest may use only an unused guest photo, never one with an owner."""
    # given a signed-in customer's photo, in no order
    catalog_seed_demo()
    customer = UserFactory.create()
    photo = asset_for(customer)

    # when a guest (no account) who has learnt its id quotes it, or orders it
    quote = api.post(
        "/api/v1/quotes", {"items": order_body(photo)["items"], "shipping_method": "standard"}, format="json"
    )
    steal = api.post(
        "/api/v1/orders", order_body(photo, guest=GUEST), format="json", HTTP_IDEMPOTENCY_KEY="g-1"
    )

    # then both answer 404 as for a photo that does not exist, and the photo stays the customer's alone
    assert (quote.status_code, quote.json().get("code")) == (404, "asset_not_found")
    assert (steal.status_code, steal.json().get("code")) == (404, "asset_not_found")
    assert Order.objects.count() == 0
    assert Asset.objects.filter(pk=photo.pk, owner=customer, guest_order__isnull=True).exists()
