"""Reads of the catalog: the products on sale (active, priced in the lab's currency) and the active ones that
cannot be sold because they are priced in another."""

from __future__ import annotations

from django.db.models import QuerySet

from lab.catalog.currency import lab_currency
from lab.catalog.models import Product


def products_on_sale() -> QuerySet[Product]:
    """What a customer can order: active, priced in LAB_CURRENCY (a quote refuses any other currency with
    `currency_not_sold`, so listing those offered products no order could hold)."""
    return Product.objects.filter(is_active=True, currency__iexact=lab_currency())


def products_not_sold() -> QuerySet[Product]:
    """Active products priced in another currency than LAB_CURRENCY: listed nowhere and refused at every
    quote (the system check `catalog.W001` names them)."""
    return Product.objects.filter(is_active=True).exclude(currency__iexact=lab_currency())
