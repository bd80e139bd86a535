"""The one write path for an order's status: check the state machine, write the event, hand off the follow-up.

The follow-up work a status needs (release a paid order, e-mail the customer) is sent after the commit as a
nudge; the status itself is the durable record of that need, which the reconcile sweeps act on when the
message is lost (lab.production.reconcile, lab.notify.services.notifications_sweep).
"""

from __future__ import annotations

import logging

from django.db import transaction

from lab.accounts.models import User
from lab.lib.errors import NotFound
from lab.lib.tasks import enqueue
from lab.orders.errors import OrderError
from lab.orders.models import Order, OrderEvent
from lab.orders.states import ORDER_MACHINE, OrderStatus

logger = logging.getLogger(__name__)


def order_transition(
    *,
    order: Order,
    to_status: str,
    actor: User | None = None,
    actor_kind: str = "system",
    note: str = "",
    extra_fields: tuple[str, ...] = (),
) -> Order:
    """The one place an order's status is written. The caller holds the row lock (select_for_update)."""
    ORDER_MACHINE.check(order.status, to_status)
    from_status = order.status
    order.status = to_status
    order.save(update_fields=["status", "updated_at", *extra_fields])
    OrderEvent.objects.create(
        order=order,
        kind="status_changed",
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        actor_kind=actor_kind,
        note=note[:1000],
    )
    packing = (OrderStatus.READY_TO_PACK, OrderStatus.PACKED)
    if from_status in packing and to_status not in packing:
        # Packaging views end when the order leaves the station (imported here: audit builds on orders).
        from lab.audit.grants import grants_revoke

        grants_revoke(context_type="order", context_id=order.ref, reason=f"order_{to_status}")
    logger.info("order status order=%s from=%s to=%s", order.ref, from_status, to_status)
    transaction.on_commit(lambda: _status_changed_hooks(order_id=order.pk, to_status=to_status))
    return order


def _status_changed_hooks(*, order_id: int, to_status: str) -> None:
    if to_status == OrderStatus.PAID:
        enqueue("production.order_release", order_id=order_id)
    if to_status == OrderStatus.SHIPPED:
        # The signed privacy receipt (lab.customer_data, far above orders); its sweep redoes a lost message.
        enqueue("privacy.receipt_issue", order_id=order_id, reason="shipped")
    enqueue("notify.order_status_changed", order_id=order_id, status=to_status)


def order_locked(*, order_id: int | None = None, ref: str | None = None) -> Order:
    """The one order lock: the order's row (by id or by ref), locked until the caller's transaction ends.

    Every status change reads the status under this lock, so two writers (a webhook and a cancel, a release
    and a hold) decide one after the other. An order that does not exist is NotFound."""
    rows = Order.objects.select_for_update()
    if ref is not None:
        order = rows.filter(ref=ref).first()
    else:
        order = rows.filter(pk=order_id).first() if order_id is not None else None
    if order is None:
        raise NotFound(OrderError.ORDER_NOT_FOUND, f"No order {ref}." if ref else "No such order.")
    return order
