"""The catalog's system check: active products priced in another currency than LAB_CURRENCY, which the lab
lists nowhere and every quote refuses (400 `currency_not_sold`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Warning
from django.db import DatabaseError

from lab.catalog.currency import lab_currency
from lab.catalog.selectors import products_not_sold

SKUS_NAMED = 20  # a catalog left wholly in another currency is named by its first SKUs, and counted


def products_in_the_lab_s_currency(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """A lab upgraded with its catalog priced in another currency than LAB_CURRENCY (a euro lab that left
    LAB_CURRENCY at its default, "usd") answered 400 `currency_not_sold` to every quote and order, while the
    product list, readiness and the checks all passed: nothing named the cause.

    A warning, not an error: `migrate` runs the database checks, and an error there would stop the upgrade
    (and every unit behind `migrate --check`) over catalog data that the lab admin, which needs the site up,
    is where to fix; a lab may also keep a few products it no longer sells. Asked only with a database
    (`manage.py check --database default`, `migrate`), and silent while the database cannot be read or the
    catalog is not migrated yet."""
    if not databases or "default" not in databases:
        return []
    try:
        skus = list(products_not_sold().order_by("sku").values_list("sku", flat=True))
    except DatabaseError:
        return []
    if not skus:
        return []
    named = ", ".join(skus[:SKUS_NAMED]) + (
        f" and {len(skus) - SKUS_NAMED} more" if len(skus) > SKUS_NAMED else ""
    )
    return [
        Warning(
            f"{len(skus)} active product(s) are priced in another currency than LAB_CURRENCY "
            f"({lab_currency().upper()}): {named}. The product list leaves them out and every quote or "
            "order of one is refused (400 currency_not_sold).",
            hint="Set LAB_CURRENCY to the currency the catalog is priced in (with its shipping prices), or "
            "reprice or deactivate these products in the lab admin.",
            id="catalog.W001",
        )
    ]
