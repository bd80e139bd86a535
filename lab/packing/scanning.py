"""Who may use the packing station, the order a scanned code names, and the lock a station step takes on it.

Every refusal here is a DomainError raised before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from django.db import transaction

from lab.accounts.models import User
from lab.accounts.roles import PACKING_ROLES, has_role
from lab.lib.errors import CommonError, Conflict, DomainError, NotFound, PermissionDenied
from lab.orders.errors import OrderError
from lab.orders.models import Order, is_order_ref
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked
from lab.packing.errors import PackingError

STATION_STATUSES = frozenset({OrderStatus.READY_TO_PACK, OrderStatus.PACKED})
SLIP_STATUSES = frozenset({OrderStatus.READY_TO_PACK, OrderStatus.PACKED, OrderStatus.SHIPPED})
ORDER_CODE = re.compile(r"^PL-[0-9A-HJKMNP-TV-Z]{12}$")


def packing_access_check(actor: User) -> None:
    if not has_role(actor, *PACKING_ROLES):
        raise PermissionDenied(
            CommonError.NOT_ALLOWED, "Only packers and supervisors use the packing station."
        )


def order_code_normalize(code: str) -> str:
    """What a keyboard-wedge scanner or a person typed, as an order ref; refuses anything else."""
    ref = code.strip().upper()
    if not ORDER_CODE.match(ref):
        raise DomainError(
            PackingError.NOT_AN_ORDER_CODE, f"“{code.strip()[:40]}” is not an order code (PL-…)."
        )
    return ref


def order_in(*, code: str, statuses: frozenset[str], why: str) -> Order:
    """The order a scanned code names, refused when it is not in one of `statuses`."""
    ref = order_code_normalize(code)
    order = Order.objects.filter(ref=ref).first() if is_order_ref(ref) else None
    if order is None:
        raise NotFound(OrderError.ORDER_NOT_FOUND, f"No order {ref}.")
    status_check(order, statuses=statuses, why=why)
    return order


def status_check(
    order: Order,
    *,
    statuses: frozenset[str],
    why: str,
    code: StrEnum = PackingError.ORDER_NOT_READY_TO_PACK,
) -> None:
    """Refuses an order in none of `statuses`: "Order PL-… is <status><why>."."""
    if order.status not in statuses:
        raise Conflict(code, f"Order {order.ref} is {order.get_status_display().lower()}{why}.")


@contextmanager
def station_step(
    *, code: str, actor: User, status: str, why: str, refused: StrEnum | None = None
) -> Iterator[Order]:
    """One step of the station on the order `code` names, in one transaction under the order's lock, once the
    order is in `status`; else refused with the code `refused` ("Order PL-… is <status><why>.").

    `refused` None: ORDER_NOT_PACKED while the order is at the station (a step out of turn), else as the
    station refuses to open it (ORDER_NOT_READY_TO_PACK), so that the page goes back to the scan box."""
    packing_access_check(actor)
    ref = order_code_normalize(code)
    with transaction.atomic():
        order = order_locked(ref=ref)
        if refused is None:
            at_station = order.status in STATION_STATUSES
            refused = PackingError.ORDER_NOT_PACKED if at_station else PackingError.ORDER_NOT_READY_TO_PACK
        status_check(order, statuses=frozenset({status}), why=why, code=refused)
        yield order
