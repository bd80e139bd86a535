"""Malformed identifiers in paths, query strings and headers answer 4xx problem+json, never a 500.

PostgreSQL refuses a NUL byte in a query, so every identifier is checked before it reaches the database.
"""

from __future__ import annotations

import pytest

from lab.accounts.tokens import api_token_issue
from lab.orders.models import Order
from tests.builders import UserFactory

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/v1/orders/PL-%00", 404, "order_not_found"),
        ("post", "/api/v1/orders/PL-%00/cancel", 404, "order_not_found"),
        ("get", "/api/v1/orders/PL-0000000000%00", 404, "order_not_found"),
        ("get", "/api/v1/orders/pl-0123456789ab", 404, "order_not_found"),
        ("get", "/api/v1/orders/PL-0123456789AU", 404, "order_not_found"),  # U is not in the alphabet
        ("get", "/api/v1/orders/" + "A" * 5000, 404, "order_not_found"),
    ],
)
def test_anonymous_order_paths_with_malformed_refs_are_404(api, method, path, status, code):
    response = getattr(api, method)(path, HTTP_X_ORDER_TOKEN="t")

    assert (response.status_code, response["Content-Type"], response.json()["code"]) == (
        status,
        PROBLEM,
        code,
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/v1/assets/%00", 404, "asset_not_found"),
        ("get", "/api/v1/assets/%00/content", 404, "asset_not_found"),
        ("get", "/api/v1/assets/not-a-uuid", 404, "asset_not_found"),
        ("get", "/api/v1/webhook-endpoints/%00", 404, "not_found"),
        ("delete", "/api/v1/webhook-endpoints/%00", 404, "not_found"),
        ("get", "/api/v1/webhook-endpoints/%00/deliveries", 404, "not_found"),
        ("post", "/api/v1/webhook-deliveries/%00/redeliver", 404, "not_found"),
        ("get", "/api/v1/orders?status=%00", 400, "invalid_request"),
        ("get", "/api/v1/orders?page=%00", 404, "not_found"),
        ("get", "/api/v1/products?paper=%00", 400, "invalid_request"),
    ],
)
def test_customer_paths_and_filters_with_nul_bytes_are_4xx(api, method, path, status, code):
    api.force_authenticate(UserFactory.create())

    response = getattr(api, method)(path)

    assert (response.status_code, response["Content-Type"], response.json()["code"]) == (
        status,
        PROBLEM,
        code,
    )


@pytest.mark.parametrize("name", ["order_ref", "asset_id", "employee", "action"])
def test_audit_filters_with_nul_bytes_are_400(api, name):
    api.force_authenticate(UserFactory.create(roles=["auditor"]))

    response = api.get(f"/api/v1/audit/records?{name}=a%00b")

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


def test_a_token_with_a_nul_byte_is_refused_as_unauthenticated(api):
    api_token_issue(user=UserFactory.create(), name="test")

    response = api.get("/api/v1/me", HTTP_AUTHORIZATION="Token abc\x00def")

    assert (response.status_code, response["Content-Type"], response.json()["code"]) == (
        401,
        PROBLEM,
        "authentication_failed",
    )


def test_an_idempotency_key_with_a_nul_byte_is_refused_and_nothing_is_stored(api):
    api.force_authenticate(UserFactory.create())

    response = api.post("/api/v1/orders", {}, format="json", HTTP_IDEMPOTENCY_KEY="k\x00")

    assert (response.status_code, response.json()["code"]) == (400, "idempotency_key_required")
    assert Order.objects.count() == 0


@pytest.mark.parametrize("path", ["/lab/orders/PL-%00/", "/lab/orders/PL-%00/hold/", "/lab/packing/PL-%00/"])
def test_staff_pages_answer_404_for_a_malformed_order_ref(path):
    from tests.builders import client_as

    supervisor, _ = client_as("supervisor", "packer")
    assert supervisor.get(path).status_code == 404


def test_a_scanned_code_with_a_nul_byte_is_refused_not_a_server_error():
    from tests.builders import client_as

    packer, _ = client_as("packer")
    response = packer.post("/lab/packing/scan/", {"code": "PL-\x00ABC"})
    assert response.status_code < 500
