"""Reads of orders for display: an order with everything its API answer shows, in a fixed number of queries.
Also the access checks of a reader: the owner, or the holder of a guest order's token."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects

from lab.accounts.models import User
from lab.lib.errors import NotFound
from lab.orders.errors import OrderError
from lab.orders.guest_tokens import guest_token_holds
from lab.orders.models import Asset, Order, OrderItem, is_order_ref
from lab.orders.states import OrderStatus


def order_with_lines(*, order: Order) -> Order:
    """The order with `loaded_items` (each with its product, joined) and `loaded_events`: two queries for any
    number of items, so the API's answer does not fetch a product per item; none when the intake has just
    set them from the rows it wrote."""
    prefetch_related_objects(
        [order],
        Prefetch("items", queryset=OrderItem.objects.select_related("product"), to_attr="loaded_items"),
        Prefetch("events", to_attr="loaded_events"),
    )
    return order


def order_access_check(*, order: Order, user: User | None, guest_token: str | None) -> None:
    """Owner or guest-token holder only; anyone else is told the order does not exist."""
    if user is not None and user.is_authenticated and order.customer_id == user.pk:
        return
    # The token must hold against the order's seal (lab.orders.guest_tokens): a bare SHA-256, or another
    # order's value, written in the database authenticates nobody.
    if (
        order.is_guest
        and guest_token
        and guest_token_holds(
            order_id=order.pk, ref=order.ref, stored=order.guest_token_hash, token=guest_token
        )
    ):
        return
    raise NotFound(OrderError.ORDER_NOT_FOUND, "No such order.")


def order_for_reader(*, ref: str, user: User | None, guest_token: str | None) -> Order:
    if not is_order_ref(ref):  # checked before any query: a NUL byte or junk must not reach the database
        raise NotFound(OrderError.ORDER_NOT_FOUND, "No such order.")
    order = Order.objects.filter(ref=ref).first()
    if order is None:
        raise NotFound(OrderError.ORDER_NOT_FOUND, "No such order.")
    order_access_check(order=order, user=user, guest_token=guest_token)
    return order


def asset_for_owner(*, asset_id: str, user: User | None) -> Asset:
    try:
        asset = Asset.objects.get(pk=asset_id)
    except (Asset.DoesNotExist, ValidationError, ValueError) as error:
        raise NotFound(OrderError.ASSET_NOT_FOUND, "No such photo.") from error
    if user is None or asset.owner_id != user.pk:
        raise NotFound(OrderError.ASSET_NOT_FOUND, "No such photo.")
    return asset


def guest_order_photos(*, order: Order) -> QuerySet[Asset]:
    """A guest order's photos: its items', and any the guest sent for it (a guest's photo is its first
    order's only)."""
    return Asset.objects.filter(Q(items__order=order) | Q(guest_order=order)).distinct()


def order_by_ref(*, ref: str) -> Order | None:
    """An order for a staff page (no owner check: staff access is checked by the page)."""
    if not is_order_ref(ref):
        return None
    return Order.objects.filter(ref=ref).first()


def promise_kept_q() -> Q:
    """Orders (rows of Order) that have kept their promise (`promised_by`): shipped, or a pickup packed, which
    waits at the counter: what a pickup is promised is to be ready to collect (its payment e-mail says so)."""
    return Q(status__in=(OrderStatus.SHIPPED, OrderStatus.DELIVERED)) | Q(
        status=OrderStatus.PACKED, shipping_method=Order.ShippingMethod.PICKUP
    )
