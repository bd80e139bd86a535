"""A guest's GET orders/{ref}/export holds that order's idempotency key only, never the keys and refs of
other guest orders placed with the same e-mail address (a mutation review found no test that failed when the
export read keys by the guest's scope instead of by order)."""

from __future__ import annotations

import pytest

from lab.catalog.demo import catalog_seed_demo
from tests.builders import asset_for, order_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_api")]

GUEST = {"email": "guest@example.org", "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}


def test_a_guest_export_lists_its_own_orders_key_only(api):
    catalog_seed_demo()
    first = api.post(
        "/api/v1/orders",
        order_body(asset_for(None), guest=GUEST),
        format="json",
        HTTP_IDEMPOTENCY_KEY="first-key",
    ).json()
    second = api.post(
        "/api/v1/orders",
        order_body(asset_for(None), guest=GUEST),
        format="json",
        HTTP_IDEMPOTENCY_KEY="second-key",
    ).json()

    exported = api.get(f"/api/v1/orders/{first['ref']}/export", HTTP_X_ORDER_TOKEN=first["guest_token"])

    assert exported.status_code == 200, exported.json()
    assert [(k["key"], k["order"]) for k in exported.json()["idempotency_keys"]] == [
        ("first-key", first["ref"])
    ]
    assert second["ref"] not in exported.content.decode()
