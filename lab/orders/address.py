"""A customer's change of an open order's shipping address, and the open orders that keep theirs when My
Account's address changes.

An order's address is its own: it is the one the customer gave for that order, sealed with it (Order.save,
`address_sealed`), and the packing slip labels the box with it. My Account's address is the one for orders
to come. The API changes an order's address through lab.packing.services.shipping_address_change, which also
drops the order's stored packing slip under the same lock, so the slip is rendered again with the new address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from lab.accounts.models import User
from lab.lib.errors import Conflict
from lab.orders.errors import OrderError
from lab.orders.models import Order, OrderEvent
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked

logger = logging.getLogger(__name__)

S = OrderStatus
# Before the packing stage: the box is neither packed nor labelled yet. From ready to pack on, its slip may be
# printed, so the order ships where it says; a cancelled order ships nowhere. An order back on the floor after
# its slip was printed (Order.slip_served_at) keeps its address too.
ADDRESS_CHANGEABLE = frozenset({S.AWAITING_PAYMENT, S.PAID, S.IN_PRODUCTION, S.ON_HOLD})
# Still to leave the lab: what My Account's address change names when these orders keep their address.
STILL_TO_SHIP = frozenset({*ADDRESS_CHANGEABLE, S.READY_TO_PACK, S.PACKED})

ADDRESS_CHANGED_EVENT = "address_changed"


@dataclass(frozen=True)
class AddressChange:
    order: Order
    changed: bool  # False: the order already had this address (nothing written, no event)


def order_address_change(
    *, order: Order, address: dict[str, Any], actor: User | None, actor_kind: str
) -> AddressChange:
    """Change the order's shipping address, under the order's lock, while its box is not at the packing stage.

    Refused (409 `order_address_locked`) once the order is ready to pack, packed, shipped, delivered or
    cancelled, and when it was packed before (an order held from the station, for a refund or a dispute: its
    box is labelled) or its slip was served at the station before it went back to the floor (`slip_served_at`:
    the slip printed then carries the old address); also when its stored address was written outside the lab
    (its seal does not hold: the customer's change would not be sealed either, and the box would wait for a
    supervisor all the same). A pickup order has no address to change (409 `pickup_order_has_no_address`).
    The address is written with the model's save, which seals it again; the timeline records the change,
    never the address (personal data).
    """
    with transaction.atomic():
        locked = order_locked(order_id=order.pk)
        if locked.shipping_method == Order.ShippingMethod.PICKUP:
            raise Conflict(
                OrderError.PICKUP_ORDER_HAS_NO_ADDRESS,
                "This order is collected at the counter: it ships to no address.",
            )
        if locked.status not in ADDRESS_CHANGEABLE or locked.is_anonymized:
            raise Conflict(
                OrderError.ORDER_ADDRESS_LOCKED,
                f"An order that is {locked.get_status_display().lower()} ships to the address it has.",
            )
        if _was_packed(locked):
            raise Conflict(
                OrderError.ORDER_ADDRESS_LOCKED,
                "This order's box was packed and labelled before it was held; ask the lab to change it.",
            )
        if locked.slip_served_at is not None:
            # Back on the floor (a reprint, a hold) after its slip was printed at the station: that paper slip
            # still carries the address it had, and nothing at the station would say it is out of date.
            raise Conflict(
                OrderError.ORDER_ADDRESS_LOCKED,
                "This order's packing slip was already printed; ask the lab to change its address.",
            )
        if not locked.address_is_sealed:
            logger.error(
                "address change refused, stored address changed outside the lab order=%s", locked.ref
            )
            raise Conflict(
                OrderError.ORDER_ADDRESS_LOCKED,
                "This order's address cannot be changed here; ask the lab.",
            )
        if locked.shipping_address == address:
            return AddressChange(order=locked, changed=False)
        locked.shipping_address = address
        locked.save(update_fields=["shipping_address", "updated_at"])  # sealed again (Order.save)
        OrderEvent.objects.create(
            order=locked,
            kind=ADDRESS_CHANGED_EVENT,
            actor=actor,
            actor_kind=actor_kind,
            note="shipping address changed",
        )
    logger.info("order address changed order=%s by=%s", locked.ref, actor_kind)
    return AddressChange(order=locked, changed=True)


def _was_packed(order: Order) -> bool:
    return OrderEvent.objects.filter(order=order, kind="status_changed", to_status=S.PACKED).exists()


def orders_keeping_their_address(*, customer: User, address: dict[str, Any]) -> list[str]:
    """The refs of the customer's orders still to ship by carrier whose address is not `address` (My Account's
    new one), oldest first: a change of My Account's address changes no order's."""
    return list(
        Order.objects.filter(customer=customer, status__in=STILL_TO_SHIP, is_anonymized=False)
        .exclude(shipping_method=Order.ShippingMethod.PICKUP)
        .exclude(shipping_address=address)
        .order_by("created_at", "pk")
        .values_list("ref", flat=True)
    )
