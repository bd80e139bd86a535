"""Reads for the supervisor's view: turnaround, throughput, failures and reprints, queue depth now.

Every figure aggregates recorded events (OrderEvent, JobEvent) or current job rows; no personal data.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import TypedDict

from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    Expression,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import TruncHour

from lab.orders.intake import PRODUCTION_DAYS
from lab.orders.models import Order, OrderEvent
from lab.orders.states import OrderStatus
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus

J = JobStatus
# Stages of the queue shown now; a job being handed to the printer counts as submitted.
QUEUE_STAGES = (J.NO_PRINTER, J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTED, J.UNKNOWN, J.SUSPECT)
UNKNOWN_FAILURE = "unknown_reason"  # the failures table's reason for a failure recorded without a code


# Where and why, as at the time of each event. A job's status change records the printer the job is at after
# it and, on a move to failed, the failure code (jobs.job_move, since migration production/0018): the job's
# own columns change later (a reroute moves the job and clears its code), and a failure read through them was
# counted at the new printer as an unknown reason. An event that names no printer was written before that, or
# by code that records neither: it falls back to the job's columns now, as every figure read them before
# (right unless the job moved since); a job waiting for a printer (no_printer) was at none.
def event_printer() -> Expression:
    """The printer a job event happened at (the id, or NULL)."""
    return Case(
        When(printer__isnull=False, then=F("printer_id")),
        When(to_status=J.NO_PRINTER, then=Value(None)),
        default=F("job__printer_id"),
        output_field=BigIntegerField(),
    )


def event_failure_code() -> Expression:
    """The code a move to failed failed with."""
    return Case(When(printer__isnull=True, then=F("job__failure_code")), default=F("failure_code"))


@dataclass(frozen=True)
class Filters:
    start: datetime.datetime  # inclusive
    end: datetime.datetime  # exclusive
    printer_id: int | None


@dataclass(frozen=True)
class TurnaroundRow:
    day: datetime.date
    shipping_method: str
    orders: int
    on_time: int
    mean_hours: float
    max_hours: float
    promised_hours: int


@dataclass(frozen=True)
class ThroughputRow:
    printer_id: int
    printer: str
    hour: datetime.datetime
    jobs: int
    copies: int


@dataclass(frozen=True)
class ReasonRow:
    reason: str
    printer_id: int | None
    printer: str
    jobs: int
    copies: int


@dataclass(frozen=True)
class QueueRow:
    stage: str
    jobs: int
    oldest: datetime.datetime | None


def turnaround(*, filters: Filters) -> list[TurnaroundRow]:
    """Paid → done per day done and method, from each order's first paid event and when it was done (shipped;
    a pickup, once collected: its last packing, when it was ready to collect: `ShippedOrderRow.done_at`).

    One aggregate query gives the times per order done in the range; the grouping per day is here.
    """
    groups: dict[tuple[datetime.date, str], list[tuple[float, bool]]] = defaultdict(list)
    for row in _shipped_orders(filters=filters):
        done = row["done_at"]
        hours = (done - row["paid_at"]).total_seconds() / 3600
        promised = row["order__promised_by"]
        is_on_time = promised is None or done <= promised
        groups[(done.date(), row["order__shipping_method"])].append((hours, is_on_time))
    return [
        TurnaroundRow(
            day=day,
            shipping_method=method,
            orders=len(values),
            on_time=sum(1 for _, is_on_time in values if is_on_time),
            mean_hours=round(sum(hours for hours, _ in values) / len(values), 1),
            max_hours=round(max(hours for hours, _ in values), 1),
            promised_hours=PRODUCTION_DAYS[Order.ShippingMethod(method)] * 24,
        )
        for (day, method), values in sorted(groups.items())
    ]


def _job_events(*, filters: Filters) -> QuerySet[JobEvent]:
    events = JobEvent.objects.filter(
        job__isnull=False, created_at__gte=filters.start, created_at__lt=filters.end
    )
    return events


def throughput(*, filters: Filters) -> list[ThroughputRow]:
    """Jobs and copies printed per printer per hour (the `printed` transitions). A printed job never moves
    again, so its printer now is the one that printed it."""
    events = _job_events(filters=filters).filter(to_status=J.PRINTED, job__printer__isnull=False)
    if filters.printer_id is not None:
        events = events.filter(job__printer_id=filters.printer_id)
    rows = (
        events.annotate(hour=TruncHour("created_at"))
        .values("job__printer_id", "job__printer__name", "hour")
        .annotate(jobs=Count("job_id", distinct=True), copies=Sum("job__copies"))
        .order_by("hour", "job__printer__name")
    )
    return [
        ThroughputRow(
            printer_id=row["job__printer_id"],
            printer=row["job__printer__name"],
            hour=row["hour"],
            jobs=row["jobs"],
            copies=row["copies"] or 0,
        )
        for row in rows
    ]


def failures(*, filters: Filters) -> list[ReasonRow]:
    """Transitions to failed by the code and the printer the job failed with and at."""
    return _reason_rows(
        _job_events(filters=filters).filter(to_status=J.FAILED),
        filters=filters,
        reason=event_failure_code(),
        printer=event_printer(),
        default_reason=UNKNOWN_FAILURE,
    )


def reprints(*, filters: Filters) -> list[ReasonRow]:
    """Reprints requested by reason and by the printer of the print they replace (the paper wasted there)."""
    return _reason_rows(
        _job_events(filters=filters).filter(kind="reprint_requested"),
        filters=filters,
        # The print replaced was printed, and a printed job never moves again.
        reason=F("job__reprint_reason"),
        printer=F("job__reprint_of__printer_id"),
        default_reason="other",
    )


def _reason_rows(
    events: QuerySet[JobEvent],
    *,
    filters: Filters,
    reason: Expression | F,
    printer: Expression | F,
    default_reason: str,
) -> list[ReasonRow]:
    """Jobs and copies of `events` per reason and printer (expressions: the reason, the printer's id); the
    few printers' names are read once, after the grouping."""
    events = events.annotate(row_reason=reason, row_printer=printer)
    if filters.printer_id is not None:
        events = events.filter(row_printer=filters.printer_id)
    # A job counts once per row however often it failed (or was reprinted) there, as the jobs behind the row
    # list it once: the database sends each (reason, printer, job) once, a few thousand rows at most.
    copies_by_job: dict[tuple[str, int | None], dict[int, int]] = defaultdict(dict)
    for row_reason, row_printer, job_id, copies in (
        events.values_list("row_reason", "row_printer", "job_id", "job__copies").order_by().distinct()
    ):
        copies_by_job[(row_reason or default_reason, row_printer)][job_id] = copies or 0
    printer_ids = {printer_id for _, printer_id in copies_by_job if printer_id is not None}
    names = dict(Printer.objects.filter(pk__in=printer_ids).values_list("pk", "name"))
    result = [
        ReasonRow(
            reason=row_reason,
            printer_id=row_printer,
            printer="no printer" if row_printer is None else names.get(row_printer, "no printer"),
            jobs=len(jobs),
            copies=sum(jobs.values()),
        )
        for (row_reason, row_printer), jobs in copies_by_job.items()
    ]
    # Most jobs first; then by reason and printer name, the jobs with no printer last.
    return sorted(result, key=lambda row: (-row.jobs, row.reason, row.printer_id is None, row.printer))


def queue_depth(*, printer_id: int | None) -> list[QueueRow]:
    """Jobs per stage now, with the oldest last change (how long the front of the stage has waited)."""
    jobs = PrintJob.objects.filter(status__in=[*QUEUE_STAGES, J.SUBMITTING])
    if printer_id is not None:
        jobs = jobs.filter(printer_id=printer_id)
    counts: dict[str, int] = dict.fromkeys(QUEUE_STAGES, 0)
    oldest: dict[str, datetime.datetime | None] = dict.fromkeys(QUEUE_STAGES, None)
    for row in jobs.values("status").annotate(jobs=Count("pk"), oldest=Min("updated_at")):
        stage = J.SUBMITTED if row["status"] == J.SUBMITTING else row["status"]
        counts[stage] += row["jobs"]
        current = oldest[stage]
        oldest[stage] = row["oldest"] if current is None else min(current, row["oldest"])
    return [QueueRow(stage=str(stage), jobs=counts[stage], oldest=oldest[stage]) for stage in QUEUE_STAGES]


def jobs_behind(*, table: str, filters: Filters, key: dict[str, str]) -> QuerySet[PrintJob]:
    """The jobs behind one row of a table (throughput, failures, reprints, queue, printer_time)."""
    events = _job_events(filters=filters)
    printer = int(key["printer"]) if key.get("printer", "").isdigit() else None
    if table == "throughput":
        hour = datetime.datetime.fromisoformat(key["hour"])
        events = events.filter(
            to_status=J.PRINTED, created_at__gte=hour, created_at__lt=hour + timedelta(hours=1)
        )
        job_ids = (events.filter(job__printer_id=printer) if printer else events.none()).values("job_id")
    elif table == "failures":
        # The row's reason as shown: a failure without a code is shown as UNKNOWN_FAILURE.
        reason = key.get("reason", "")
        reasons = {reason, ""} if reason == UNKNOWN_FAILURE else {reason}
        events = events.filter(to_status=J.FAILED).annotate(
            row_reason=event_failure_code(), row_printer=event_printer()
        )
        events = events.filter(row_reason__in=reasons)
        job_ids = (
            events.filter(row_printer=printer) if printer else events.filter(row_printer__isnull=True)
        ).values("job_id")
    elif table == "reprints":
        events = events.filter(kind="reprint_requested", job__reprint_reason=key.get("reason", ""))
        if printer:
            events = events.filter(job__reprint_of__printer_id=printer)
        job_ids = events.values("job_id")
    elif table == "printer_time":
        at_printer = events.annotate(row_printer=event_printer()).filter(row_printer=printer)
        job_ids = (at_printer if printer else events.none()).values("job_id")
    elif table == "queue":
        stage = key.get("stage", "")
        statuses = [J.SUBMITTED, J.SUBMITTING] if stage == J.SUBMITTED else [stage]
        jobs = PrintJob.objects.filter(status__in=statuses)
        if filters.printer_id is not None:
            jobs = jobs.filter(printer_id=filters.printer_id)
        return jobs.select_related("order", "printer").order_by("updated_at", "pk")
    else:
        return PrintJob.objects.none()
    return PrintJob.objects.filter(pk__in=job_ids).select_related("order", "printer").order_by("pk")


def orders_behind_turnaround(*, filters: Filters, day: datetime.date, method: str) -> list[Order]:
    order_ids = [
        row["order_id"]
        for row in _shipped_orders(filters=filters)
        if row["done_at"].date() == day and row["order__shipping_method"] == method
    ]
    return list(Order.objects.filter(pk__in=order_ids).order_by("promised_by"))


class ShippedOrderRow(TypedDict):
    order_id: int
    order__shipping_method: str
    order__promised_by: datetime.datetime | None
    paid_at: datetime.datetime  # never null: the query keeps only orders with a paid event
    handed_over_at: datetime.datetime  # to the carrier, or to the customer at the counter (`shipped`)
    packed_at: datetime.datetime | None  # the last packing
    done_at: datetime.datetime  # the time the order is counted at, in the range: `_done_at`


def _done_at() -> Expression:
    """When the order kept its promise: shipped, or for a pickup its last packing (from then it waits at the
    counter, on the customer's time: lab.orders.selectors.promise_kept_q). A pickup unpacked (a wrong print
    reprinted) was not ready until packed again: its first packing would count it on time. Only the first
    hand-over ends a packing (a shipped order is never packed again: lab.orders.states), so the last packing
    is the last one before it. A pickup is counted once it was collected, as every order once shipped."""
    return Case(
        When(
            Q(order__shipping_method=Order.ShippingMethod.PICKUP, packed_at__isnull=False),
            then=F("packed_at"),
        ),
        default=F("handed_over_at"),
    )


def _shipped_orders(*, filters: Filters) -> QuerySet[OrderEvent, ShippedOrderRow]:
    """Per order done in the range (`_done_at`): its first paid, last packed and first shipped time (one
    aggregate query), so every row's day is in the range and a day's orders do not depend on the range.

    Only orders with a shipped or packed event in the range are grouped (an order cannot be done in the range
    unless one of them is), so the query reads the range, not every order ever paid.
    """
    in_range = OrderEvent.objects.filter(
        kind="status_changed", created_at__gte=filters.start, created_at__lt=filters.end
    )
    rows = (
        OrderEvent.objects.filter(
            Q(order_id__in=in_range.filter(to_status=OrderStatus.SHIPPED).values("order_id"))
            | Q(order_id__in=in_range.filter(to_status=OrderStatus.PACKED).values("order_id")),
            kind="status_changed",
            to_status__in=[OrderStatus.PAID, OrderStatus.PACKED, OrderStatus.SHIPPED],
        )
        .values("order_id", "order__shipping_method", "order__promised_by")
        .annotate(
            paid_at=Min("created_at", filter=Q(to_status=OrderStatus.PAID)),
            handed_over_at=Min("created_at", filter=Q(to_status=OrderStatus.SHIPPED)),
            packed_at=Max("created_at", filter=Q(to_status=OrderStatus.PACKED)),
        )
        .annotate(done_at=_done_at())
        .filter(
            handed_over_at__isnull=False,
            paid_at__isnull=False,
            done_at__gte=filters.start,
            done_at__lt=filters.end,
        )
        .order_by("order_id")
    )
    if filters.printer_id is not None:
        rows = rows.filter(
            order_id__in=PrintJob.objects.filter(printer_id=filters.printer_id).values("order_id")
        )
    return rows
