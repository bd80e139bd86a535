"""Holding an order in production for customer clarification, and releasing the hold, as staff actions.

The hold message is what the customer is asked; both moves go through order_transition and leave an event.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from lab.accounts.models import User
from lab.accounts.roles import FLOOR_ROLES, SUPERVISOR_ROLES, has_role
from lab.audit.grants import grants_revoke
from lab.lib.errors import CommonError, Conflict, DomainError, PermissionDenied
from lab.orders.models import ClarificationCase, Order, OrderEvent
from lab.orders.payment_refunds import PARTLY_REFUNDED
from lab.orders.states import OrderStatus
from lab.orders.stripe_dispute_events import DISPUTE_OPENED
from lab.orders.stripe_payment_events import AMOUNT_MISMATCH
from lab.orders.transitions import order_locked, order_transition
from lab.production.errors import ProductionError
from lab.production.models import PrintJob
from lab.production.tracking import order_check_printed

HOLD_ROLES = FLOOR_ROLES
MONEY_TAKEN_BACK = frozenset(
    {Order.PaymentStatus.REFUND_PENDING, Order.PaymentStatus.REFUNDED, Order.PaymentStatus.DISPUTED}
)
# Ready to pack too: a box unpacked at the station (a wrong print found while taping it) is held from there
# for the customer's answer; released, it goes back to production and, its jobs all printed, to packing.
HOLDABLE = frozenset({OrderStatus.PAID, OrderStatus.IN_PRODUCTION, OrderStatus.READY_TO_PACK})
HOLD_MESSAGE_MAX = 1000


def _hold_access_check(actor: User) -> None:
    if not has_role(actor, *HOLD_ROLES):
        raise PermissionDenied(
            CommonError.NOT_ALLOWED, "Only technicians and supervisors put orders on hold."
        )


def order_hold(*, order_ref: str, actor: User, message: str) -> Order:
    """Stop an order (paid or in production) until the customer answers `message`."""
    _hold_access_check(actor)
    message = message.strip()
    if not message:
        raise DomainError(ProductionError.HOLD_MESSAGE_REQUIRED, "Say what the customer needs to clarify.")
    if len(message) > HOLD_MESSAGE_MAX:
        raise DomainError(
            ProductionError.HOLD_MESSAGE_TOO_LONG,
            f"The message is longer than {HOLD_MESSAGE_MAX} characters.",
        )
    with transaction.atomic():
        order = order_locked(ref=order_ref)
        if order.status not in HOLDABLE:
            raise Conflict(
                ProductionError.ORDER_NOT_HOLDABLE,
                f"Order {order.ref} is {order.get_status_display().lower()}; "
                "only paid orders not yet packed can be held.",
            )
        order.hold_message = message
        # The case is the context an `order_clarification` photo view rests on; releasing the hold closes it.
        ClarificationCase.objects.create(order=order, opened_by=actor, question=message)
        return order_transition(
            order=order,
            to_status=OrderStatus.ON_HOLD,
            actor=actor,
            actor_kind="staff",
            note=message,
            extra_fields=("hold_message",),
        )


def hold_event_id(order: Order) -> int:
    """The hold the order is in: the id of its newest move to on hold (0: never held). Each hold, a person's
    or Stripe's, is a move of its own, so a hold released and placed again has another id."""
    newest = (
        OrderEvent.objects.filter(order=order, kind="status_changed", to_status=OrderStatus.ON_HOLD)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    return newest or 0


def order_release_hold(*, order_ref: str, actor: User, hold_seen: int | None = None) -> Order:
    """Send a held order back where it was held from: in production, or paid (not yet released).

    `hold_seen` is the hold the page showed (`hold_event_id` when it was opened; None: not checked): a hold
    released and placed again since (another tab, another technician) refuses, as the release was of the
    question the page showed (before, the new hold was released with its question unanswered)."""
    _hold_access_check(actor)
    with transaction.atomic():
        order = order_locked(ref=order_ref)
        if order.status != OrderStatus.ON_HOLD:
            raise Conflict(
                ProductionError.ORDER_NOT_ON_HOLD,
                f"Order {order.ref} is {order.get_status_display().lower()}, not on hold.",
            )
        if hold_seen is not None and hold_seen != hold_event_id(order):
            raise Conflict(
                ProductionError.JOB_CHANGED,
                f"Order {order.ref} was released and held again since you opened this page; nothing was "
                "released. Look at the new hold before releasing it.",
            )
        # A payment of another amount than the order's (AMOUNT_MISMATCH) is owed back, whatever its status
        # says: before, it was not counted, and a technician released an order it had paid. A payment once
        # disputed stays a supervisor's to release after the dispute closed won (the status is `succeeded`
        # again): before, a technician released the hold the dispute had placed.
        money_back = order.payment_status in MONEY_TAKEN_BACK or (
            OrderEvent.objects.filter(
                order=order, kind__in=(PARTLY_REFUNDED, AMOUNT_MISMATCH, DISPUTE_OPENED)
            ).exists()
        )
        if money_back and not has_role(actor, *SUPERVISOR_ROLES):
            # A refund or dispute held it (lab/orders/stripe_events.py): going on means printing and shipping
            # an order whose money went back, which a supervisor decides, not whoever is at the floor.
            raise PermissionDenied(
                CommonError.NOT_ALLOWED,
                f"Order {order.ref}'s payment was refunded, disputed or of another amount: only a supervisor "
                "releases the hold.",
            )
        # A paid order held before its release has no jobs: back to paid, which releases it to production.
        has_jobs = PrintJob.objects.filter(order=order).exists()
        to_status = OrderStatus.IN_PRODUCTION if has_jobs else OrderStatus.PAID
        order.hold_message = ""
        clarifications_close(order_id=order.pk)
        order_transition(
            order=order,
            to_status=to_status,
            actor=actor,
            actor_kind="staff",
            note="hold released",
            extra_fields=("hold_message",),
        )
        if to_status == OrderStatus.IN_PRODUCTION:
            # Jobs may all have printed while the order was held; then it is ready to pack now.
            order_check_printed(order_id=order.pk)
    order.refresh_from_db()
    return order


def clarifications_close(*, order_id: int) -> None:
    """Inside the caller's transaction: the order's open clarifications are closed, and the photo views
    they opened end with them."""
    for case in ClarificationCase.objects.filter(order_id=order_id, closed_at__isnull=True):
        case.closed_at = timezone.now()
        case.save(update_fields=["closed_at"])
        grants_revoke(context_type="clarification_case", context_id=case.pk, reason="case_closed")
