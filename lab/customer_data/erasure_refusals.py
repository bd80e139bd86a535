"""What holds up an erasure: an order still to be printed or shipped, a cancelled job of it still being
withdrawn from its printer, its money unsettled or paid at Stripe and not yet recorded
(lab/customer_data/erasure_payments.py); the 409 that names each such order and why.
"""

from __future__ import annotations

from collections.abc import Iterable

from lab.accounts.models import User
from lab.customer_data.erasure_payments import PAID_AT_STRIPE_REASON, UNSETTLED_PAYMENTS
from lab.customer_data.errors import CustomerDataError
from lab.customer_data.retention_rules import PHOTO_NEEDED_STATUSES
from lab.lib.errors import Conflict
from lab.orders.models import Order
from lab.orders.payments import UNPAID_PAYMENT_STATUSES
from lab.orders.states import OrderStatus
from lab.production.models import PrintJob


def _is_open(order: Order) -> bool:
    # An unpaid order whose money has arrived is about to be paid: it counts as open.
    return order.status in PHOTO_NEEDED_STATUSES or (
        order.status == OrderStatus.AWAITING_PAYMENT and order.payment_status == Order.PaymentStatus.SUCCEEDED
    )


# A cancelled job the printer may still hold (PrintJob.cancel_at_printer: a supervisor's cancel while the
# printer was unreachable, or while a worker's send was still landing): its decrypted raster lies in the
# printer's spool (cupsd's, a hot folder's inbox) and may print when the printer comes back. Erased then, the
# key went and the receipt said so while that plain copy stayed. The flag is cleared once the printer agrees,
# or at once for a job left with no printer (lab/production/cancellation.py: printer_cancel), by the poll.
WITHDRAWING_FROM_PRINTER_REASON = "a copy of your photo is still being withdrawn from a printer"


def _why_kept(
    order: Order, paid_at_stripe: frozenset[str] = frozenset(), withdrawing: frozenset[int] = frozenset()
) -> str | None:
    """Why the order's data cannot be erased yet, in the customer's words; None when it can. `withdrawing`:
    the orders with a job still being cancelled at its printer (_withdrawing_from_printers)."""
    if _is_open(order):
        return "still to be printed or shipped"
    if order.pk in withdrawing:
        return WITHDRAWING_FROM_PRINTER_REASON
    if order.ref in paid_at_stripe and order.payment_status in UNPAID_PAYMENT_STATUSES:
        return PAID_AT_STRIPE_REASON
    return UNSETTLED_PAYMENTS.get(order.payment_status)


def _withdrawing_from_printers(orders: list[Order]) -> frozenset[int]:
    """The orders among `orders` with a job still being cancelled at its printer (one query)."""
    if not orders:
        return frozenset()
    flagged = PrintJob.objects.filter(order_id__in=[order.pk for order in orders], cancel_at_printer=True)
    return frozenset(flagged.values_list("order_id", flat=True).distinct())


def _blocked(
    orders: Iterable[Order], *, one: bool = False, paid_at_stripe: frozenset[str] = frozenset()
) -> Conflict | None:
    """The 409 for the orders whose data cannot be erased yet, naming each and why; None if there is none."""
    orders = list(orders)
    withdrawing = _withdrawing_from_printers(orders)
    reasons = {
        order.ref: why
        for order in orders
        if (why := _why_kept(order, paid_at_stripe, withdrawing)) is not None
    }
    if not reasons:
        return None
    listed = "; ".join(f"{ref} ({reasons[ref]})" for ref in sorted(reasons))
    return Conflict(
        CustomerDataError.ERASURE_BLOCKED_BY_OPEN_ORDERS,
        f"Your data cannot be erased yet, because of {'this order' if one else 'these orders'}: {listed}. "
        "It can be once each has shipped or been cancelled, its payment is settled and no printer still "
        "holds a copy of its photos.",
        orders=sorted(reasons),
    )


def _refuse_open_orders(user: User) -> None:
    """Lock every order of the customer, so none moves on while it is anonymised, and refuse while one is
    open or its money unsettled."""
    orders = list(Order.objects.select_for_update().filter(customer=user).order_by("pk"))
    refusal = _blocked(orders)
    if refusal is not None:
        raise refusal


def _refuse_paid_at_stripe(user: User, *, paid_at_stripe: frozenset[str]) -> None:
    """Once the orders are locked: refuse while one's payment has reached Stripe and is not yet recorded
    (`paid_at_stripe`, read before the locks)."""
    if not paid_at_stripe:
        return
    refusal = _blocked(Order.objects.filter(customer=user).order_by("pk"), paid_at_stripe=paid_at_stripe)
    if refusal is not None:
        raise refusal
