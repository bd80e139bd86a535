"""The packing station: find an order by its scanned code, confirm its copies, pack it, ship it; slip PDFs.

The station's steps live by concept (scanning: access and the scanned order; checklist: what a page shows and
its token; box: count, pack, unpack; shipping: ship, hand over); this module serves the slips and is the one
the staff pages call. Every refusal is a DomainError raised before anything is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from lab.accounts.models import User
from lab.lib.clock import database_now
from lab.lib.errors import Conflict, DomainError
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked
from lab.packing.box import item_confirm, order_pack, order_unpack
from lab.packing.checklist import ChecklistLine, order_checklist, order_seen
from lab.packing.errors import PackingError
from lab.packing.scanning import (
    SLIP_STATUSES,
    STATION_STATUSES,
    order_code_normalize,
    order_in,
    packing_access_check,
    status_check,
)
from lab.packing.services import (
    SLIP_RENDER_ATTEMPTS,
    SlipOutdated,
    packing_slip_get_or_render,
    slip_data_for,
)
from lab.packing.shipping import Carrier, is_collected_at_the_counter, order_hand_over, order_ship
from lab.packing.slip import SlipData, render_slips

__all__ = [
    "Carrier",
    "ChecklistLine",
    "DaySlips",
    "day_slips_pdf",
    "is_collected_at_the_counter",
    "item_confirm",
    "order_checklist",
    "order_code_normalize",
    "order_hand_over",
    "order_pack",
    "order_seen",
    "order_ship",
    "order_unpack",
    "packing_access_check",
    "slip_pdf",
    "station_order",
]

logger = logging.getLogger(__name__)


def station_order(*, code: str, actor: User) -> Order:
    """The order a scanned code names, if it is at the packing station (ready to pack, or packed)."""
    packing_access_check(actor)
    return order_in(code=code, statuses=STATION_STATUSES, why=", not ready to pack")


def slip_pdf(*, code: str, actor: User) -> bytes:
    """The stored packing slip of an order, rendered now when the worker has not made it yet.

    Served under the order's lock, which a customer's change of address takes too, and recorded on the order
    (`slip_served_at`): from then on a paper slip may carry the address, so the customer no longer changes it
    (lab/orders/address.py), even when the order goes back to the floor."""
    packing_access_check(actor)
    order = order_in(code=code, statuses=SLIP_STATUSES, why="; it has no slip yet")
    with transaction.atomic():
        order = order_locked(order_id=order.pk)
        status_check(order, statuses=SLIP_STATUSES, why="; it has no slip yet")
        # On the database's clock, as shipped_at is written: a web host whose clock runs behind served a
        # shipped customer's name and address past the window.
        now = database_now()
        served_until = (order.shipped_at or now) + timedelta(hours=settings.PACKING_SHIPPED_SLIP_HOURS)
        if order.status == OrderStatus.SHIPPED and now > served_until:
            # A label torn at the door is reprinted the same day; later, the slip would only be a customer's
            # name and address handed to whoever asks at the station (job pages name any order's ref).
            raise Conflict(
                PackingError.SLIP_NO_LONGER_SERVED,
                f"Order {order.ref} shipped more than {settings.PACKING_SHIPPED_SLIP_HOURS} h ago; "
                "its slip is no longer served at the station.",
            )
        pdf = bytes(packing_slip_get_or_render(order_id=order.pk).pdf)
        if order.slip_served_at is None:
            Order.objects.filter(pk=order.pk).update(slip_served_at=now)
    return pdf


@dataclass(frozen=True)
class DaySlips:
    pdf: bytes
    count: int
    refused: list[str]  # refs of orders given no slip: their address was written outside the lab


def day_slips_pdf(*, actor: User) -> DaySlips:
    """One PDF with the slip of every order ready to pack (oldest first). An order whose address was written
    outside the lab gets none and is named in `refused`; it does not hold up the other orders' slips.

    Two short transactions around a render outside any, as packing_slip_render does: a day of 1,000 orders
    renders in seconds, and under the locks it held up the other packers, the slip worker, payment webhooks
    and floor holds on those orders (on SQLite, every writer). The slips are read under the orders' locks,
    nothing written; the PDF is rendered; then, under the locks again, the orders are marked as served
    (`slip_served_at`: a customer's change of address afterwards is refused) only if each still gives the slip
    rendered. One sent back to the floor meanwhile with its slip unchanged is marked too: the PDF carries its
    address. If any slip changed (an address changed after a hold, its items, its seal broken), none is marked
    and the day is read and rendered again, up to SLIP_RENDER_ATTEMPTS times; then SlipOutdated is raised,
    nothing marked, rather than a PDF that labels a box for an address it no longer has.
    A render that fails (an error, the worker killed for time or memory) marks none of them."""
    packing_access_check(actor)
    for _ in range(SLIP_RENDER_ATTEMPTS):
        slips, refused = _day_slips_read()
        pdf = render_slips(slips=list(slips.values()))
        changed = _day_slips_mark(slips)
        if not changed:
            return DaySlips(pdf=pdf, count=len(slips), refused=refused)
        logger.info("day's slips outdated while rendered, rendered again orders=%s", ",".join(changed))
    raise SlipOutdated(f"orders changed during each of {SLIP_RENDER_ATTEMPTS} renders of the day's slips")


def _day_slips_read() -> tuple[dict[int, SlipData], list[str]]:
    """The slip of each order ready to pack (by order id, oldest order first), read under the orders' locks
    (in id order) so that none is half-written, and the refs of the orders refused a slip. Writes nothing."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().filter(status=OrderStatus.READY_TO_PACK).order_by("pk")
        orders = sorted(locked, key=lambda order: (order.created_at, order.pk))
        if not orders:
            raise DomainError(PackingError.NO_ORDERS_TO_PACK, "No order is ready to pack.")
        slips: dict[int, SlipData] = {}
        refused: list[str] = []
        for order in orders:
            try:
                slips[order.pk] = slip_data_for(order)
            except Conflict as error:
                if error.code != PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB:
                    raise
                refused.append(order.ref)
        if not slips:
            raise Conflict(
                PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB,
                f"No slip is made: the shipping address of {', '.join(refused)} was changed outside the lab. "
                "Ask a supervisor.",
            )
    return slips, refused


def _day_slips_mark(slips: dict[int, SlipData]) -> list[str]:
    """Under the orders' locks, mark them as served if each still gives the slip rendered; else mark none and
    return the refs of those that changed (an order gone from the database is named by its id)."""
    with transaction.atomic():
        locked = {
            order.pk: order for order in Order.objects.select_for_update().filter(pk__in=slips).order_by("pk")
        }
        changed = [
            locked[pk].ref if pk in locked else str(pk)
            for pk, slip in slips.items()
            if not _still_gives(locked.get(pk), slip)
        ]
        if not changed:
            Order.objects.filter(pk__in=slips, slip_served_at__isnull=True).update(
                slip_served_at=database_now()
            )
    return changed


def _still_gives(order: Order | None, slip: SlipData) -> bool:
    if order is None:
        return False
    try:
        return slip_data_for(order) == slip
    except Conflict as error:
        if error.code != PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB:
            raise
        return False
