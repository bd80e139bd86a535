"""Writes for the catalog: a product is accepted only when a printer could ever print it.

A size with no entry in the PWG media table (printers.media) cannot be sent to any printer with the right
media, so it is refused here, when it is created, instead of being quoted, paid, rasterized and failing at
the printer. Whether a printer of this lab holds the size and paper today is reported by `printers_sync`
(`products_unprintable`): a product may be created before its printer is installed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lab.catalog.currency import currency_code
from lab.catalog.errors import CatalogError
from lab.catalog.models import Product
from lab.lib.errors import DomainError
from printers.media import UnknownMediaError, pwg_media_for_size


def product_media_check(*, width_in: Decimal, height_in: Decimal) -> str:
    """The PWG media name the size prints on; DomainError `product_size_unprintable` when there is none."""
    try:
        return pwg_media_for_size(width_inches=width_in, height_inches=height_in)
    except UnknownMediaError as error:  # a size of 0 or less, or past what a Decimal holds, too
        raise DomainError(
            CatalogError.PRODUCT_SIZE_UNPRINTABLE,
            f"No printer media is known for {_inches(width_in)}x{_inches(height_in)} in; "
            "add the size to printers.media first.",
        ) from error


def _inches(value: Decimal) -> str:
    try:
        return f"{value.normalize():f}"
    except ArithmeticError:  # too large to normalize: shown as given
        return str(value)


def product_save(*, sku: str, width_in: Decimal, height_in: Decimal, **fields: Any) -> tuple[Product, bool]:
    """Create or update a product by SKU after checking that its size is printable. Its currency is stored
    in lower case (`currency_code`), as the lab admin saves it: "HUF" beside "huf" was a mixed basket."""
    product_media_check(width_in=width_in, height_in=height_in)
    if "currency" in fields:
        fields["currency"] = currency_code(str(fields["currency"]))
    return Product.objects.update_or_create(
        sku=sku, defaults={"width_in": width_in, "height_in": height_in, **fields}
    )


def products_unprintable(*, printers: list[Any]) -> list[str]:
    """SKUs of active products that none of `printers` (Printer rows) holds in size and paper."""
    return [
        product.sku
        for product in Product.objects.filter(is_active=True)
        if not any(p.holds(size=product.size_label, paper=product.paper) for p in printers)
    ]
