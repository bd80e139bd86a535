"""The packing station: find an order by its scanned code, confirm its copies, pack it, ship it; slip PDFs.

A confirmed item is stored as copies_packed on its printed jobs, so the count survives page reloads; it is
the packer's alone (the floor's quality check writes copies_verified). Every refusal is a DomainError raised
before anything is written.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from lab.accounts.models import User
from lab.accounts.roles import PACKING_ROLES, has_role
from lab.lib.clock import database_now
from lab.lib.errors import CommonError, Conflict, DomainError, NotFound, PermissionDenied
from lab.orders.errors import OrderError
from lab.orders.models import Order, OrderEvent, OrderItem, is_order_ref, tracking_key, tracking_key_of
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.packing.errors import PackingError
from lab.packing.services import (
    SLIP_RENDER_ATTEMPTS,
    SlipOutdated,
    order_shipping_check,
    packing_slip_get_or_render,
    slip_data_for,
)
from lab.packing.slip import SlipData, render_slips
from lab.production.errors import ProductionError
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus

logger = logging.getLogger(__name__)

STATION_STATUSES = frozenset({OrderStatus.READY_TO_PACK, OrderStatus.PACKED})
SLIP_STATUSES = frozenset({OrderStatus.READY_TO_PACK, OrderStatus.PACKED, OrderStatus.SHIPPED})
_ORDER_CODE = re.compile(r"^PL-[0-9A-HJKMNP-TV-Z]{12}$")
_TRACKING = re.compile(r"^[A-Z0-9][A-Z0-9 -]{3,62}[A-Z0-9]$")


class Carrier(models.TextChoices):
    UPS = "ups", "UPS"
    USPS = "usps", "USPS"
    FEDEX = "fedex", "FedEx"
    DHL = "dhl", "DHL"
    OTHER = "other", "Other"


@dataclass(frozen=True)
class ChecklistLine:
    position: int
    product: str
    size: str
    paper: str
    copies: int
    copies_confirmed: int
    copies_reprinted: int = 0  # of its printed copies, those a reprint made
    # What the page showing this line saw of the item (its_seen): a count posted from it is refused once the
    # item's prints or the order's status changed since.
    seen: str = ""

    @property
    def is_confirmed(self) -> bool:
        return self.copies_confirmed >= self.copies

    @property
    def reprint_note(self) -> str:
        """For the packer, who may have the rejected print on the table beside its replacement."""
        if not self.copies_reprinted:
            return ""
        reprints = "is a reprint" if self.copies_reprinted == 1 else "are reprints"
        rejected = "print" if self.copies_reprinted == 1 else "prints"
        return f"{self.copies_reprinted} of {self.copies} {reprints}: put the rejected {rejected} aside"


@dataclass(frozen=True)
class _JobCount:
    """A printed job of an item, as the station counts it."""

    pk: int
    copies: int
    copies_rejected: int
    copies_packed: int
    is_reprint: bool

    @property
    def copies_counted(self) -> int:
        # A print the quality check rejected (or a reprint replaced) is never in the box, whatever the count.
        return max(0, min(self.copies_packed, self.copies - self.copies_rejected))


def packing_access_check(actor: User) -> None:
    if not has_role(actor, *PACKING_ROLES):
        raise PermissionDenied(
            CommonError.NOT_ALLOWED, "Only packers and supervisors use the packing station."
        )


def order_code_normalize(code: str) -> str:
    """What a keyboard-wedge scanner or a person typed, as an order ref; refuses anything else."""
    ref = code.strip().upper()
    if not _ORDER_CODE.match(ref):
        raise DomainError(
            PackingError.NOT_AN_ORDER_CODE, f"“{code.strip()[:40]}” is not an order code (PL-…)."
        )
    return ref


def _order_in(*, code: str, statuses: frozenset[str], why: str) -> Order:
    """The order a scanned code names, refused when it is not in one of `statuses`."""
    ref = order_code_normalize(code)
    order = Order.objects.filter(ref=ref).first() if is_order_ref(ref) else None
    if order is None:
        raise NotFound(OrderError.ORDER_NOT_FOUND, f"No order {ref}.")
    _status_check(order, statuses=statuses, why=why)
    return order


def _status_check(order: Order, *, statuses: frozenset[str], why: str) -> None:
    if order.status not in statuses:
        raise Conflict(
            PackingError.ORDER_NOT_READY_TO_PACK,
            f"Order {order.ref} is {order.get_status_display().lower()}{why}.",
        )


def station_order(*, code: str, actor: User) -> Order:
    """The order a scanned code names, if it is at the packing station (ready to pack, or packed)."""
    packing_access_check(actor)
    return _order_in(code=code, statuses=STATION_STATUSES, why=", not ready to pack")


def _printed_jobs(item: OrderItem) -> list[PrintJob]:
    # Newest first: a reprint replaces the copies its original lost, so it is counted before them. The job's
    # order too, not its item alone: a job moved to another order in the database prints nothing for this one.
    jobs = PrintJob.objects.filter(order_id=item.order_id, item=item, status=JobStatus.PRINTED)
    return list(jobs.order_by("-pk"))


def _printed_job_counts(order: Order) -> dict[int, list[_JobCount]]:
    # One query for every item's printed jobs, not one per item: photo orders run to hundreds of items.
    counts: dict[int, list[_JobCount]] = defaultdict(list)
    rows = (
        PrintJob.objects.filter(order=order, status=JobStatus.PRINTED)
        .order_by("pk")
        .values_list("item_id", "pk", "copies", "copies_rejected", "copies_packed", "reprint_of_id")
    )
    for item_id, pk, copies, rejected, packed, reprint_of_id in rows:
        counts[item_id].append(_JobCount(pk, copies, rejected, packed, is_reprint=reprint_of_id is not None))
    return counts


def _last_status_event(order: Order) -> int:
    """The order's last status change: an unpack, or a trip back to the floor, makes older pages stale."""
    last = (
        OrderEvent.objects.filter(order=order, kind="status_changed")
        .order_by("-pk")
        .values_list("pk")
        .first()
    )
    return last[0] if last else 0


