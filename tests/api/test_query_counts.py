"""The number of database queries of the main API requests, pinned: the same for 1 and for 5 items.

Counts are as the test client sees them inside the test's transaction, so an `atomic()` block shows up as a
SAVEPOINT and a RELEASE where production sends BEGIN and COMMIT. Requests authenticate with an API token,
as a phone app does (the token with its user and roles in one query, and the token's last-used stamp once
per minute).
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from lab.accounts.services import policy_current
from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import Order
from tests.builders import asset_for, basket_of, customer_with_photos, order_post
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db

GUEST = {"email": "guest@example.org", "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}


@pytest.fixture(autouse=True)
def lab_data() -> None:
    """The catalog, and the published privacy policy a lab always has (migrations publish it; a transactional
    test that ran before this one in the same process flushed it away)."""
    catalog_seed_demo()
    policy_current()


@pytest.mark.parametrize("items", [1, 5])
def test_quote_takes_three_queries_for_any_basket(api, django_assert_num_queries, items):
    # given a customer with photos; when they ask for a quote
    client, asset_ids = customer_with_photos(api, items)

    # then: token (with user and roles), products, photos (one query for all of them)
    with django_assert_num_queries(3):
        response = client.post(
            "/api/v1/quotes", {"items": basket_of(asset_ids), "shipping_method": "standard"}, format="json"
        )

    assert response.status_code == 200, response.json()
    assert len(response.json()["items"]) == items


@pytest.mark.parametrize("items", [1, 5])
def test_order_create_takes_thirteen_queries_for_any_basket(
    api, django_assert_num_queries, items, stripe_api
):
    client, asset_ids = customer_with_photos(api, items)

    # token (with user and roles), idempotency lookup; savepoint, key insert, products, photos (read
    # locked), order, order sealed with its key, items (one insert), event, key update, release;
    # PaymentIntent stored (the answer shows the rows as written: nothing read back)
    with django_assert_num_queries(13):
        response = order_post(client, basket_of(asset_ids), "k-1")

    assert response.status_code == 201, response.json()
    assert len(response.json()["items"]) == items
    assert Order.objects.get().items.count() == items


@pytest.mark.parametrize("items", [1, 5])
def test_guest_order_create_takes_fifteen_queries_for_any_basket(
    api, django_assert_num_queries, items, stripe_api
):
    asset_ids = [
        api.post(
            "/api/v1/assets", {"file": SimpleUploadedFile("p.jpg", jpeg_bytes())}, format="multipart"
        ).json()["id"]
        for _ in range(items)
    ]

    # idempotency lookup, policy version; savepoint, key insert, products, photos (read locked), order,
    # order sealed with its key, items, photos bound to the order, event, consent, key update, release;
    # PaymentIntent stored
    with django_assert_num_queries(15):
        response = order_post(api, basket_of(asset_ids), "g-1", guest=GUEST)

    assert response.status_code == 201, response.json()
    assert len(response.json()["items"]) == items


@pytest.mark.parametrize("items", [1, 5])
def test_order_detail_takes_four_queries_for_any_basket(api, django_assert_num_queries, items, stripe_api):
    client, asset_ids = customer_with_photos(api, items)
    ref = order_post(client, basket_of(asset_ids), "k-1").json()["ref"]

    # token (with user and roles), order; items with their products, events
    with django_assert_num_queries(4):
        response = client.get(f"/api/v1/orders/{ref}")

    assert response.status_code == 200, response.json()
    assert len(response.json()["items"]) == items


@pytest.mark.parametrize("items", [1, 5])
def test_guest_order_detail_takes_three_queries_for_any_basket(
    api, django_assert_num_queries, items, stripe_api
):
    asset_ids = [str(asset_for(None).pk) for _ in range(items)]
    created = order_post(api, basket_of(asset_ids), "g-1", guest=GUEST).json()

    # order; items with their products, events
    with django_assert_num_queries(3):
        response = api.get(f"/api/v1/orders/{created['ref']}", HTTP_X_ORDER_TOKEN=created["guest_token"])

    assert response.status_code == 200, response.json()
    assert len(response.json()["items"]) == items


@pytest.mark.parametrize("orders", [1, 5])
def test_order_list_takes_three_queries_for_any_number_of_orders(api, django_assert_num_queries, orders):
    client, asset_ids = customer_with_photos(api, 2)
    for number in range(orders):
        order_post(client, basket_of(asset_ids), f"k-{number}")

    # token (with user and roles), count, page
    with django_assert_num_queries(3):
        response = client.get("/api/v1/orders")

    assert response.status_code == 200, response.json()
    assert response.json()["count"] == orders


def test_asset_upload_takes_nine_queries(api, django_assert_num_queries):
    client, _ = customer_with_photos(api, 0)

    # token (with user and roles); savepoint, data key insert, wrapped key stored, release; savepoint, asset
    # insert, the account's row (FOR KEY SHARE: not erased meanwhile, tests/privacy/test_erasure_races.py),
    # release (outside a test's transaction the two savepoints are a BEGIN and a COMMIT each)
    with django_assert_num_queries(9):
        response = client.post(
            "/api/v1/assets", {"file": SimpleUploadedFile("p.jpg", jpeg_bytes())}, format="multipart"
        )

    assert response.status_code == 201, response.json()


def test_an_order_replayed_by_its_key_reads_its_items_and_events_back(
    api, django_assert_num_queries, stripe_api
):
    client, asset_ids = customer_with_photos(api, 5)
    order_post(client, basket_of(asset_ids), "k-1")

    # token (with user and roles), idempotency lookup, its order; items with their products, events
    with django_assert_num_queries(5):
        response = order_post(client, basket_of(asset_ids), "k-1")

    assert response.status_code == 200, response.json()
    assert [item["position"] for item in response.json()["items"]] == [1, 2, 3, 4, 5]
