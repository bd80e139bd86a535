"""Reads for the supervisor's view: turnaround, throughput, failures and reprints, queue depth now.

Every figure aggregates recorded events (OrderEvent, JobEvent) or current job rows; no personal data.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import TypedDict

from django.db.models import Count, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncHour

from lab.orders.intake import PRODUCTION_DAYS
from lab.orders.models import Order, OrderEvent
from lab.orders.states import OrderStatus
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus

J = JobStatus
# Stages of the queue shown now; a job being handed to the printer counts as submitted.
QUEUE_STAGES = (J.NO_PRINTER, J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTED, J.UNKNOWN, J.SUSPECT)


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
    """Paid → shipped per shipping day and method, from each order's first paid and first shipped event.

    One aggregate query gives the two times per order shipped in the range; the grouping per day is here.
    """
    per_order = _shipped_orders(filters=filters)
    groups: dict[tuple[datetime.date, str], list[tuple[float, bool]]] = defaultdict(list)
    for row in per_order:
        hours = (row["shipped_at"] - row["paid_at"]).total_seconds() / 3600
        promised = row["order__promised_by"]
        is_on_time = promised is None or row["shipped_at"] <= promised
        groups[(row["shipped_at"].date(), row["order__shipping_method"])].append((hours, is_on_time))
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
    """Jobs and copies printed per printer per hour (the `printed` transitions)."""
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
    """Transitions to failed by the job's failure code and printer."""
    return _reason_rows(
        _job_events(filters=filters).filter(to_status=J.FAILED),
        filters=filters,
        reason="job__failure_code",
        printer="job__printer",
        default_reason="unknown_reason",
    )


def reprints(*, filters: Filters) -> list[ReasonRow]:
    """Reprints requested by reason and by the printer of the print they replace (the paper wasted there)."""
    return _reason_rows(
        _job_events(filters=filters).filter(kind="reprint_requested"),
        filters=filters,
        reason="job__reprint_reason",
        printer="job__reprint_of__printer",
        default_reason="other",
    )


def _reason_rows(
    events: QuerySet[JobEvent], *, filters: Filters, reason: str, printer: str, default_reason: str
) -> list[ReasonRow]:
    """Jobs and copies of `events` per reason and printer (`printer` is the lookup path to the Printer)."""
    if filters.printer_id is not None:
        events = events.filter(**{f"{printer}_id": filters.printer_id})
    rows = (
        events.values(reason, f"{printer}_id", f"{printer}__name")
        .annotate(jobs=Count("pk"), copies=Sum("job__copies"))
        .order_by("-jobs", reason, f"{printer}__name")
    )
    return [
        ReasonRow(
            reason=row[reason] or default_reason,
            printer_id=row[f"{printer}_id"],
            printer=row[f"{printer}__name"] or "no printer",
            jobs=row["jobs"],
            copies=row["copies"] or 0,
        )
        for row in rows
    ]


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
        events = events.filter(to_status=J.FAILED, job__failure_code=key.get("reason", ""))
        job_ids = (
            events.filter(job__printer_id=printer) if printer else events.filter(job__printer=None)
        ).values("job_id")
    elif table == "reprints":
        events = events.filter(kind="reprint_requested", job__reprint_reason=key.get("reason", ""))
        if printer:
            events = events.filter(job__reprint_of__printer_id=printer)
        job_ids = events.values("job_id")
    elif table == "printer_time":
        job_ids = (events.filter(job__printer_id=printer) if printer else events.none()).values("job_id")
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
        if row["shipped_at"].date() == day and row["order__shipping_method"] == method
    ]
    return list(Order.objects.filter(pk__in=order_ids).order_by("promised_by"))


class ShippedOrderRow(TypedDict):
    order_id: int
    order__shipping_method: str
    order__promised_by: datetime.datetime | None
    paid_at: datetime.datetime  # never null: the query keeps only orders with a paid event
    shipped_at: datetime.datetime


def _shipped_orders(*, filters: Filters) -> QuerySet[OrderEvent, ShippedOrderRow]:
    """Per order shipped in the range: its first paid and first shipped time (one aggregate query).

    Only orders with a shipped event in the range are grouped (an order's first shipment cannot be in the
    range unless one of its shipped events is), so the query reads the range, not every order ever paid.
    """
    shipped_in_range = OrderEvent.objects.filter(
        kind="status_changed",
        to_status=OrderStatus.SHIPPED,
        created_at__gte=filters.start,
        created_at__lt=filters.end,
    ).values("order_id")
    rows = (
        OrderEvent.objects.filter(
            kind="status_changed",
            to_status__in=[OrderStatus.PAID, OrderStatus.SHIPPED],
            order_id__in=shipped_in_range,
        )
        .values("order_id", "order__shipping_method", "order__promised_by")
        .annotate(
            paid_at=Min("created_at", filter=Q(to_status=OrderStatus.PAID)),
            shipped_at=Min("created_at", filter=Q(to_status=OrderStatus.SHIPPED)),
        )
        .filter(shipped_at__gte=filters.start, shipped_at__lt=filters.end, paid_at__isnull=False)
        .order_by("order_id")
    )
    if filters.printer_id is not None:
        rows = rows.filter(
            order_id__in=PrintJob.objects.filter(printer_id=filters.printer_id).values("order_id")
        )
    return rows
