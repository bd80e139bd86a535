"""Reads for the production board: printers with their counts, batches by media, exceptions, late orders.

Only order refs, products and counts leave here: the board never needs a customer's photo or address.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TypeVar, cast

from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber
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


# The most lines one list of the board (and the supervisor's lists behind a figure) shows: the board is
# polled every few seconds, and a list of thousands took seconds to render and megabytes to send. Each list
# says how many it leaves out.
BOARD_LIST_LIMIT = 200


@dataclass
class BatchRow:
    batch: Batch
    jobs: list[PrintJob]  # at most BOARD_LIST_LIMIT, soonest promise first; none for a finished batch
    total: int = 0  # all its jobs (not cancelled)
    # Its jobs not yet sent, of orders in production, with their earliest promise; and of orders on hold.
    to_send: int = 0
    first_promise: datetime.datetime | None = None
    held: int = 0

    @property
    def more(self) -> int:
        """Its jobs left out of `jobs` (a finished batch shows only its count)."""
        return 0 if self.is_finished else self.total - len(self.jobs)

    # Every job printed, the last over FINISHED_VISIBLE_MINUTES ago: collapsed so a busy day's list stays
    # short, while a batch that just finished stays in view for its reprints and checks.
    is_finished: bool = False


@dataclass
class LoadNext:
    """The media a printer needs next: its batches with work still to send, soonest promise first."""

    printer: Printer
    media: list[tuple[str, str, int]]  # (size, paper, jobs still to send)
    # The same for orders on hold: never sent (submission refuses them) until the customer answers, so not
    # what to load, however soon promised.
    held: list[tuple[str, str, int]] = field(default_factory=list)


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
    # The full lengths of the lists capped at BOARD_LIST_LIMIT.
    waiting_total: int = 0
    failed_total: int = 0
    late_orders_total: int = 0

    @property
    def waiting_more(self) -> int:
        return self.waiting_total - len(self.waiting)

    @property
    def failed_more(self) -> int:
        return self.failed_total - len(self.failed)

    @property
    def late_orders_more(self) -> int:
        return self.late_orders_total - len(self.late_orders)


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


_Row = TypeVar("_Row", PrintJob, Order)


def first_rows_and_count(rows: QuerySet[_Row], *, limit: int) -> tuple[list[_Row], int]:
    """The first `limit` rows and the count of all, in one query (the count is a window over all of them)."""
    counted = cast("QuerySet[_Row]", rows.annotate(full_count=Window(Count("pk"))))
    shown = list(counted[:limit])
    return shown, getattr(shown[0], "full_count", 0) if shown else 0


# The board's capped lists, each defined once: the board shows the first BOARD_LIST_LIMIT rows, and its
# "and N more" links to the whole list behind it (lab/staff/views/supervisor.py, `?table=waiting`, `failed`,
# `late_orders`), paged in the same order: the list's first page is the board's rows. Soonest promise first
# (an order without one last, on SQLite too, which sorts NULL first), then by id: the pages' cursor is that
# promise and id.
JOB_PROMISE_FIELD = "order__promised_by"
ORDER_PROMISE_FIELD = "promised_by"


def _promise_ordered_jobs(query: Q) -> QuerySet[PrintJob]:
    return (
        PrintJob.objects.filter(query)
        .select_related("order", "item__product", "printer")
        .order_by(F(JOB_PROMISE_FIELD).asc(nulls_last=True), "pk")
    )


def waiting_jobs() -> QuerySet[PrintJob]:
    """Jobs no printer can take (`no_printer`): the board's "Waiting for a capable printer"."""
    return _promise_ordered_jobs(Q(status=J.NO_PRINTER))


def failed_jobs() -> QuerySet[PrintJob]:
    """The board's "Failed"."""
    return _promise_ordered_jobs(Q(status=J.FAILED))


def late_orders(*, now: datetime.datetime) -> QuerySet[Order]:
    """Open orders past their promise: the board's "Late orders"."""
    return (
        Order.objects.filter(status__in=OPEN_ORDER_STATUSES, promised_by__lt=now)
        .exclude(promise_kept_q())  # a pickup packed in time waits at the counter: not late
        .order_by(F(ORDER_PROMISE_FIELD).asc(nulls_last=True), "pk")
    )


def batch_jobs(*, batch_id: int) -> QuerySet[PrintJob]:
    """Every job of one batch, cancelled ones included, in the order they were made: the list a finished
    batch's count on the board links to."""
    return PrintJob.objects.filter(batch_id=batch_id).select_related("order", "printer").order_by("pk")


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
    waiting, waiting_total = first_rows_and_count(waiting_jobs(), limit=BOARD_LIST_LIMIT)
    failed, failed_total = first_rows_and_count(failed_jobs(), limit=BOARD_LIST_LIMIT)
    late, late_orders_total = first_rows_and_count(late_orders(now=now), limit=BOARD_LIST_LIMIT)
    return Board(
        printers=printers,
        load_next=_load_next(groups=groups, printers=[row.printer for row in printers]),
        media_groups=groups,
        waiting=waiting,
        failed=failed,
        unknown=[job for job in needs_person if job.status == J.UNKNOWN],
        suspect=[job for job in needs_person if job.status == J.SUSPECT],
        late_orders=late,
        held_orders=[order for order in held_or_owed if order.status == OrderStatus.ON_HOLD],
        generated_at=now,
        sweeps_overdue=sweeps_overdue(),
        refunds_need_person=[order for order in held_or_owed if getattr(order, "refund_needs_person", False)],
        printed_after_cancel=[job for job in needs_person if job.status not in (J.UNKNOWN, J.SUSPECT)],
        waiting_total=waiting_total,
        failed_total=failed_total,
        late_orders_total=late_orders_total,
    )