def _item_seen(jobs: list[_JobCount], *, status_event: int) -> str:
    """What a page shows of an item: its printed jobs (each with its copies and rejected prints) and the
    order's last status change. Not the counts: a count made in another tab changes nothing on the table."""
    return f"e{status_event}" + "".join(f"-j{job.pk}x{job.copies}r{job.copies_rejected}" for job in jobs)


def _seen_jobs(seen: str) -> set[int]:
    return {
        int(part[1:].split("x")[0]) for part in seen.split("-")[1:] if re.fullmatch(r"j\d+x\d+r\d+", part)
    }


def order_seen(checklist: list[ChecklistLine]) -> str:
    """What a page shows of the whole order, for its pack form (a digest: orders run to hundreds of items)."""
    return hashlib.sha256("|".join(line.seen for line in checklist).encode()).hexdigest()[:32]


def order_checklist(*, order: Order) -> list[ChecklistLine]:
    jobs = _printed_job_counts(order)
    status_event = _last_status_event(order)
    lines = []
    for item in order.items.select_related("product").order_by("position"):
        item_jobs = jobs[item.pk]
        confirmed = sum(job.copies_counted for job in item_jobs)
        reprinted = sum(job.copies - job.copies_rejected for job in item_jobs if job.is_reprint)
        lines.append(
            ChecklistLine(
                position=item.position,
                product=item.product.name,
                size=item.product.size_label,
                paper=item.product.paper,
                copies=item.copies,
                copies_confirmed=min(confirmed, item.copies),
                copies_reprinted=min(reprinted, item.copies),
                seen=_item_seen(item_jobs, status_event=status_event),
            )
        )
    return lines


def _seen_check(order: Order, *, position: int, seen: str) -> None:
    """Refuses a count from a page that showed the item otherwise than it is now (JOB_CHANGED)."""
    line = next(line for line in order_checklist(order=order) if line.position == position)
    if seen == line.seen:
        return
    if _seen_jobs(line.seen) - _seen_jobs(seen):
        why = "a reprint"
    elif seen.split("-")[0] != line.seen.split("-")[0]:
        why = "it left the packing station and came back"
    else:
        why = "a quality check"
    raise Conflict(
        ProductionError.JOB_CHANGED,
        f"Item {position} changed since you opened this page ({why}): count it again. Nothing was confirmed.",
    )


