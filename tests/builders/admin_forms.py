"""The lab admin's change forms as a browser posts them, filled from a row (`changes` override fields)."""

from __future__ import annotations

from typing import Any

from lab.catalog.models import Product
from lab.production.models import Printer


def product_form(product: Product, **changes: Any) -> dict[str, Any]:
    fields = {
        "sku": product.sku,
        "name": product.name,
        "width_in": str(product.width_in),
        "height_in": str(product.height_in),
        "paper": product.paper,
        "price_minor": str(product.price_minor),
        "currency": product.currency,
        "min_dpi": str(product.min_dpi),
        "is_active": "on" if product.is_active else "",
    }
    return {**fields, **changes}


def printer_form(printer: Printer, **changes: Any) -> dict[str, Any]:
    fields = {
        "name": printer.name,
        "backend": printer.backend,
        "target": printer.target,
        "cups_server": printer.cups_server,
        "host": printer.host,
        "location": printer.location,
        "media_sizes": ", ".join(printer.media_sizes),
        "papers": printer.papers,
        "dpi": str(printer.dpi),
        "output_format": printer.output_format,
    }
    return {**fields, **changes}
