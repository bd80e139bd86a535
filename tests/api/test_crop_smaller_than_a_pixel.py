"""A crop rectangle must cover at least one of the photo's pixels on each side: a thinner one is a 400
`crop_out_of_bounds`, never a 500, and no problem carries a number JSON cannot hold.

Before: a crop 1e-320 high passed validation, its aspect in the photo's pixels overflowed to infinity, and
the `crop_aspect_mismatch` problem carrying it could not be rendered (DRF's JSON is strict): POST quotes,
orders and proofs answered 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from api.errors import ProblemJSONRenderer, problem_exception_handler
from lab.audit.models import AuditRecord
from lab.catalog.errors import CatalogError
from lab.lib.errors import DomainError
from lab.orders.models import IdempotencyKey, Order
from tests.builders import asset_for, order_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo_catalog")]

SKU = "PRINT-4X6-LUSTRE"
PROBLEM = "application/problem+json"
PHOTO_WIDTH, PHOTO_HEIGHT = 1800, 1200
THINNER_THAN_A_PIXEL = [
    {"x": 0, "y": 0, "width": 1, "height": 1e-320},  # a subnormal float: width / height is infinite
    # half a pixel high, at the print's 3:2: the aspect is right, the region is not a pixel
    {"x": 0, "y": 0, "width": 0.75 / PHOTO_WIDTH, "height": 0.5 / PHOTO_HEIGHT},
]


def _quote(api, asset, crop: dict[str, Any]):
    item = {"sku": SKU, "asset": str(asset.pk), "copies": 1, "crop": crop}
    return api.post("/api/v1/quotes", {"items": [item], "shipping_method": "pickup"}, format="json")


@pytest.mark.parametrize("crop", THINNER_THAN_A_PIXEL, ids=["1e-320-high", "half-a-pixel"])
def test_a_quote_with_a_crop_thinner_than_a_pixel_is_a_400_problem(api, customer, crop):
    asset = asset_for(customer, width=PHOTO_WIDTH, height=PHOTO_HEIGHT)

    response = _quote(api, asset, crop)

    assert (response.status_code, response["Content-Type"]) == (400, PROBLEM)
    body = json.loads(response.content)  # the body as sent: JSON, with finite numbers only
    assert (body["code"], body["position"]) == ("crop_out_of_bounds", 1)
    assert "at least one pixel" in body["detail"]
    assert (body["min_width"], body["min_height"]) == (1 / PHOTO_WIDTH, 1 / PHOTO_HEIGHT)


@pytest.mark.parametrize("crop", THINNER_THAN_A_PIXEL, ids=["1e-320-high", "half-a-pixel"])
def test_a_proof_with_a_crop_thinner_than_a_pixel_is_a_400_and_reads_no_photo(api, customer, crop):
    asset = asset_for(customer, width=PHOTO_WIDTH, height=PHOTO_HEIGHT)

    response = api.post("/api/v1/proofs", {"sku": SKU, "asset": str(asset.pk), "crop": crop}, format="json")

    assert (response.status_code, response["Content-Type"]) == (400, PROBLEM)
    assert json.loads(response.content)["code"] == "crop_out_of_bounds"
    assert AuditRecord.objects.count() == 0


def test_a_crop_of_one_pixel_is_a_region(api, customer):
    asset = asset_for(customer, width=PHOTO_WIDTH, height=PHOTO_HEIGHT)
    one_pixel = {"x": 0.5, "y": 0.5, "width": 1.5 / PHOTO_WIDTH, "height": 1 / PHOTO_HEIGHT}

    response = _quote(api, asset, one_pixel)

    assert response.status_code == 200, response.json()
    assert response.json()["items"][0]["crop_box_px"] == {"x": 900, "y": 600, "width": 1, "height": 1}


@pytest.mark.usefixtures("stripe_api")
@pytest.mark.parametrize("crop", THINNER_THAN_A_PIXEL, ids=["1e-320-high", "half-a-pixel"])
def test_an_order_with_a_crop_thinner_than_a_pixel_is_a_400_and_stores_nothing(api, customer, crop):
    asset = asset_for(customer, width=PHOTO_WIDTH, height=PHOTO_HEIGHT)
    items = [{"sku": SKU, "asset": str(asset.pk), "copies": 1, "crop": crop}]

    response = api.post(
        "/api/v1/orders", order_body(asset, items=items), format="json", HTTP_IDEMPOTENCY_KEY="thin-1"
    )

    assert (response.status_code, response["Content-Type"]) == (400, PROBLEM)
    assert json.loads(response.content)["code"] == "crop_out_of_bounds"
    assert (Order.objects.count(), IdempotencyKey.objects.count()) == (0, 0)


def test_a_problem_detail_that_is_not_a_finite_number_goes_out_as_null():
    refusal = DomainError(
        CatalogError.CROP_ASPECT_MISMATCH,
        "The crop rectangle's aspect is not this print's.",
        crop_aspect=math.inf,
        expected_aspect=1.5,
        seen={"ratios": [-math.inf, math.nan, 2.0]},
    )

    response = problem_exception_handler(refusal, {})

    assert response is not None
    body = json.loads(ProblemJSONRenderer().render(response.data))  # strict JSON, as the API renders
    assert (body["crop_aspect"], body["expected_aspect"], body["seen"]) == (
        None,
        1.5,
        {"ratios": [None, None, 2.0]},
    )