def item_confirm(
    *, code: str, position: int, copies_counted: int, actor: User, seen: str | None = None
) -> ChecklistLine:
    """The packer counted the prints of one item: the count must be the item's copies exactly.

    `seen` is the checklist line's `seen` on the page the count was made from: a reprint printed since (or a
    quality check, or an unpack) refuses the count, which was of the prints on the table before it. None: a
    caller that shows no page (the check is then the caller's)."""
    packing_access_check(actor)
    ref = order_code_normalize(code)
    with transaction.atomic():
        order = order_locked(ref=ref)
        if order.status != OrderStatus.READY_TO_PACK:
            raise Conflict(
                PackingError.ORDER_NOT_READY_TO_PACK,
                f"Order {ref} is {order.get_status_display().lower()}, not ready to pack.",
            )
        item = order.items.select_related("product").filter(position=position).first()
        if item is None:
            raise NotFound(PackingError.ITEM_NOT_FOUND, f"Order {ref} has no item {position}.")
        if seen is not None:
            _seen_check(order, position=position, seen=seen)
        if copies_counted != item.copies:
            raise DomainError(
                PackingError.COUNT_MISMATCH,
                f"Item {position} needs {item.copies} copies; you counted {copies_counted}. "
                "Nothing was confirmed.",
            )
        jobs = _printed_jobs(item)
        # A print the quality check rejected is not a copy, whatever the packer counts; its reprint is.
        good = sum(job.copies - job.copies_rejected for job in jobs)
        if good < item.copies:
            if any(job.copies_rejected for job in jobs):
                message = (
                    f"Item {position} has {good} good prints of {item.copies} after the quality check: "
                    f"{item.copies - good} to reprint."
                )
            else:
                message = f"Item {position} has fewer than {item.copies} printed copies."
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
    return next(line for line in order_checklist(order=order) if line.position == position)


def order_pack(*, code: str, actor: User, seen: str | None = None) -> Order:
    """ready_to_pack → packed, once every item's copies are confirmed by the packer (copies_packed).

    `seen` is order_seen of the page's checklist: a pack from a page that showed the order otherwise (a
    reprint since, an unpack) is refused. None: no page, no such check."""
    packing_access_check(actor)
    ref = order_code_normalize(code)
    with transaction.atomic():
        order = order_locked(ref=ref)
        if order.status != OrderStatus.READY_TO_PACK:
            raise Conflict(
                PackingError.ORDER_NOT_READY_TO_PACK,
                f"Order {ref} is {order.get_status_display().lower()}, not ready to pack.",
            )
        checklist = order_checklist(order=order)
        if seen is not None and seen != order_seen(checklist):
            raise Conflict(
                ProductionError.JOB_CHANGED,
                f"Order {ref} changed since you opened this page (a reprint, a quality check or an unpack): "
                "look at its checklist again before packing. It was not packed.",
            )
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


def order_unpack(*, code: str, actor: User) -> Order:
    """packed → ready_to_pack, every count of the box undone: a packer who finds a wrong or damaged print
    while taping it counts the order again, or asks the floor for a hold or a reprint (both refuse a packed
    order). Anyone who may pack may unpack, as anyone may ship: the station ties no box to its packer."""
    packing_access_check(actor)
    ref = order_code_normalize(code)
    with transaction.atomic():
        order = order_locked(ref=ref)
        if order.status != OrderStatus.PACKED:
            # An order gone from the station (shipped, held, …) is refused as the station refuses to open it,
            # so the page goes back to the scan box; one still to pack, as a packing step out of turn.
            at_station = order.status in STATION_STATUSES
            raise Conflict(
                PackingError.ORDER_NOT_PACKED if at_station else PackingError.ORDER_NOT_READY_TO_PACK,
                f"Order {ref} is {order.get_status_display().lower()}; only a packed order is unpacked.",
            )
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


