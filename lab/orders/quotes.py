"""Quotes: the price and preflight of items before an order exists (no writes)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection

from lab.accounts.models import User
from lab.catalog.currency import currency_code, lab_currency
from lab.catalog.models import Product
from lab.catalog.placement import Placement, PlacementError, PlacementOptions, Sizing
from lab.lib.errors import Conflict, DomainError, NotFound
from lab.orders.errors import OrderError
from lab.orders.models import Asset, Order
from lab.orders.pricing import (
    MAX_ORDER_TOTAL_MINOR,
    SHIPPING_PRICE_MINOR,
    line_placement,
    line_price,
    preflight,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemRequest:
    sku: str
    asset_id: str
    copies: int
    sizing: Sizing
    placement: PlacementOptions = field(default_factory=PlacementOptions)


@dataclass(frozen=True)
class QuoteLine:
    position: int
    product: Product
    asset: Asset
    copies: int
    sizing: str
    unit_price_minor: int
    line_total_minor: int
    preflight: dict[str, object]
    options: PlacementOptions
    placement: Placement


@dataclass(frozen=True)
class Quote:
    lines: list[QuoteLine]
    shipping_method: str
    subtotal_minor: int
    shipping_minor: int
    total_minor: int
    currency: str


def _assets_by_id(asset_ids: list[str], *, lock: bool) -> dict[str, Asset]:
    """The basket's photos in one query, keyed by the id as sent; ids that are not UUIDs are left out (and
    answer asset_not_found where the item is checked), so junk never reaches the database. With `lock`,
    the rows are locked (in primary-key order, so two orders of the same photos cannot deadlock)."""
    parsed: dict[str, Any] = {}
    for asset_id in asset_ids:
        try:
            parsed[asset_id] = Asset._meta.pk.to_python(asset_id)
        except (ValidationError, ValueError):
            continue
    rows = Asset.objects.filter(pk__in=set(parsed.values()))
    if lock:
        rows = rows.select_for_update().order_by("pk")
    found = {asset.pk: asset for asset in rows}
    return {asset_id: found[pk] for asset_id, pk in parsed.items() if pk in found}


def _products_by_sku(skus: set[str], *, lock: bool) -> dict[str, Product]:
    """The basket's active products, keyed by SKU. With `lock` (an order's quote, in its transaction) they are
    read FOR SHARE on PostgreSQL: orders do not wait for each other, but the lab admin's save of a product
    (which locks it FOR UPDATE, then looks for orders holding it) waits for this order's commit, then finds
    its items and refuses a new size, paper or dpi. Without it, an order still uncommitted was invisible to
    that check and committed items priced and placed for 4x6 lustre on a product changed to 5x7 glossy.
    SQLite has no FOR SHARE and runs one writer at a time; there the plain read is enough."""
    if lock and connection.vendor == "postgresql":
        table = connection.ops.quote_name(Product._meta.db_table)
        rows: Iterable[Product] = Product.objects.raw(
            f"SELECT * FROM {table} WHERE sku = ANY(%s) AND is_active ORDER BY id FOR SHARE",  # noqa: S608
            [sorted(skus)],
        )
    else:
        # The catalog's default ordering would only add an ORDER BY to build and run.
        rows = Product.objects.filter(sku__in=skus, is_active=True).order_by()
    return {product.sku: product for product in rows}


def _usable_asset(*, asset_id: str, customer: User | None, assets: dict[str, Asset]) -> Asset:
    """The access rule for photos in an order: yours, or an unused guest photo when you are a guest."""
    asset = assets.get(asset_id)
    if asset is None:
        raise NotFound(OrderError.ASSET_NOT_FOUND, "No such photo.", asset=asset_id)
    if customer is not None and asset.owner_id != customer.pk:
        raise NotFound(OrderError.ASSET_NOT_FOUND, "No such photo.", asset=asset_id)
    if customer is None and (asset.owner_id is not None or asset.guest_order_id is not None):
        raise NotFound(OrderError.ASSET_NOT_FOUND, "No such photo.", asset=asset_id)
    if asset.status != Asset.Status.READY:
        raise asset_not_ready(asset=asset, asset_id=asset_id)
    return asset


NOT_READY_BECAUSE: dict[str, str] = {
    Asset.Status.PENDING: "This photo is still being fetched or checked; try again in a moment.",
    Asset.Status.PURGED: "This photo was deleted and can no longer be printed; send it again.",
}


def asset_not_ready(*, asset: Asset, asset_id: str) -> Conflict:
    """Why the photo cannot be printed, told to whoever holds its id: a guest's only way to learn that a URL
    fetch failed (`GET assets/{id}` is the owner's). A failure's code and message are the lab's own words, as
    `GET assets/{id}` shows them, never the URL."""
    if asset.status != Asset.Status.FAILED:
        message = NOT_READY_BECAUSE.get(asset.status, "This photo is not ready to print.")
        return Conflict(OrderError.ASSET_NOT_READY, message, asset=asset_id, asset_status=asset.status)
    return Conflict(
        OrderError.ASSET_NOT_READY,
        f"This photo failed ({asset.failure_code}): {asset.failure_message or 'send it again.'}",
        asset=asset_id,
        asset_status=asset.status,
        failure_code=asset.failure_code,
    )


def quote_compute(
    *, customer: User | None, items: list[ItemRequest], shipping_method: str, lock_photos: bool = False
) -> Quote:
    """Price and preflight the basket. An order quotes with `lock_photos` in its transaction: the photos
    are read locked, so the retention sweep (which locks a photo before purging it) cannot purge one between
    this check that it is ready and the order's commit; it waits, then finds the order that holds it. The
    products are read locked too (FOR SHARE): what the items are priced and placed for is what they print."""
    if not items:
        raise DomainError(OrderError.EMPTY_ORDER, "An order needs at least one item.")
    products = _products_by_sku({item.sku for item in items}, lock=lock_photos)
    # One query for every photo of the basket, then the same checks item by item, in the basket's order.
    assets = _assets_by_id([item.asset_id for item in items], lock=lock_photos)
    lines: list[QuoteLine] = []
    for position, item in enumerate(items, start=1):
        product = products.get(item.sku)
        if product is None:
            raise DomainError(OrderError.UNKNOWN_SKU, f"There is no product {item.sku}.", sku=item.sku)
        asset = _usable_asset(asset_id=item.asset_id, customer=customer, assets=assets)
        try:
            placement = line_placement(
                product=product, asset=asset, sizing=item.sizing, options=item.placement
            )
        except PlacementError as error:
            error.details["position"] = position  # which item of the basket
            raise
        price = line_price(product=product, copies=item.copies)
        lines.append(
            QuoteLine(
                position=position,
                product=product,
                asset=asset,
                copies=item.copies,
                sizing=item.sizing,
                unit_price_minor=price.unit_price_minor,
                line_total_minor=price.line_total_minor,
                preflight=preflight(product=product, asset=asset, sizing=item.sizing, placement=placement),
                options=item.placement,
                placement=placement,
            )
        )
    # A currency code in any case is one currency: the lab admin saves "huf", rows written before it (or by
    # the demo seed) may hold "HUF", and a basket of both was refused as mixed. The order stores (and Stripe
    # gets) the code in lower case, as Stripe writes it.
    currencies = {currency_code(line.product.currency) for line in lines}
    if len(currencies) != 1:
        raise DomainError(OrderError.MIXED_CURRENCY, "All products in one order must share a currency.")
    currency = currencies.pop()
    sold_in = lab_currency()
    if currency != sold_in:
        # Shipping (SHIPPING_PRICE_MINOR) is in minor units of LAB_CURRENCY: a product left at another
        # currency (the model's default is "usd") in a lab in forints made a PaymentIntent of USD 1,503.00,
        # its HUF 1500.00 shipping taken for dollars.
        raise DomainError(
            OrderError.CURRENCY_NOT_SOLD,
            f"This lab sells in {sold_in.upper()}; a product priced in {currency.upper()} cannot be ordered.",
            currency=currency,
            lab_currency=sold_in,
        )
    subtotal = sum(line.line_total_minor for line in lines)
    shipping = SHIPPING_PRICE_MINOR[Order.ShippingMethod(shipping_method)]
    if subtotal + shipping > MAX_ORDER_TOTAL_MINOR:
        raise DomainError(
            OrderError.ORDER_TOTAL_TOO_LARGE,
            f"The order total is over the {MAX_ORDER_TOTAL_MINOR} minor units a card payment can take; "
            "split it into several orders.",
            total_minor=subtotal + shipping,
            max_total_minor=MAX_ORDER_TOTAL_MINOR,
        )
    return Quote(
        lines=lines,
        shipping_method=shipping_method,
        subtotal_minor=subtotal,
        shipping_minor=shipping,
        total_minor=subtotal + shipping,
        currency=currency,
    )
