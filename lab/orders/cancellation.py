"""A customer's cancel before production, and its refund, decided under the order's lock."""

from __future__ import annotations

import logging

from django.db import transaction

from lab.accounts.models import User
from lab.lib.errors import Conflict
from lab.orders import payment_refunds, payments
from lab.orders.errors import OrderError
from lab.orders.models import Order
from lab.orders.states import CUSTOMER_CANCELLABLE, OrderStatus
from lab.orders.transitions import order_locked, order_transition

logger = logging.getLogger(__name__)


def order_cancel(*, order: Order, actor: User | None, actor_kind: str, only_unpaid: bool = False) -> Order:
    """A customer's cancel, before production starts; a captured payment is refunded after the commit.

    Decided under the order's lock: a cancel that loses the race with the release to production answers
    409 and refunds nothing. The refund itself is asked for after the commit (`refund_issue_soon`), so the
    money moves only for an order that is cancelled for good; an unpaid order's PaymentIntent is cancelled
    at Stripe after the commit, and by the payments sweep until Stripe has settled it. Supervisors cancel
    orders in production with lab.production.cancellation.order_cancel_in_production, which also stops the
    jobs.

    `only_unpaid` (the unpaid-order expiry): an order no longer awaiting payment, or whose payment succeeded,
    is refused under the same lock. The expiry reads its orders before it cancels them: without it, an order
    paid in between (its webhook committed, the release not yet run) was cancelled, refunded, its customer
    told, and its photos purged in the same sweep.
    """
    with transaction.atomic():
        locked = order_locked(order_id=order.pk)
        if locked.status not in CUSTOMER_CANCELLABLE:
            raise Conflict(
                OrderError.ORDER_NOT_CANCELLABLE, f"An order that is {locked.status} cannot be cancelled."
            )
        if only_unpaid and (
            locked.status != OrderStatus.AWAITING_PAYMENT
            or locked.payment_status == Order.PaymentStatus.SUCCEEDED
        ):
            raise Conflict(OrderError.ORDER_NOT_CANCELLABLE, "The order was paid meanwhile.")
        # A captured payment is refunded after the commit; an unpaid intent is owed a cancel at Stripe,
        # recorded with this commit (a task message alone was lost with the broker, and the intent stayed
        # payable).
        refund_due = payments.payment_cancel_decide(order=locked)
        order_transition(
            order=locked,
            to_status=OrderStatus.CANCELLED,
            actor=actor,
            actor_kind=actor_kind,
            note="cancelled",
        )
    if refund_due:
        payment_refunds.refund_issue_soon(order_id=locked.pk)
        locked.refresh_from_db()
    return locked