def order_ship(*, code: str, actor: User, carrier: str, tracking_number: str) -> Order:
    """packed → shipped with the carrier and its tracking number; a pickup is handed over instead."""
    packing_access_check(actor)
    ref = order_code_normalize(code)
    if carrier not in Carrier.values:
        raise DomainError(PackingError.INVALID_CARRIER, f"Choose a carrier: {', '.join(Carrier.labels)}.")
    tracking = tracking_number.strip().upper()
    if not _TRACKING.match(tracking):
        raise DomainError(
            PackingError.INVALID_TRACKING_NUMBER,
            "A tracking number is 5 to 64 letters, digits, spaces or dashes.",
        )
    if _ORDER_CODE.match(tracking.replace(" ", "")):
        # The station asks for slips' barcodes too: the next box's slip scanned into this field would ship
        # this order for good under another customer's ref.
        raise DomainError(
            PackingError.INVALID_TRACKING_NUMBER,
            f"{tracking} is an order's code, not a tracking number: scan the carrier's label.",
        )
    try:
        with transaction.atomic():
            order = order_locked(ref=ref)
            if order.status != OrderStatus.PACKED:
                raise Conflict(
                    PackingError.ORDER_NOT_PACKED,
                    f"Order {ref} is {order.get_status_display().lower()}; pack it before shipping.",
                )
            # Its method or address written in the database alone: it is not posted, nor handed over.
            order_shipping_check(order, refused="it is not shipped")
            if is_collected_at_the_counter(order):
                # Shipped under an invented number, the customer was e-mailed it as their parcel's.
                raise Conflict(
                    PackingError.COLLECTED_AT_THE_COUNTER,
                    f"Order {ref} is collected at the counter: hand it over, "
                    "with no carrier or tracking number.",
                )
            _tracking_number_free(tracking, order=order)
            order.carrier = carrier
            order.tracking_number = tracking
            order.shipped_at = database_now()  # the slip's window is judged on it, on the same clock
            order_transition(
                order=order,
                to_status=OrderStatus.SHIPPED,
                actor=actor,
                actor_kind="staff",
                # The carrier only: every floor role reads the timeline for as long as the order is kept, and
                # the tracking number is personal data kept on the order row, which an erasure blanks (the
                # orders migration shipped_event_notes_without_tracking_numbers took it out of older notes).
                note=carrier,
                extra_fields=("carrier", "tracking_number", "shipped_at"),
            )
    except IntegrityError as error:
        # Taken by another packer's box between the check and this commit: the same answer, nothing kept.
        _tracking_number_free(tracking, order=None)
        raise error
    logger.info("order shipped order=%s carrier=%s actor=%s", order.ref, carrier, actor.pk)
    return order


def is_collected_at_the_counter(order: Order) -> bool:
    return order.shipping_method == Order.ShippingMethod.PICKUP


def order_hand_over(*, code: str, actor: User) -> Order:
    """packed → shipped for an order the customer collects at the counter: no carrier, no tracking number (the
    empty number is outside order_tracking_number_unique, so every pickup may have it). `shipped` is the
    order's end at the lab either way; its time starts the slip's window and the privacy receipt as a
    parcel's does."""
    packing_access_check(actor)
    ref = order_code_normalize(code)
    with transaction.atomic():
        order = order_locked(ref=ref)
        if order.status != OrderStatus.PACKED:
            raise Conflict(
                PackingError.ORDER_NOT_PACKED,
                f"Order {ref} is {order.get_status_display().lower()}; pack it before handing it over.",
            )
        # "pickup" written in the database alone on a parcel's order: the box would go to whoever gives the
        # name on its slip.
        order_shipping_check(order, refused="it is not handed over")
        if not is_collected_at_the_counter(order):
            raise Conflict(
                PackingError.SHIPS_BY_CARRIER,
                f"Order {ref} ships {order.shipping_method}: "
                "enter the carrier and tracking number to ship it.",
            )
        order.shipped_at = database_now()
        order_transition(
            order=order,
            to_status=OrderStatus.SHIPPED,
            actor=actor,
            actor_kind="staff",
            note="picked up at the counter",
            extra_fields=("shipped_at",),
        )
    logger.info("order handed over order=%s actor=%s", order.ref, actor.pk)
    return order


def _tracking_number_free(tracking: str, *, order: Order | None) -> None:
    # (the empty number excluded as the unique index's condition does, so the index answers it)
    others = (
        Order.objects.exclude(tracking_number="")
        .annotate(parcel=tracking_key())
        .filter(parcel=tracking_key_of(tracking))
    )
    other = (others.exclude(pk=order.pk) if order is not None else others).first()
    if other is not None:
        raise Conflict(
            PackingError.TRACKING_NUMBER_IN_USE,
            f"Tracking number {tracking} is already order {other.ref}'s: scan this box's own label.",
        )


def slip_pdf(*, code: str, actor: User) -> bytes:
    """The stored packing slip of an order, rendered now when the worker has not made it yet.

    Served under the order's lock, which a customer's change of address takes too, and recorded on the order
    (`slip_served_at`): from then on a paper slip may carry the address, so the customer no longer changes it
    (lab/orders/address.py), even when the order goes back to the floor."""
    packing_access_check(actor)
    order = _order_in(code=code, statuses=SLIP_STATUSES, why="; it has no slip yet")
    with transaction.atomic():
        order = order_locked(order_id=order.pk)
        _status_check(order, statuses=SLIP_STATUSES, why="; it has no slip yet")
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
