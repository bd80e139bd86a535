"""Products, photos and orders of the demo catalog, moved through the real state machine; an order as the API
takes it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from factory.django import DjangoModelFactory
from rest_framework.test import APIClient

from lab.accounts.models import User
from lab.accounts.tokens import api_token_issue
from lab.catalog.models import Paper, Product
from lab.orders.models import Asset, Order, OrderEvent, OrderItem
from lab.orders.photos import asset_create_from_upload
from lab.orders.transitions import order_locked, order_transition
from tests.builders.people import UserFactory, new_customer
from tests.support.images import jpeg_bytes

# A customer's address as the API and the notification tests send it.
ADDRESS = {
    "name": "Ada Quill",
    "line1": "1 Lens Lane",
    "city": "Exposure",
    "postal_code": "12345",
    "country": "US",
}
# Where a built paid order ships to.
SHIPPING_ADDRESS = {"name": "Ada Example", "line1": "1 Road", "city": "Town", "country": "US"}
# The order's way from paid to packed.
TO_PACKED = ("paid", "in_production", "ready_to_pack", "packed")
# A landscape photo with 300 dpi for every demo size up to 8x10 (what the end-to-end tests print).
PHOTO_300_DPI = (3000, 2000)


class ProductFactory(DjangoModelFactory[Product]):  # generic: `ProductFactory.create()` is a Product
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
    """A photo stored through the real intake service (a JPEG of `image`'s width/height...)."""
    return asset_create_from_upload(owner=owner, data=jpeg_bytes(**image))


def order_with_items(
    *,
    lines: list[tuple[str, int]],
    photo: bytes | tuple[int, int] | None = None,
    customer: User | None = None,
    shipping_address: dict[str, str] | None = None,
    promised_by: datetime | None = None,
) -> Order:
    """An unpaid order of the demo catalog: one item per (sku, copies), all of one photo (given as bytes or as
    the (width, height) of a JPEG; prices are not under test here, so they are zero)."""
    from lab.catalog.demo import catalog_seed_demo

    catalog_seed_demo()
    owner = customer or new_customer()
    data = jpeg_bytes(*photo) if isinstance(photo, tuple) else (photo or jpeg_bytes())
    asset = asset_create_from_upload(owner=owner, data=data)
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


def order_pay(order: Order) -> Order:
    """Move to paid; in autocommit (transactional tests) that sends the release message right away."""
    order_transition(order=order, to_status="paid")
    return order


def paid_order(
    *,
    lines: list[tuple[str, int]],
    photo: bytes | tuple[int, int] = (1800, 1200),
    promised_by: datetime | None = None,
) -> Order:
    """An order with one item per (sku, copies) of one photo, for a new customer, moved to paid."""
    return order_pay(
        order_with_items(lines=lines, photo=photo, promised_by=promised_by, shipping_address=SHIPPING_ADDRESS)
    )


def order_for(customer: User | None, *, guest_email: str = "", copies: int = 3) -> Order:
    """An order awaiting payment with one item of `copies` 4x6 prints and its "created" timeline entry."""
    product = ProductFactory.create()
    subtotal = product.price_minor * copies
    order = Order.objects.create(
        customer=customer,
        guest_email=guest_email,
        shipping_address=ADDRESS,
        shipping_method=Order.ShippingMethod.STANDARD,
        subtotal_minor=subtotal,
        shipping_minor=499,
        total_minor=subtotal + 499,
        currency="usd",
        promised_by=timezone.now() + timedelta(days=3),
    )
    OrderItem.objects.create(
        order=order,
        position=1,
        product=product,
        asset=asset_for(customer, width=600, height=400),
        copies=copies,
        sizing=OrderItem.Sizing.FILL,
        unit_price_minor=product.price_minor,
        line_total_minor=subtotal,
    )
    OrderEvent.objects.create(order=order, kind="created", to_status=order.status, actor=customer)
    return order


def order_move(order: Order, *statuses: str, **fields: Any) -> Order:
    """Walk the order through `statuses` with the real transition service, setting `fields` on the way (for
    states a test does not need to produce for real)."""
    for status in statuses:
        with transaction.atomic():
            locked = order_locked(order_id=order.pk)
            for name, value in fields.items():
                setattr(locked, name, value)
            order_transition(order=locked, to_status=status, extra_fields=tuple(fields))
    order.refresh_from_db()
    return order


def order_body(asset: Asset, **overrides: object) -> dict[str, object]:
    """A `POST /api/v1/orders` body: three 4x6 lustre prints of `asset`, standard shipping to ADDRESS."""
    body: dict[str, object] = {
        "items": [{"sku": "PRINT-4X6-LUSTRE", "asset": str(asset.pk), "copies": 3, "sizing": "fill"}],
        "shipping_method": "standard",
        "shipping_address": ADDRESS,
    }
    body.update(overrides)
    return body


# Five products of the demo catalog: an API basket where neither products nor photos repeat.
BASKET_SKUS = (
    "PRINT-4X6-LUSTRE",
    "PRINT-8X10-MATTE",
    "PRINT-11X14-METALLIC",
    "PRINT-4X6-GLOSSY",
    "PRINT-5X7-LUSTRE",
)


def basket_of(asset_ids: list[str]) -> list[dict[str, object]]:
    """API items: one line per photo (up to five), each a different product of BASKET_SKUS, fill."""
    return [
        {"sku": sku, "asset": asset_id, "copies": 1, "sizing": "fill"}
        for sku, asset_id in zip(BASKET_SKUS, asset_ids, strict=False)
    ]


def token_client(api: APIClient, user: User) -> APIClient:
    """The client authenticating as `user` with an API token, as a phone app does."""
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user, name='phone').key}")
    return api


def customer_with_photos(api: APIClient, count: int) -> tuple[APIClient, list[str]]:
    """A new customer's token client and `count` of their photos, ready to print."""
    user = UserFactory.create()
    client = token_client(api, user)
    # The token's last-used stamp is written at most once a minute: take that write out of what follows.
    client.get("/api/v1/orders")
    return client, [str(asset_for(user).pk) for _ in range(count)]


def order_post(client: APIClient, items: list[dict[str, object]], key: str, **extra: object) -> Any:
    """`POST /api/v1/orders` of `items`, standard shipping to ADDRESS, with `key` as its Idempotency-Key."""
    body = {"items": items, "shipping_method": "standard", "shipping_address": ADDRESS, **extra}
    return client.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
