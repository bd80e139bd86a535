"""Crop and placement per item (issue 14): every option in quotes and orders, the crop box and effective DPI
they return, orientation choices on landscape and portrait photos, and each refusal with its problem code."""

from __future__ import annotations

from typing import Any

import pytest

from lab.catalog.placement import CropRect, FocalPoint, PlacementOptions
from lab.orders.models import IdempotencyKey, Order, OrderItem
from tests.builders import asset_for, order_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo_catalog")]

SKU = "PRINT-4X6-LUSTRE"  # 4x6 in, minimum 150 DPI
PROBLEM = "application/problem+json"


def _quote(api, asset, sizing: str = "fill", **options: Any):
    item = {"sku": SKU, "asset": str(asset.pk), "copies": 1, "sizing": sizing, **options}
    return api.post("/api/v1/quotes", {"items": [item], "shipping_method": "pickup"}, format="json")


def _line(api, asset, sizing: str = "fill", **options: Any) -> dict[str, Any]:
    response = _quote(api, asset, sizing, **options)
    assert response.status_code == 200, response.json()
    line: dict[str, Any] = response.json()["items"][0]
    return line


def _box(line: dict[str, Any]) -> tuple[int, int, int, int]:
    box = line["crop_box_px"]
    return box["x"], box["y"], box["width"], box["height"]


def test_without_options_a_quote_line_reports_the_centre_crop_and_echoes_the_defaults(api, customer):
    # given a 2400x1200 (2:1) landscape photo on 4x6
    asset = asset_for(customer, width=2400, height=1200)

    line = _line(api, asset)

    # then the 3:2 box is centred: 1800x1200 from x=300, at 1800 / 6 in = 300 DPI
    assert line["print_orientation"] == "landscape"
    assert _box(line) == (300, 0, 1800, 1200)
    assert line["effective_dpi"] == line["preflight"]["effective_dpi"] == 300
    assert (line["crop"], line["focal_point"], line["orientation"], line["border_mm"]) == (
        None,
        None,
        "auto",
        0.0,
    )
    assert line["preflight"]["cropped_percent"] == 25.0


def test_a_crop_rectangle_is_returned_in_the_photos_pixels_with_its_own_dpi(api, customer):
    # given the right half of a 2400x1600 photo, 1200x800 (3:2)
    asset = asset_for(customer, width=2400, height=1600)
    crop = {"x": 0.5, "y": 0.25, "width": 0.5, "height": 0.5}

    line = _line(api, asset, crop=crop)

    # then exactly that box prints, at 1200 / 6 in = 200 DPI: above the product's 150, no warning
    assert _box(line) == (1200, 400, 1200, 800)
    assert line["effective_dpi"] == 200
    assert line["crop"] == crop
    assert line["preflight"]["warnings"] == ["large_crop"]  # three quarters of the photo are left out


def test_a_small_crop_warns_of_low_resolution_from_the_boxs_dpi(api, customer):
    # given a photo that prints at 300 DPI whole, and a crop of a quarter of its width
    asset = asset_for(customer, width=1800, height=1200)

    whole = _line(api, asset)
    cropped = _line(api, asset, crop={"x": 0.0, "y": 0.0, "width": 0.25, "height": 0.25})

    assert (whole["effective_dpi"], whole["preflight"]["warnings"]) == (300, [])
    assert _box(cropped) == (0, 0, 450, 300)
    assert cropped["effective_dpi"] == cropped["preflight"]["effective_dpi"] == 75
    assert "low_resolution" in cropped["preflight"]["warnings"]


def test_a_focal_point_moves_the_crop_and_stays_inside_the_photo(api, customer):
    asset = asset_for(customer, width=3000, height=1200)  # 2.5:1; the 3:2 box is 1800x1200

    right = _line(api, asset, focal_point={"x": 0.9, "y": 0.5})
    left_third = _line(api, asset, focal_point={"x": 1 / 3, "y": 0.5})

    assert _box(right) == (1200, 0, 1800, 1200)  # pinned to the right edge
    assert _box(left_third) == (100, 0, 1800, 1200)  # centred on x = 1000
    assert right["focal_point"] == {"x": 0.9, "y": 0.5}


@pytest.mark.parametrize(
    ("photo", "orientation", "printed", "box"),
    [
        ((1800, 1200), "auto", "landscape", (0, 0, 1800, 1200)),
        ((1800, 1200), "landscape", "landscape", (0, 0, 1800, 1200)),
        ((1800, 1200), "portrait", "portrait", (500, 0, 800, 1200)),
        ((1200, 1800), "auto", "portrait", (0, 0, 1200, 1800)),
        ((1200, 1800), "portrait", "portrait", (0, 0, 1200, 1800)),
        ((1200, 1800), "landscape", "landscape", (0, 500, 1200, 800)),
        ((1500, 1500), "auto", "portrait", (250, 0, 1000, 1500)),
    ],
)
def test_orientation_choices_on_landscape_portrait_and_square_photos(
    api, customer, photo, orientation, printed, box
):
    asset = asset_for(customer, width=photo[0], height=photo[1])

    line = _line(api, asset, orientation=orientation)

    assert (line["print_orientation"], _box(line), line["orientation"]) == (printed, box, orientation)


