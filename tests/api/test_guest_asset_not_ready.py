"""A photo that is not ready to print says why in the refusal: its status, and for a failed one its failure
code, so a guest (who cannot read `GET assets/{id}`) learns that a URL fetch failed and what to do."""

from __future__ import annotations

import pytest

from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import IdempotencyKey, Order
from lab.orders.photos import asset_fetch
from tests.builders import ADDRESS
from tests.support.http import serving

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_api")]

GUEST = {"email": "guest@example.org", "birth_date": "1985-02-03", "privacy_policy_version": "1.0"}


@pytest.fixture(autouse=True)
def catalog(settings) -> None:
    catalog_seed_demo()
    settings.ASSET_FETCH_ALLOW_PRIVATE = True  # the photo's server is on loopback
    settings.ASSET_FETCH_ALLOW_HTTP = True


def basket(asset_id: str) -> dict[str, object]:
    return {
        "items": [{"sku": "PRINT-4X6-LUSTRE", "asset": asset_id, "copies": 1, "sizing": "fill"}],
        "shipping_method": "standard",
    }


def test_a_guest_learns_that_their_photos_url_fetch_failed_and_why(api):
    # given a guest's photo by URL whose server answers 404, fetched by the worker
    with serving({}) as (base, asked):
        sent = api.post("/api/v1/assets", {"url": f"{base}/gone.jpg"}, format="json")
        asset_fetch(asset_id=sent.json()["id"])
    assert (sent.status_code, asked["/gone.jpg"]) == (202, 1)

    # when the guest quotes it, and orders it
    quote = api.post("/api/v1/quotes", basket(sent.json()["id"]), format="json")
    order = api.post(
        "/api/v1/orders",
        {**basket(sent.json()["id"]), "shipping_address": ADDRESS, "guest": GUEST},
        format="json",
        HTTP_IDEMPOTENCY_KEY="failed-photo",
    )

    # then both refusals say the photo failed, and why (before: "not ready to print", the same for a photo
    # still being fetched, one that failed and one purged)
    for refused in (quote, order):
        problem = refused.json()
        assert (refused.status_code, problem["code"], problem["asset"]) == (
            409,
            "asset_not_ready",
            sent.json()["id"],
        )
        assert (problem.get("asset_status"), problem.get("failure_code")) == ("failed", "url_fetch_status")
        assert "HTTP 404" in problem["detail"]
    assert (Order.objects.count(), IdempotencyKey.objects.count()) == (0, 0)


def test_a_photo_still_being_fetched_says_it_is_pending(api):
    # given a guest's photo by URL whose fetch has not run yet
    sent = api.post("/api/v1/assets", {"url": "http://127.0.0.1:9/photo.jpg"}, format="json")

    # when the guest quotes it
    quote = api.post("/api/v1/quotes", basket(sent.json()["id"]), format="json")

    # then the refusal says it is pending, with no failure to report
    problem = quote.json()
    assert (quote.status_code, problem["code"], problem.get("asset_status")) == (
        409,
        "asset_not_ready",
        "pending",
    )
    assert "failure_code" not in problem


def test_a_customer_asking_for_a_proof_of_a_photo_whose_fetch_failed_learns_why(api, customer):
    # given a signed-in customer's photo by URL whose server answers 404, fetched by the worker
    with serving({}) as (base, _):
        sent = api.post("/api/v1/assets", {"url": f"{base}/gone.jpg"}, format="json")
        asset_fetch(asset_id=sent.json()["id"])

    # when they ask for its proof
    proof = api.post(
        "/api/v1/proofs",
        {"sku": "PRINT-4X6-LUSTRE", "asset": sent.json()["id"], "sizing": "fill"},
        format="json",
    )

    # then the refusal says it failed and why, as a quote's does (before: "not ready to print", no status)
    problem = proof.json()
    assert (proof.status_code, problem["code"], problem.get("asset_status"), problem.get("failure_code")) == (
        409,
        "asset_not_ready",
        "failed",
        "url_fetch_status",
    )
