"""Prices and preflight: computed by the server only, from the catalog and the photo's facts."""

from __future__ import annotations

from dataclasses import dataclass

from lab.catalog.models import Product
from lab.orders.models import Asset, Order

# Stripe takes an amount of at most eight digits (99999999 minor units: USD 999,999.99); a larger order could
# never be paid, so it is refused before anything is stored.
MAX_ORDER_TOTAL_MINOR = 99_999_999
# Input limits of one order, checked by the API's serializers: a large event or wedding order fits.
MAX_COPIES_PER_ITEM = 500
MAX_ITEMS_PER_ORDER = 500

SHIPPING_PRICE_MINOR = {
    Order.ShippingMethod.STANDARD: 499,
    Order.ShippingMethod.EXPRESS: 1499,
    Order.ShippingMethod.PICKUP: 0,
}


@dataclass(frozen=True)
class LinePrice:
    unit_price_minor: int
    line_total_minor: int


def line_price(*, product: Product, copies: int) -> LinePrice:
    return LinePrice(unit_price_minor=product.price_minor, line_total_minor=product.price_minor * copies)


def preflight(*, product: Product, asset: Asset, sizing: str) -> dict[str, object]:
    """What the print will look like: effective DPI after crop, how much `fill` crops, colour notes.

    The print's long side follows the photo's long side, the same rule the rasterizer applies.
    """
    warnings: list[str] = []
    if asset.status != Asset.Status.READY:
        return {"state": "pending", "warnings": ["asset_not_ready"]}
    width, height = asset.oriented_size
    long_px, short_px = max(width, height), min(width, height)
    long_in, short_in = float(product.height_in), float(product.width_in)
    photo_ratio = long_px / short_px
    print_ratio = long_in / short_in
    if sizing == "fill":
        # The photo is scaled to cover the paper; the tighter axis sets the resolution.
        effective_dpi = min(long_px / long_in, short_px / short_in)
        kept = min(photo_ratio, print_ratio) / max(photo_ratio, print_ratio)
        cropped_percent = round((1 - kept) * 100, 1)
        border_percent = 0.0
    else:
        # The whole photo fits inside the paper; the looser axis sets the resolution.
        effective_dpi = max(long_px / long_in, short_px / short_in)
        kept = min(photo_ratio, print_ratio) / max(photo_ratio, print_ratio)
        cropped_percent = 0.0
        border_percent = round((1 - kept) * 100, 1)
    effective_dpi = int(effective_dpi)
    if effective_dpi < product.min_dpi:
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
        "effective_dpi": effective_dpi,
        "min_dpi": product.min_dpi,
        "aspect_ratio_mismatch_percent": round((1 - kept) * 100, 1),
        "cropped_percent": cropped_percent,
        "border_percent": border_percent,
        "color_note": color_note,
        "warnings": warnings,
    }