def test_auto_orientation_follows_a_crop_and_exif_orientation(api, customer):
    # given a photo stored 1800x1200 but tagged "rotate 90": the customer sees it 1200x1800, portrait
    asset = asset_for(customer, width=1800, height=1200, orientation=6)

    whole = _line(api, asset)
    # a landscape 3:2 crop of the upright photo's top: 1200x800 pixels
    top = _line(api, asset, crop={"x": 0.0, "y": 0.0, "width": 1.0, "height": 800 / 1800})

    assert (whole["print_orientation"], _box(whole)) == ("portrait", (0, 0, 1200, 1800))
    assert (top["print_orientation"], _box(top)) == ("landscape", (0, 0, 1200, 800))


def test_a_border_narrows_the_image_area_and_is_counted_as_white_paper(api, customer):
    # given a 10 mm border on 4x6: the image area is 5.213 x 3.213 in (1.6225:1)
    asset = asset_for(customer, width=1800, height=1200)

    line = _line(api, asset, border_mm=10)

    assert line["border_mm"] == 10.0
    assert _box(line) == (0, 46, 1800, 1109)
    assert line["effective_dpi"] == 345  # 1800 px over 5.213 in
    assert line["preflight"]["border_percent"] == 30.2  # 1 - (5.213 x 3.213) / (6 x 4)


def test_fit_with_a_border_keeps_the_whole_photo(api, customer):
    asset = asset_for(customer, width=1200, height=1200)

    line = _line(api, asset, "fit", border_mm=5)

    assert (line["print_orientation"], _box(line)) == ("portrait", (0, 0, 1200, 1200))
    assert line["effective_dpi"] == 332  # 1200 px over the 3.606 in wide image area
    assert line["preflight"]["cropped_percent"] == 0.0


