"""The one spelling of a currency code in the catalog: ISO 4217 in lower case, as Stripe writes it, and the
lab's own currency (LAB_CURRENCY) in that spelling."""

from __future__ import annotations

from django.conf import settings


def currency_code(value: str) -> str:
    """`value` as the catalog stores and compares it: "HUF", " huf" and "huf" are one currency."""
    return value.strip().lower()


def lab_currency() -> str:
    """The only currency the lab sells in (LAB_CURRENCY; shipping is priced in it), as `currency_code`."""
    return currency_code(str(settings.LAB_CURRENCY))
