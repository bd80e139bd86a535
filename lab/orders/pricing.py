"""Prices and preflight: computed by the server only, from the catalog and the photo's facts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from django.conf import settings

from lab.catalog.models import Product
from lab.catalog.placement import NOMINAL_DPI, Placement, PlacementOptions, Sizing, placement_compute
from lab.orders.models import Asset, Order

# Stripe takes an amount of at most eight digits (99999999 minor units: USD 999,999.99); a larger order could
# never be paid, so it is refused before anything is stored.
MAX_ORDER_TOTAL_MINOR = 99_999_999
# And at least Stripe's minimum charge: a smaller PaymentIntent is refused (`amount_too_small`), and the order
# could never be paid (it was stored and answered 502 "retry"). In minor units, from Stripe's "Minimum and
# maximum charge amounts" (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts, read
# 2026-12-06; BGN from the page's earlier table, which listed it at 1.00). Stripe lists them by settlement
# currency: a charge converted to another settlement currency must reach that one's minimum, which no table
# here can know, so Stripe's own refusal is answered the same way (lab/orders/payments.py, ChargeTooSmall).
# A currency the page does not list falls back on USD's 50.
MIN_ORDER_TOTAL_MINOR = {
    "usd": 50,
    "aed": 200,
    "ars": 50,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "cop": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "idr": 50,
    "ils": 50,
    "inr": 50,
    "jpy": 50,  # zero-decimal: yen
    "krw": 50,  # zero-decimal: won
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "php": 50,
    "pln": 200,
    "ron": 200,
    "rub": 50,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
    "zar": 50,
}
MIN_ORDER_TOTAL_MINOR_DEFAULT = 50


def min_order_total_minor(currency: str) -> int:
    return MIN_ORDER_TOTAL_MINOR.get(currency.lower(), MIN_ORDER_TOTAL_MINOR_DEFAULT)


# Input limits of one order, checked by the API's serializers: a large event or wedding order fits.
MAX_COPIES_PER_ITEM = 500
MAX_ITEMS_PER_ORDER = 500


def shipping_price_minor(method: str) -> int:
    """The shipping price of `method`, in minor units of LAB_CURRENCY: the settings
    LAB_SHIPPING_STANDARD_MINOR and LAB_SHIPPING_EXPRESS_MINOR (lab/settings.py, which refuses to start
    without them for a currency their defaults were not priced in); a pickup costs nothing. Before, shipping
    was 499 and 1499 minor units whatever the currency: HUF 4.99, KRW 499."""
    prices = {
        Order.ShippingMethod.STANDARD: int(settings.LAB_SHIPPING_STANDARD_MINOR),
        Order.ShippingMethod.EXPRESS: int(settings.LAB_SHIPPING_EXPRESS_MINOR),
        Order.ShippingMethod.PICKUP: 0,
    }
    return prices[Order.ShippingMethod(method)]


class _ShippingPrices(Mapping[str, int]):
    """Shipping method → price in minor units, read from the settings at each look-up."""

    def __getitem__(self, method: str) -> int:
        if method not in Order.ShippingMethod.values:
            raise KeyError(method)
        return shipping_price_minor(method)

    def __iter__(self) -> Iterator[str]:
        return iter(Order.ShippingMethod.values)

    def __len__(self) -> int:
        return len(Order.ShippingMethod.values)


SHIPPING_PRICE_MINOR: Mapping[str, int] = _ShippingPrices()


@dataclass(frozen=True)
class LinePrice:
    unit_price_minor: int
    line_total_minor: int


def line_price(*, product: Product, copies: int) -> LinePrice:
    return LinePrice(unit_price_minor=product.price_minor, line_total_minor=product.price_minor * copies)


def line_placement(*, product: Product, asset: Asset, sizing: Sizing, options: PlacementOptions) -> Placement:
    """Where a ready photo lands on the product: the same function the rasterizer calls with the printer's
    DPI (the crop box and effective DPI do not depend on the DPI). Raises PlacementError for options that
    do not fit this photo and product."""
    width, height = asset.oriented_size
    return placement_compute(
        photo_width=width,
        photo_height=height,
        print_width_in=float(product.width_in),
        print_height_in=float(product.height_in),
        dpi=NOMINAL_DPI,
        sizing=sizing,
        options=options,
    )


def preflight(*, product: Product, asset: Asset, sizing: Sizing, placement: Placement) -> dict[str, object]:
    """What the print will look like: effective DPI of the crop box, how much is cropped or left white,
    colour notes."""
    warnings: list[str] = []
    width, height = asset.oriented_size
    area = placement.image_area
    photo_ratio, area_ratio = width / height, area.width / area.height
    mismatch = 1 - min(photo_ratio, area_ratio) / max(photo_ratio, area_ratio)
    box, photo_area = placement.crop_box, placement.photo_area
    cropped_percent = (
        round((1 - (box.width * box.height) / (width * height)) * 100, 1) if sizing == "fill" else 0.0
    )
    # White paper: the border, and in fit mode what the photo leaves of the image area.
    paper = placement.output_width * placement.output_height
    border_percent = round((1 - (photo_area.width * photo_area.height) / paper) * 100, 1)
    if placement.effective_dpi < product.min_dpi:
        warnings.append("low_resolution")
    if cropped_percent > 10:
        warnings.append("large_crop")
    if asset.has_icc_profile:
        profile = asset.icc_description or "unnamed"
        color_note = f"embedded profile '{profile}' will be converted to the printer profile"
    else:
        color_note = "no embedded profile: treated as sRGB"
    if asset.color_mode == "CMYK":
        warnings.append("cmyk_source")
    return {
        "state": "ok" if not warnings else "warning",
        "effective_dpi": placement.effective_dpi,
        "min_dpi": product.min_dpi,
        "aspect_ratio_mismatch_percent": round(mismatch * 100, 1),
        "cropped_percent": cropped_percent,
        "border_percent": border_percent,
        "color_note": color_note,
        "warnings": warnings,
    }
