"""Reads for the packing station's pages."""

from __future__ import annotations

from django.db.models import QuerySet

from lab.orders.models import Order
from lab.orders.states import OrderStatus


def orders_waiting_to_pack() -> QuerySet[Order]:
    """Ready-to-pack orders, oldest first: the packer's queue."""
    return Order.objects.filter(status=OrderStatus.READY_TO_PACK).order_by("created_at", "pk")


def orders_packed_not_shipped() -> QuerySet[Order]:
    """Packed boxes waiting for their carrier, oldest first: shipped, or unpacked when something is wrong."""
    return Order.objects.filter(status=OrderStatus.PACKED).order_by("created_at", "pk")