@pytest.mark.parametrize(
    ("sizing", "options", "code"),
    [
        ("fill", {"crop": {"x": 0.6, "y": 0.0, "width": 0.5, "height": 0.5}}, "crop_out_of_bounds"),
        ("fill", {"crop": {"x": -0.1, "y": 0.0, "width": 0.5, "height": 0.5}}, "crop_out_of_bounds"),
        ("fill", {"crop": {"x": 0.0, "y": 0.0, "width": 0.0, "height": 0.5}}, "crop_out_of_bounds"),
        ("fill", {"crop": {"x": 0.0, "y": 0.0, "width": 0.5, "height": 1.0}}, "crop_aspect_mismatch"),
        (
            "fill",
            {"crop": {"x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0}, "orientation": "portrait"},
            "crop_aspect_mismatch",
        ),
        (
            "fill",
            {"crop": {"x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0}, "focal_point": {"x": 0.5, "y": 0.5}},
            "crop_and_focal_point",
        ),
        ("fit", {"crop": {"x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0}}, "crop_requires_fill"),
        ("fit", {"focal_point": {"x": 0.5, "y": 0.5}}, "crop_requires_fill"),
        ("fill", {"focal_point": {"x": 0.5, "y": 1.5}}, "focal_point_out_of_bounds"),
        ("fill", {"border_mm": -1}, "border_out_of_range"),
        ("fill", {"border_mm": 26}, "border_out_of_range"),
        ("fill", {"orientation": "sideways"}, "invalid_request"),
        ("fill", {"crop": {"x": 0.0, "y": 0.0, "width": 1.0}}, "invalid_request"),
        ("fill", {"focal_point": {"x": "left", "y": 0.5}}, "invalid_request"),
    ],
)
def test_placement_refusals_are_problems_with_stable_codes(api, customer, sizing, options, code):
    asset = asset_for(customer, width=1800, height=1200)

    response = _quote(api, asset, sizing, **options)

    assert (response.status_code, response["Content-Type"], response.json()["code"]) == (400, PROBLEM, code)
    if code != "invalid_request":
        assert response.json()["position"] == 1


def test_refusals_name_the_item_and_say_what_was_expected(api, customer):
    asset = asset_for(customer, width=1800, height=1200)
    good = {"sku": SKU, "asset": str(asset.pk), "copies": 1}
    square = {**good, "crop": {"x": 0.0, "y": 0.0, "width": 2 / 3, "height": 1.0}}

    mismatch = api.post(
        "/api/v1/quotes", {"items": [good, square], "shipping_method": "pickup"}, format="json"
    )
    border = _quote(api, asset, border_mm=30).json()

    assert (mismatch.json()["code"], mismatch.json()["position"]) == ("crop_aspect_mismatch", 2)
    # auto orientation follows the crop, and a square one prints portrait: 2:3 is expected
    assert (mismatch.json()["crop_aspect"], mismatch.json()["expected_aspect"]) == (1.0, 0.6667)
    assert (border["code"], border["max_border_mm"]) == ("border_out_of_range", 25.4)


@pytest.mark.usefixtures("stripe_api")
def test_an_order_stores_the_options_and_returns_the_placement_on_create_and_read(api, customer):
    # given a basket with a crop, a focal point with a forced orientation, and a bordered fit
    asset = asset_for(customer, width=2400, height=1600)
    items = [
        {
            "sku": SKU,
            "asset": str(asset.pk),
            "copies": 1,
            "crop": {"x": 0.5, "y": 0.25, "width": 0.5, "height": 0.5},
        },
        {
            "sku": SKU,
            "asset": str(asset.pk),
            "copies": 1,
            "focal_point": {"x": 0.1, "y": 0.5},
            "orientation": "portrait",
        },
        {"sku": SKU, "asset": str(asset.pk), "copies": 1, "sizing": "fit", "border_mm": 3},
    ]

    created = api.post(
        "/api/v1/orders", order_body(asset, items=items), format="json", HTTP_IDEMPOTENCY_KEY="p-1"
    )
    read = api.get(f"/api/v1/orders/{created.json()['ref']}")

    assert created.status_code == 201, created.json()
    for body in (created.json(), read.json()):
        crop, focal, fit = body["items"]
        assert (crop["print_orientation"], _box(crop), crop["effective_dpi"]) == (
            "landscape",
            (1200, 400, 1200, 800),
            200,
        )
        assert crop["crop"] == {"x": 0.5, "y": 0.25, "width": 0.5, "height": 0.5}
        assert (focal["print_orientation"], _box(focal), focal["focal_point"]) == (
            "portrait",
            (0, 0, 1067, 1600),
            {"x": 0.1, "y": 0.5},
        )
        assert (fit["sizing"], fit["border_mm"], _box(fit), fit["orientation"]) == (
            "fit",
            3.0,
            (0, 0, 2400, 1600),
            "auto",
        )
    stored = list(OrderItem.objects.order_by("position"))
    assert [item.placement_options for item in stored] == [
        PlacementOptions(crop=CropRect(x=0.5, y=0.25, width=0.5, height=0.5)),
        PlacementOptions(focal_point=FocalPoint(x=0.1, y=0.5), orientation="portrait"),
        PlacementOptions(border_mm=3.0),
    ]
    assert stored[0].crop_box_px == {"x": 1200, "y": 400, "width": 1200, "height": 800}


@pytest.mark.usefixtures("stripe_api")
def test_an_order_with_a_refused_placement_stores_nothing(api, customer):
    asset = asset_for(customer, width=1800, height=1200)
    items = [
        {"sku": SKU, "asset": str(asset.pk), "copies": 1, "crop": {"x": 0, "y": 0, "width": 1, "height": 0.5}}
    ]

    response = api.post(
        "/api/v1/orders", order_body(asset, items=items), format="json", HTTP_IDEMPOTENCY_KEY="p-2"
    )

    assert (response.status_code, response.json()["code"]) == (400, "crop_aspect_mismatch")
    assert Order.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def test_an_item_ordered_before_placement_options_reads_with_null_placement(api, customer):
    from tests.builders import order_for

    order = order_for(customer)

    item = api.get(f"/api/v1/orders/{order.ref}").json()["items"][0]

    assert (item["crop_box_px"], item["effective_dpi"], item["print_orientation"]) == (None, None, None)
    assert (item["crop"], item["focal_point"], item["orientation"], item["border_mm"]) == (
        None,
        None,
        "auto",
        0.0,
    )


def test_the_schema_documents_every_placement_field(api):
    schema = api.get("/api/v1/schema/?format=json").json()
    components = schema["components"]["schemas"]

    item_input = components["ItemInputRequest"]["properties"]
    for name in ("crop", "focal_point", "orientation", "border_mm"):
        assert item_input[name].get("description") or item_input[name].get("allOf"), name
    assert set(components["CropRectRequest"]["properties"]) == {"x", "y", "width", "height"}
    assert set(components["FocalPointRequest"]["properties"]) == {"x", "y"}
    for output in ("QuoteLineOutput", "OrderItemOutput"):
        properties = components[output]["properties"]
        assert {
            "crop",
            "focal_point",
            "orientation",
            "border_mm",
            "print_orientation",
            "crop_box_px",
            "effective_dpi",
        } <= set(properties), output
    assert set(components["PixelBoxOutput"]["properties"]) == {"x", "y", "width", "height"}
    assert components["OrderItemOutput"]["properties"]["effective_dpi"]["nullable"] is True
