"""Reads for the production board: printers with their counts, batches by media, exceptions, late orders.

Only order refs, products and counts leave here: the board never needs a customer's photo or address.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, OuterRef, Q
from django.utils import timezone

from lab.orders.models import Order, OrderEvent
from lab.orders.selectors import promise_kept_q
from lab.orders.states import OrderStatus
from lab.production.alerts import PRINTED_AFTER_CANCEL_HOURS, printed_after_cancel_q
from lab.production.models import Batch, Printer, PrintJob
from lab.production.states import JobStatus
from lab.production.sweeps import SweepStatus, sweeps_overdue

J = JobStatus
COUNTED_STATUSES = (J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTED, J.PRINTED)
# Orders still on the floor: their jobs are shown in their batches, printed ones included.
FLOOR_ORDER_STATUSES = (OrderStatus.IN_PRODUCTION, OrderStatus.ON_HOLD, OrderStatus.READY_TO_PACK)
OPEN_ORDER_STATUSES = (
    OrderStatus.PAID,
    OrderStatus.IN_PRODUCTION,
    OrderStatus.ON_HOLD,
    OrderStatus.READY_TO_PACK,
    OrderStatus.PACKED,
)


@dataclass
class PrinterRow:
    printer: Printer
    reasons: list[str]
    media: list[str]
    counts: dict[str, int]


@dataclass
class BatchRow:
    batch: Batch
    jobs: list[PrintJob]
    # Every job printed, the last over FINISHED_VISIBLE_MINUTES ago: collapsed so a busy day's list stays
    # short, while a batch that just finished stays in view for its reprints and checks.
    is_finished: bool = False


@dataclass
class LoadNext:
    """The media a printer needs next: its batches with work still to send, soonest promise first."""

    printer: Printer
    media: list[tuple[str, str, int]]  # (size, paper, jobs still to send)


@dataclass
class MediaGroup:
    size: str
    paper: str
    batches: list[BatchRow] = field(default_factory=list)

    @property
    def open_batches(self) -> list[BatchRow]:
        return [row for row in self.batches if not row.is_finished]

    @property
    def finished_batches(self) -> list[BatchRow]:
        return [row for row in self.batches if row.is_finished]


@dataclass
class Board:
    printers: list[PrinterRow]
    load_next: list[LoadNext]
    media_groups: list[MediaGroup]
    waiting: list[PrintJob]
    failed: list[PrintJob]
    unknown: list[PrintJob]
    suspect: list[PrintJob]  # CUPS restarted mid-job and sent it again: a person counts the prints
    late_orders: list[Order]
    held_orders: list[Order]
    generated_at: datetime.datetime
    # Scheduled sweeps that stopped succeeding (beat down, no worker on their queue, an error at every run):
    # lost hand-offs are not recovered, photos not purged, until they run again.
    sweeps_overdue: list[SweepStatus] = field(default_factory=list)
    # Cancelled orders whose customer is still owed their money: every refund the lab asked Stripe for failed
    # or was refused (a closed card, a disputed charge), and the sweep asks no more (`refund_needs_person`).
    # Before, nothing showed them: the money stayed owed with nobody told.
    refunds_need_person: list[Order] = field(default_factory=list)
    # Cancelled jobs a copy of which printed anyway in the last PRINTED_AFTER_CANCEL_HOURS (the cancel reached
    # the printer after it printed, or a late send the printer would not cancel): the prints of a refunded
    # order lie at the printer. And jobs in any other state but unknown or suspect whose late second copy (a
    # stalled worker's send, landed after a person sent the job again) the printer would not cancel: they may
    # have printed twice. Before, only the job's history and a log line said so.
    printed_after_cancel: list[PrintJob] = field(default_factory=list)
    printed_after_cancel_hours: int = PRINTED_AFTER_CANCEL_HOURS


# IPP printer-state-reasons (and our backends' own) in the words a technician uses.
_REASON_WORDS = {
    "media-empty": "out of media",
    "media-needed": "out of media",
    "media-low": "media low",
    "media-jam": "paper jam",
    "marker-supply-empty": "out of ink",
    "marker-supply-low": "ink low",
    "toner-empty": "out of toner",
    "door-open": "door open",
    "cover-open": "cover open",
    "offline": "offline",
    "paused": "paused",
    "shutdown": "shut down",
    "connecting-to-device": "connecting",
}


def printer_reasons(printer: Printer) -> list[str]:
    """Why a printer does not take work (paused, out of media, offline), most specific words first."""
    reasons = []
    if printer.is_paused_by_lab:
        reasons.append("paused by lab")
    for reason in printer.state_reasons:
        code = str(reason).removesuffix("-error").removesuffix("-warning").removesuffix("-report")
        if code not in ("none", ""):
            reasons.append(_REASON_WORDS.get(code, code.replace("-", " ").replace("_", " ")))
    if printer.state != "online" and printer.state not in reasons:
        reasons.append(printer.state)
    return list(dict.fromkeys(reasons))


def _jobs(query: Q) -> list[PrintJob]:
    return list(
        PrintJob.objects.filter(query)
        .select_related("order", "item__product", "printer")
        .order_by("order__promised_by", "pk")
    )


def board_snapshot(*, now: datetime.datetime | None = None) -> Board:
    now = now or timezone.now()
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTED_STATUSES, 0))
    active = (
        PrintJob.objects.filter(printer__isnull=False)
        .filter(
            Q(status__in=[J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTING, J.SUBMITTED])
            | Q(status=J.PRINTED, printed_at__gte=start_of_day)
        )
        .values("printer_id", "status")
        .annotate(total=Count("pk"))
    )
    for row in active:
        # A job being handed to the printer right now counts as submitted.
        status = J.SUBMITTED if row["status"] == J.SUBMITTING else row["status"]
        counts[row["printer_id"]][status] += row["total"]
    printers = [
        PrinterRow(
            printer=printer,
            reasons=printer_reasons(printer),
            media=[f"{size} {paper}" for size in printer.media_sizes for paper in printer.papers],
            counts=counts[printer.pk],
        )
        for printer in Printer.objects.order_by("name")
    ]
    groups = _media_groups(now=now)
    # One query for the three lists (a job the last one lists is neither unknown nor suspect).
    needs_person = _jobs(Q(status__in=[J.UNKNOWN, J.SUSPECT]) | printed_after_cancel_q())
    held_or_owed = _held_or_owed_a_refund()  # and one for these two
    return Board(
        printers=printers,
        load_next=_load_next(groups=groups, printers=[row.printer for row in printers]),
        media_groups=groups,
        waiting=_jobs(Q(status=J.NO_PRINTER)),
        failed=_jobs(Q(status=J.FAILED)),
        unknown=[job for job in needs_person if job.status == J.UNKNOWN],
        suspect=[job for job in needs_person if job.status == J.SUSPECT],
        late_orders=list(
            Order.objects.filter(status__in=OPEN_ORDER_STATUSES, promised_by__lt=now)
            .exclude(promise_kept_q())  # a pickup packed in time waits at the counter: not late
            .order_by("promised_by")
        ),
        held_orders=[order for order in held_or_owed if order.status == OrderStatus.ON_HOLD],
        generated_at=now,
        sweeps_overdue=sweeps_overdue(),
        refunds_need_person=[order for order in held_or_owed if getattr(order, "refund_needs_person", False)],
        printed_after_cancel=[job for job in needs_person if job.status not in (J.UNKNOWN, J.SUSPECT)],
    )


def _held_or_owed_a_refund() -> list[Order]:
    """In one query: the orders on hold, and those still `refund_pending` whose refunds were left to a person
    (lab/orders/payments.py `refund_needs_person`), marked `refund_needs_person`; oldest first."""
    left_to_person = Q(payment_status=Order.PaymentStatus.REFUND_PENDING) & Q(
        Exists(OrderEvent.objects.filter(order=OuterRef("pk"), kind="refund_needs_person"))
    )
    return list(
        Order.objects.annotate(
            refund_needs_person=ExpressionWrapper(left_to_person, output_field=BooleanField())
        )
        .filter(Q(status=OrderStatus.ON_HOLD) | left_to_person)
        .order_by("updated_at", "pk")
    )


FINISHED_VISIBLE_MINUTES = 10


def _is_finished(jobs: list[PrintJob], *, cutoff: datetime.datetime) -> bool:
    return all(job.status == J.PRINTED and job.printed_at and job.printed_at < cutoff for job in jobs)


def _media_groups(*, now: datetime.datetime) -> list[MediaGroup]:
    cutoff = now - datetime.timedelta(minutes=FINISHED_VISIBLE_MINUTES)
    jobs_by_batch: dict[int, list[PrintJob]] = defaultdict(list)
    for job in _jobs(Q(batch__isnull=False, order__status__in=FLOOR_ORDER_STATUSES) & ~Q(status=J.CANCELLED)):
        assert job.batch_id is not None
        jobs_by_batch[job.batch_id].append(job)
    groups: dict[tuple[str, str], MediaGroup] = {}
    batches = (
        Batch.objects.filter(pk__in=jobs_by_batch).select_related("printer").order_by("size", "paper", "pk")
    )
    for batch in batches:
        group = groups.setdefault((batch.size, batch.paper), MediaGroup(size=batch.size, paper=batch.paper))
        jobs = jobs_by_batch[batch.pk]
        group.batches.append(BatchRow(batch=batch, jobs=jobs, is_finished=_is_finished(jobs, cutoff=cutoff)))
    return list(groups.values())


LOAD_NEXT_BATCHES = 3


def _load_next(*, groups: list[MediaGroup], printers: list[Printer]) -> list[LoadNext]:
    """Per printer, the size and paper of its next batches (jobs not yet sent), by the earliest promise.

    Read from the batches' jobs already loaded for the board: no query of its own.
    """
    far = datetime.datetime.max.replace(tzinfo=datetime.UTC)
    waiting: dict[int, list[tuple[datetime.datetime, int, str, str, int]]] = defaultdict(list)
    for group in groups:
        for row in group.batches:
            jobs = [job for job in row.jobs if job.status in (J.QUEUED, J.RASTERIZING, J.READY)]
            if jobs:
                first_promise = min(job.order.promised_by or far for job in jobs)
                waiting[row.batch.printer_id].append(
                    (first_promise, row.batch.pk, row.batch.size, row.batch.paper, len(jobs))
                )
    return [
        LoadNext(
            printer=printer,
            media=[(size, paper, count) for _, _, size, paper, count in sorted(waiting[printer.pk])][
                :LOAD_NEXT_BATCHES
            ],
        )
        for printer in printers
        if waiting[printer.pk]
    ]
