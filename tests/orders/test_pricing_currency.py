"""Shipping prices are settings in minor units of LAB_CURRENCY: a lab in a currency its defaults (US cents)
were not priced in must set them, or it does not start. Before, shipping was 499/1499 minor units in any
currency: HUF 4.99, KRW 499."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.core import checks
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from lab.catalog.models import Product
from lab.lib.errors import DomainError
from lab.orders.quotes import ItemRequest, quote_compute
from tests.builders import ProductFactory, asset_for, new_customer
from tests.support.settings_import import settings_imported

READ_BACK = "import lab.settings as s; print(s.LAB_SHIPPING_STANDARD_MINOR, s.LAB_SHIPPING_EXPRESS_MINOR)"
SHIPPING_SETTINGS = ("LAB_CURRENCY", "LAB_SHIPPING_STANDARD_MINOR", "LAB_SHIPPING_EXPRESS_MINOR")


def import_settings(var_dir: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """`import lab.settings` in a new process, with the currency and shipping settings as given (or unset)."""
    return settings_imported(var_dir, READ_BACK, environment, unset=SHIPPING_SETTINGS)


@pytest.mark.parametrize("currency", [None, "usd", "eur", "gbp"])
def test_a_lab_in_dollars_euros_or_pounds_keeps_the_shipping_prices_it_had(tmp_path, currency):
    unset = import_settings(tmp_path / "var", **({"LAB_CURRENCY": currency} if currency else {}))

    assert (unset.returncode, unset.stdout.split()) == (0, ["499", "1499"]), unset.stderr[-2000:]


@pytest.mark.parametrize("currency", ["huf", "krw", "jpy", "kwd"])
def test_a_lab_in_another_currency_without_shipping_prices_does_not_start(tmp_path, currency):
    completed = import_settings(tmp_path / "var", LAB_CURRENCY=currency)

    assert completed.returncode != 0
    assert f"ImproperlyConfigured: LAB_CURRENCY='{currency}': set LAB_SHIPPING_STANDARD_MINOR and " in (
        completed.stderr
    )
    assert "LAB_SHIPPING_EXPRESS_MINOR" in completed.stderr


def test_a_lab_in_another_currency_takes_its_shipping_prices_in_its_minor_units(tmp_path):
    set_both = import_settings(
        tmp_path / "var",
        LAB_CURRENCY="huf",
        LAB_SHIPPING_STANDARD_MINOR="150000",
        LAB_SHIPPING_EXPRESS_MINOR="450000",
    )
    only_one = import_settings(tmp_path / "var", LAB_CURRENCY="huf", LAB_SHIPPING_STANDARD_MINOR="150000")
    negative = import_settings(tmp_path / "var", LAB_SHIPPING_STANDARD_MINOR="-1")

    assert (set_both.returncode, set_both.stdout.split()) == (0, ["150000", "450000"]), set_both.stderr[
        -2000:
    ]
    assert only_one.returncode != 0
    assert "LAB_SHIPPING_EXPRESS_MINOR is not set." in only_one.stderr
    assert negative.returncode != 0
    assert "LAB_SHIPPING_STANDARD_MINOR='-1' is not a whole number of minor units" in negative.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "shipping_minor"), [("standard", 150000), ("express", 450000), ("pickup", 0)]
)
def test_a_quote_in_the_lab_s_currency_uses_its_configured_shipping(settings, method, shipping_minor):
    # given a lab in forints, its shipping priced at HUF 1500.00 and 4500.00, and a print at HUF 3000.00
    settings.LAB_CURRENCY = "huf"
    settings.LAB_SHIPPING_STANDARD_MINOR = 150000
    settings.LAB_SHIPPING_EXPRESS_MINOR = 450000
    ProductFactory.create(sku="PRINT-HUF", price_minor=300000, currency="huf")
    customer = new_customer()
    photo = asset_for(customer, width=1800, height=1200)

    # when the basket is quoted
    quote = quote_compute(
        customer=customer,
        items=[ItemRequest(sku="PRINT-HUF", asset_id=str(photo.pk), copies=1, sizing="fill")],
        shipping_method=method,
    )

    # then its shipping is the configured price (before: 499 minor units, HUF 4.99)
    assert (quote.currency, quote.shipping_minor, quote.total_minor) == (
        "huf",
        shipping_minor,
        300000 + shipping_minor,
    )


@pytest.mark.django_db
def test_a_quote_of_a_product_priced_in_another_currency_than_the_lab_s_is_refused(settings):
    # given a lab in forints, its shipping priced in forints, and a print left at the model's default "usd"
    settings.LAB_CURRENCY = "huf"
    settings.LAB_SHIPPING_STANDARD_MINOR = 150000
    settings.LAB_SHIPPING_EXPRESS_MINOR = 450000
    ProductFactory.create(sku="PRINT-USD", price_minor=300, currency="USD")
    customer = new_customer()
    photo = asset_for(customer, width=1800, height=1200)

    # when the basket is quoted
    with pytest.raises(DomainError) as refused:
        quote_compute(
            customer=customer,
            items=[ItemRequest(sku="PRINT-USD", asset_id=str(photo.pk), copies=1, sizing="fill")],
            shipping_method="standard",
        )

    # then it is refused (before: USD 3.00 and 150000 minor units of shipping made a PaymentIntent of USD
    # 1,503.00)
    assert (refused.value.code, refused.value.details) == (
        "currency_not_sold",
        {"currency": "usd", "lab_currency": "huf"},
    )


@pytest.mark.django_db
def test_products_priced_in_one_currency_written_in_two_cases_are_one_basket(settings):
    # given a lab in dollars, a print stored as "USD" (the demo seed stored LAB_CURRENCY as given) and one as
    # "usd" (as the lab admin saves it)
    settings.LAB_CURRENCY = "usd"
    ProductFactory.create(sku="PRINT-OLD", price_minor=300, currency="USD")
    ProductFactory.create(sku="PRINT-EDITED", price_minor=500, currency="usd")
    customer = new_customer()
    photo = asset_for(customer, width=1800, height=1200)

    # when both are quoted in one basket
    quote = quote_compute(
        customer=customer,
        items=[
            ItemRequest(sku=sku, asset_id=str(photo.pk), copies=1, sizing="fill")
            for sku in ("PRINT-OLD", "PRINT-EDITED")
        ],
        shipping_method="standard",
    )

    # then it is one currency, in the lower case the order stores and Stripe gets (before: 400
    # mixed_currency)
    assert (quote.currency, quote.subtotal_minor) == ("usd", 800)


@pytest.mark.django_db
def test_the_upgrade_stores_every_product_s_currency_in_lower_case():
    # given products stored before the upgrade, their currency in capitals or with spaces
    executor = MigrationExecutor(connection)
    executor.migrate([("catalog", "0001_initial")])
    old_apps = executor.loader.project_state([("catalog", "0001_initial")]).apps
    old_product = old_apps.get_model("catalog", "Product")
    fields = {"width_in": 4, "height_in": 6, "paper": "lustre", "price_minor": 35, "name": "4x6"}
    old_product.objects.create(sku="PRINT-HUF", currency="HUF", **fields)
    old_product.objects.create(sku="PRINT-SPACED", currency="Huf ", **fields)
    old_product.objects.create(sku="PRINT-LOWER", currency="huf", **fields)

    # when the catalog's migrations run
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # then every one is in lower case
    assert dict(Product.objects.values_list("sku", "currency")) == {
        "PRINT-HUF": "huf",
        "PRINT-SPACED": "huf",
        "PRINT-LOWER": "huf",
    }


@pytest.mark.django_db
def test_the_system_check_names_active_products_priced_in_another_currency_than_the_lab_s(settings):
    # given a euro lab that left LAB_CURRENCY at its default, "usd", one product repriced since
    settings.LAB_CURRENCY = "usd"
    ProductFactory.create(sku="PRINT-EUR", currency="eur")
    ProductFactory.create(sku="PRINT-EUR-RETIRED", currency="eur", is_active=False)
    ProductFactory.create(sku="PRINT-USD", currency="USD")

    # when the system checks run with the database (as `migrate` and `check --database default` run them)
    messages = [
        message for message in checks.run_checks(databases=["default"]) if message.id == "catalog.W001"
    ]

    # then one warning names the active product the lab cannot sell (before: nothing named it, and every
    # quote of it was 400 currency_not_sold)
    assert [(message.level, message.msg) for message in messages] == [
        (
            checks.WARNING,
            "1 active product(s) are priced in another currency than LAB_CURRENCY (USD): PRINT-EUR. The "
            "product list leaves them out and every quote or order of one is refused "
            "(400 currency_not_sold).",
        )
    ]


@pytest.mark.django_db
def test_the_product_list_leaves_out_products_priced_in_another_currency_than_the_lab_s(api, settings):
    # given a lab in dollars with a product priced in euros, one in "USD" and one in "usd"
    settings.LAB_CURRENCY = "usd"
    ProductFactory.create(sku="PRINT-EUR", currency="eur")
    ProductFactory.create(sku="PRINT-USD-CAPITALS", currency="USD")
    ProductFactory.create(sku="PRINT-USD", currency="usd")

    # when a customer lists the catalog
    response = api.get("/api/v1/products")

    # then only what can be ordered is listed (before: the euro print too, refused at every quote)
    assert response.status_code == 200
    assert sorted(product["sku"] for product in response.json()["results"]) == [
        "PRINT-USD",
        "PRINT-USD-CAPITALS",
    ]
