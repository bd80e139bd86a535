"""The box at the packing station: the packer's count of each item, the pack, and the unpack.

A confirmed item is stored as copies_packed on its printed jobs, so the count survives page reloads; it is
the packer's alone (the floor's quality check writes copies_verified). A count, a pack or an unpack is taken
only with the token of the page it was made from, while the box is still as that page showed it.
"""

from __future__ import annotations

import logging

from django.db import models
from django.utils import timezone

from lab.accounts.models import User
from lab.lib.errors import Conflict, DomainError, NotFound
from lab.orders.models import Order, OrderItem
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_transition
from lab.packing.checklist import (
    ChecklistLine,
    order_checklist,
    order_page_check,
    page_token_change,
    page_token_required,
)
from lab.packing.errors import PackingError
from lab.packing.scanning import packing_access_check, station_step
from lab.production.errors import ProductionError
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus

logger = logging.getLogger(__name__)

_NOT_READY = ", not ready to pack"
_NOT_READY_CODE = PackingError.ORDER_NOT_READY_TO_PACK


def _printed_jobs(item: OrderItem) -> list[PrintJob]:
    # Newest first: a reprint replaces the copies its original lost, so it is counted before them. The job's
    # order too, not its item alone: a job moved to another order in the database prints nothing for this one.
    jobs = PrintJob.objects.filter(order_id=item.order_id, item=item, status=JobStatus.PRINTED)
    return list(jobs.order_by("-pk"))


def _line_of(order: Order, position: int) -> ChecklistLine:
    return next(line for line in order_checklist(order=order) if line.position == position)


def item_confirm(
    *, code: str, position: int, copies_counted: int, actor: User, seen: str | None
) -> ChecklistLine:
    """The packer counted the prints of one item: the count must be the item's copies exactly.

    `seen` is the page token of the checklist line the count was made from (required): a reprint printed
    since, a quality check, a count from another page or an unpack refuses the count, which was of the prints
    on the table before it."""
    packing_access_check(actor)
    seen = page_token_required(seen, step="count")
    with station_step(
        code=code, actor=actor, status=OrderStatus.READY_TO_PACK, why=_NOT_READY, refused=_NOT_READY_CODE
    ) as order:
        item = order.items.select_related("product").filter(position=position).first()
        if item is None:
            raise NotFound(PackingError.ITEM_NOT_FOUND, f"Order {order.ref} has no item {position}.")
        why = page_token_change(seen, _line_of(order, position).seen)
        if why is not None:
            raise Conflict(
                ProductionError.JOB_CHANGED,
                f"Item {position} changed since you opened this page ({why}): count it again. "
                "Nothing was confirmed.",
            )
        if copies_counted != item.copies:
            raise DomainError(
                PackingError.COUNT_MISMATCH,
                f"Item {position} needs {item.copies} copies; you counted {copies_counted}. "
                "Nothing was confirmed.",
            )
        _copies_packed(item, actor=actor)
    return _line_of(order, position)


def _copies_packed(item: OrderItem, *, actor: User) -> None:
    jobs = _printed_jobs(item)
    # A print the quality check rejected is not a copy, whatever the packer counts; its reprint is.
    good = sum(job.copies - job.copies_rejected for job in jobs)
    if good < item.copies:
        if any(job.copies_rejected for job in jobs):
            message = (
                f"Item {item.position} has {good} good prints of {item.copies} after the quality check: "
                f"{item.copies - good} to reprint."
            )
        else:
            message = f"Item {item.position} has fewer than {item.copies} printed copies."
        raise DomainError(PackingError.COPIES_NOT_PRINTED, message)
    remaining = item.copies
    for job in jobs:
        verified = min(job.copies - job.copies_rejected, remaining)
        remaining -= verified
        # copies_packed is the station's count; copies_verified too, as the prints' check for the floor's
        # job page. Only copies_packed lets the order be packed.
        PrintJob.objects.filter(pk=job.pk).update(
            copies_packed=verified, copies_verified=verified, updated_at=timezone.now()
        )
        JobEvent.objects.create(
            job=job, kind="copies_verified", actor=actor, note=f"packing: {verified} of {job.copies}"
        )


def order_pack(*, code: str, actor: User, seen: str | None) -> Order:
    """ready_to_pack → packed, once every item's copies are confirmed by the packer (copies_packed).

    `seen` is the page token of the whole checklist the pack was made from (required): a pack from a page
    that showed the order otherwise (a reprint since, a count, an unpack) is refused."""
    packing_access_check(actor)
    seen = page_token_required(seen, step="pack")
    with station_step(
        code=code, actor=actor, status=OrderStatus.READY_TO_PACK, why=_NOT_READY, refused=_NOT_READY_CODE
    ) as order:
        checklist = order_page_check(order, seen=seen, step="pack")
        missing = [line for line in checklist if not line.is_confirmed]
        if missing:
            listed = ", ".join(
                f"item {line.position} ({line.copies_confirmed} of {line.copies})" for line in missing
            )
            raise DomainError(
                PackingError.ITEMS_NOT_CONFIRMED, f"Confirm every item before packing: {listed}."
            )
        order_transition(order=order, to_status=OrderStatus.PACKED, actor=actor, actor_kind="staff")
    logger.info("order packed order=%s actor=%s", order.ref, actor.pk)
    return order


def order_unpack(*, code: str, actor: User, seen: str | None) -> Order:
    """packed → ready_to_pack, every count of the box undone: a packer who finds a wrong or damaged print
    while taping it counts the order again, or asks the floor for a hold or a reprint (both refuse a packed
    order). Anyone who may pack may unpack, as anyone may ship: the station ties no box to its packer.

    `seen` is the page token of the whole order the unpack was made from (required), as for a pack: a page
    opened before another packer unpacked and packed the box again unpacks nothing."""
    packing_access_check(actor)
    seen = page_token_required(seen, step="unpack")
    with station_step(
        code=code, actor=actor, status=OrderStatus.PACKED, why="; only a packed order is unpacked"
    ) as order:
        order_page_check(order, seen=seen, step="unpack")
        # Each count is undone, not only the one found wrong: the box was opened, so what goes back into it is
        # counted again. A quality check's rejection (copies_rejected) stands.
        counted = models.Q(copies_verified__gt=0) | models.Q(copies_packed__gt=0)
        for job in PrintJob.objects.filter(counted, order=order).order_by("pk"):
            PrintJob.objects.filter(pk=job.pk).update(
                copies_verified=0, copies_packed=0, updated_at=timezone.now()
            )
            JobEvent.objects.create(
                job=job, kind="copies_unverified", actor=actor, note=f"packing: unpacked, 0 of {job.copies}"
            )
        order_transition(
            order=order,
            to_status=OrderStatus.READY_TO_PACK,
            actor=actor,
            actor_kind="staff",
            note="unpacked at the packing station",
        )
    logger.info("order unpacked order=%s actor=%s", order.ref, actor.pk)
    return order