def _held_or_owed_a_refund() -> list[Order]:
    """In one query: the orders on hold, and those still `refund_pending` whose refunds were left to a person
    (lab/orders/payment_refunds.py `refund_needs_person`), marked `refund_needs_person`; oldest first."""
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
_TO_SEND = (J.QUEUED, J.RASTERIZING, J.READY)
BATCH_ORDER = (F("order__promised_by").asc(), F("pk").asc())


def _batch_window(expression: Count | Min) -> Window:
    return Window(expression, partition_by=[F("batch_id")])


def _media_groups(*, now: datetime.datetime) -> list[MediaGroup]:
    """The floor's batches by media, each with at most BOARD_LIST_LIMIT of its jobs (none once finished) and
    its counts, in one query: window counts over each batch's jobs, then the first rows of each batch."""
    cutoff = now - datetime.timedelta(minutes=FINISHED_VISIBLE_MINUTES)
    to_send = Q(status__in=_TO_SEND)
    is_held = Q(order__status=OrderStatus.ON_HOLD)
    jobs = (
        PrintJob.objects.filter(batch__isnull=False, order__status__in=FLOOR_ORDER_STATUSES)
        .exclude(status=J.CANCELLED)
        .select_related("order", "item__product", "printer")
        .annotate(
            batch_total=_batch_window(Count("pk")),
            batch_finished=_batch_window(Count("pk", filter=Q(status=J.PRINTED, printed_at__lt=cutoff))),
            batch_to_send=_batch_window(Count("pk", filter=to_send & ~is_held)),
            batch_held=_batch_window(Count("pk", filter=to_send & is_held)),
            batch_first_promise=_batch_window(Min("order__promised_by", filter=to_send & ~is_held)),
            place=Window(RowNumber(), partition_by=[F("batch_id")], order_by=[*BATCH_ORDER]),
        )
        # A finished batch needs only its counts: one row.
        .filter(
            place__lte=Case(
                When(batch_finished=F("batch_total"), then=Value(1)), default=Value(BOARD_LIST_LIMIT)
            )
        )
        .order_by("order__promised_by", "pk")
    )
    first_by_batch: dict[int, PrintJob] = {}  # its first row carries the batch's counts
    shown_by_batch: dict[int, list[PrintJob]] = defaultdict(list)
    for job in jobs:
        assert job.batch_id is not None
        first_by_batch.setdefault(job.batch_id, job)
        shown_by_batch[job.batch_id].append(job)
    groups: dict[tuple[str, str], MediaGroup] = {}
    batches = (
        Batch.objects.filter(pk__in=first_by_batch).select_related("printer").order_by("size", "paper", "pk")
    )
    for batch in batches:
        group = groups.setdefault((batch.size, batch.paper), MediaGroup(size=batch.size, paper=batch.paper))
        first = first_by_batch[batch.pk]
        total = getattr(first, "batch_total", 0)
        is_finished = getattr(first, "batch_finished", 0) == total
        group.batches.append(
            BatchRow(
                batch=batch,
                jobs=[] if is_finished else shown_by_batch[batch.pk],
                total=total,
                is_finished=is_finished,
                to_send=getattr(first, "batch_to_send", 0),
                first_promise=getattr(first, "batch_first_promise", None),
                held=getattr(first, "batch_held", 0),
            )
        )
    return list(groups.values())


LOAD_NEXT_BATCHES = 3


def _load_next(*, groups: list[MediaGroup], printers: list[Printer]) -> list[LoadNext]:
    """Per printer, the size and paper of its next batches (jobs not yet sent), by the earliest promise; and
    apart, those of its batches' unsent jobs whose orders are on hold.

    Read from the batches' counts already loaded for the board: no query of its own.
    """
    far = datetime.datetime.max.replace(tzinfo=datetime.UTC)
    waiting: dict[int, list[tuple[datetime.datetime, int, str, str, int]]] = defaultdict(list)
    held: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for group in groups:
        for row in group.batches:
            batch = row.batch
            if row.to_send:
                waiting[batch.printer_id].append(
                    (row.first_promise or far, batch.pk, batch.size, batch.paper, row.to_send)
                )
            if row.held:
                held[batch.printer_id].append((batch.size, batch.paper, row.held))
    return [
        LoadNext(
            printer=printer,
            media=[(size, paper, count) for _, _, size, paper, count in sorted(waiting[printer.pk])][
                :LOAD_NEXT_BATCHES
            ],
            held=held[printer.pk][:LOAD_NEXT_BATCHES],
        )
        for printer in printers
        if waiting[printer.pk] or held[printer.pk]
    ]
