"""Currencies' minor units: how many digits an amount in minor units has after the decimal point.

The one table the lab reads them from: shipping prices (lab/settings.py, lab/orders/pricing.py) and the
amounts in e-mails (lab/notify/emails.py). Before, the e-mails kept a hand-made list of zero-decimal
currencies (PYG, RWF, XPF missing; KWD's 10000 fils shown as "100.00 KWD") and shipping was 499 minor units
in any currency (HUF 4.99, KRW 499). Plain Python, no Django: settings.py imports it.
"""

from __future__ import annotations

# ISO 4217's minor-unit digits of every current currency whose minor unit is not the hundredth (the
# standard's list, https://www.six-group.com/en/products-services/financial-information/data-standards.html);
# every other currency has 2. Codes in lower case, as Stripe and the catalog write them.
MINOR_UNIT_DIGITS: dict[str, int] = {
    # no minor unit
    "bif": 0,
    "clp": 0,
    "djf": 0,
    "gnf": 0,
    "isk": 0,
    "jpy": 0,
    "kmf": 0,
    "krw": 0,
    "pyg": 0,
    "rwf": 0,
    "ugx": 0,
    "uyi": 0,
    "vnd": 0,
    "vuv": 0,
    "xaf": 0,
    "xof": 0,
    "xpf": 0,
    # thousandths
    "bhd": 3,
    "iqd": 3,
    "jod": 3,
    "kwd": 3,
    "lyd": 3,
    "omr": 3,
    "tnd": 3,
    # ten-thousandths (units of account)
    "clf": 4,
    "uyw": 4,
}
DEFAULT_MINOR_UNIT_DIGITS = 2


def minor_unit_digits(currency: str) -> int:
    """How many decimal digits an amount in `currency` has (ISO 4217): 0 for JPY, 3 for KWD, else 2."""
    return MINOR_UNIT_DIGITS.get(currency.strip().lower(), DEFAULT_MINOR_UNIT_DIGITS)


def money_format(*, amount_minor: int, currency: str) -> str:
    """An amount in minor units as the lab writes it: "10.000 KWD", "1500 JPY", "5.34 USD"."""
    code = currency.strip().upper()
    digits = minor_unit_digits(currency)
    if digits == 0:
        return f"{amount_minor} {code}"
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d} {code}"
