"""factory_boy factories for the lab's models; photos go through the real intake service."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth.models import Group

from lab.accounts.models import User
from lab.catalog.models import Paper, Product
from lab.orders.models import Asset, Order, OrderItem
from lab.orders.photos import asset_create_from_upload
from tests.support.images import jpeg_bytes


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.net")
    full_name = factory.Sequence(lambda n: f"Person Number{n}")
    address = factory.LazyAttribute(
        lambda o: {
            "name": o.full_name,
            "line1": "12 Harbour Road",
            "line2": "",
            "city": "Portville",
            "region": "OR",
            "postal_code": "97035",
            "country": "US",
        }
    )
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def roles(self, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
        for role in extracted or ["customer"]:
            self.groups.add(Group.objects.get_or_create(name=role)[0])
        self.save()


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("sku",)

    sku = "PRINT-4X6-LUSTRE"
    name = '4x6" Lustre print'
    width_in = Decimal(4)
    height_in = Decimal(6)
    paper = Paper.LUSTRE
    price_minor = 35
    currency = "usd"
    min_dpi = 150


def asset_for(owner: User | None, **image: Any) -> Asset:
    return asset_create_from_upload(owner=owner, data=jpeg_bytes(**image))


def order_with_items(
    *,
    lines: list[tuple[str, int]],
    photo: bytes | None = None,
    customer: User | None = None,
    shipping_address: dict[str, str] | None = None,
    promised_by: datetime | None = None,
) -> Order:
    """An unpaid order of the demo catalog: one item per (sku, copies), all of one photo (prices are not
    under test here, so they are zero)."""
    from lab.catalog.demo import catalog_seed_demo

    catalog_seed_demo()
    owner = customer or UserFactory()
    asset = asset_create_from_upload(owner=owner, data=photo or jpeg_bytes())
    order = Order.objects.create(
        customer=owner,
        shipping_address=shipping_address or {"name": "X"},
        shipping_method="standard",
        subtotal_minor=0,
        shipping_minor=0,
        total_minor=0,
        currency="usd",
        promised_by=promised_by,
    )
    for position, (sku, copies) in enumerate(lines, start=1):
        OrderItem.objects.create(
            order=order,
            position=position,
            product=Product.objects.get(sku=sku),
            asset=asset,
            copies=copies,
            sizing="fill",
            unit_price_minor=0,
            line_total_minor=0,
        )
    return order
