"""The order state machine: the one table every order status change is checked against."""

from __future__ import annotations

from django.db.models import TextChoices

from lab.lib.states import StateMachine


class OrderStatus(TextChoices):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    IN_PRODUCTION = "in_production"
    ON_HOLD = "on_hold"
    READY_TO_PACK = "ready_to_pack"
    PACKED = "packed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


S = OrderStatus
ORDER_MACHINE = StateMachine(
    "order",
    {
        S.AWAITING_PAYMENT: frozenset({S.PAID, S.CANCELLED}),
        S.PAID: frozenset({S.IN_PRODUCTION, S.ON_HOLD, S.CANCELLED}),
        S.IN_PRODUCTION: frozenset({S.READY_TO_PACK, S.ON_HOLD, S.CANCELLED}),
        S.ON_HOLD: frozenset({S.PAID, S.IN_PRODUCTION, S.CANCELLED}),
        S.READY_TO_PACK: frozenset({S.PACKED, S.IN_PRODUCTION, S.ON_HOLD}),
        # Back to ready to pack: a box unpacked at the station before it ships (a wrong or damaged print found
        # while taping it), to be counted again, held or reprinted (lab.packing.station.order_unpack).
        S.PACKED: frozenset({S.SHIPPED, S.ON_HOLD, S.READY_TO_PACK}),
        S.SHIPPED: frozenset({S.DELIVERED}),
        S.DELIVERED: frozenset(),
        S.CANCELLED: frozenset(),
    },
)
# Customers may cancel before production starts; a supervisor may also cancel an order in production
# (lab.production.cancellation: every job is stopped, at the printer too).
CUSTOMER_CANCELLABLE = frozenset({S.AWAITING_PAYMENT, S.PAID})
SUPERVISOR_CANCELLABLE = frozenset({S.AWAITING_PAYMENT, S.PAID, S.IN_PRODUCTION, S.ON_HOLD})
# A refund or dispute that arrives from Stripe before the box leaves stops the order for a person.
PAYMENT_HOLDABLE = frozenset({S.PAID, S.IN_PRODUCTION, S.READY_TO_PACK, S.PACKED})
