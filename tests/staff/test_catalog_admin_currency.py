"""The product form of the lab admin takes the lab's currency only (LAB_CURRENCY), and offers it for a new
product: shipping is priced in it, and a quote refuses a product priced in any other."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from lab.catalog.demo import catalog_seed_demo
from lab.catalog.models import Product
from lab.orders.quotes import ItemRequest, quote_compute
from tests.builders import asset_for, client_as, new_customer, product_form

pytestmark = pytest.mark.django_db
ADD = "/lab/admin/catalog/product/add/"


@pytest.fixture
def product(settings) -> Product:
    # a lab in forints, its catalog priced in them
    settings.LAB_CURRENCY = "huf"
    catalog_seed_demo()
    return Product.objects.get(sku="PRINT-4X6-LUSTRE")


def test_a_new_product_s_currency_is_the_lab_s(product):
    client, _ = client_as("admin")

    response = client.get(ADD)

    # before: the model's default, "usd", whatever the lab sells in
    assert response.status_code == 200
    assert response.context["adminform"].form["currency"].value() == "huf"


@pytest.mark.parametrize("currency", ["usd", "eur"])
def test_a_product_priced_in_another_currency_than_the_lab_s_is_refused(product, currency):
    client, _ = client_as("admin")
    before = Product.objects.count()

    response = client.post(ADD, product_form(product, sku="PRINT-5X7-NEW", name="5x7", currency=currency))

    # before: saved, and ordered in that currency with shipping priced in forints
    assert response.status_code == 200
    assert response.context["adminform"].form.errors.as_data()["currency"][0].code == "currency_not_sold"
    assert "This lab sells in HUF (LAB_CURRENCY)" in response.content.decode()
    assert Product.objects.count() == before
    assert LogEntry.objects.count() == 0


def test_a_product_priced_in_the_lab_s_currency_in_capitals_is_saved_in_its_code(product):
    client, _ = client_as("admin")

    response = client.post(ADD, product_form(product, sku="PRINT-5X7-NEW", name="5x7", currency="HUF"))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Product.objects.get(sku="PRINT-5X7-NEW").currency == "huf"


def test_after_an_admin_edits_one_product_a_basket_of_it_and_another_is_one_currency(settings):
    # given a lab whose LAB_CURRENCY is written in capitals, its demo catalog seeded
    settings.LAB_CURRENCY = "HUF"
    catalog_seed_demo()
    edited = Product.objects.get(sku="PRINT-4X6-LUSTRE")
    client, _ = client_as("admin")
    customer = new_customer()
    photo = asset_for(customer, width=1800, height=1200)

    # when an admin changes one product's price (the form saves the code in lower case) and a customer
    # quotes it with a product nobody edited
    response = client.post(
        f"/lab/admin/catalog/product/{edited.pk}/change/", product_form(edited, price_minor="99")
    )
    quote = quote_compute(
        customer=customer,
        items=[
            ItemRequest(sku=sku, asset_id=str(photo.pk), copies=1, sizing="fill")
            for sku in ("PRINT-4X6-LUSTRE", "PRINT-5X7-LUSTRE")
        ],
        shipping_method="standard",
    )

    # then the seed stored the code as the admin does and the basket is one currency (before: the seed's
    # "HUF" beside the admin's "huf" was 400 mixed_currency)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert set(Product.objects.values_list("currency", flat=True)) == {"huf"}
    assert (quote.currency, quote.lines[0].unit_price_minor) == ("huf", 99)
