"""Reads for the supervisor's view rebuilt from event timelines: time in each printer state and utilisation,
queue depth and age per stage over the last 24 hours, the reprint rate per day.

Each figure is a few aggregate queries or one ordered pass over the range's events; never a query per job.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count, F, FloatField, Func, OuterRef, Q, Subquery, Window
from django.db.models.functions import Lag, Lead, TruncDate

from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus, PrinterState
from lab.staff.supervisor import Filters, event_printer

J = JobStatus
PRINTER_STATES = tuple(str(state) for state in PrinterState)  # online, paused, offline, error
# Tracking records a printer_state event only when the state changes, and a printer starts online (the model's
# default): a printer with no event before the range has been online since it was added.
STATE_BEFORE_ANY_EVENT = str(PrinterState.ONLINE)
# A pause from the board (lab.production.actions.printer_pause/printer_resume) is its own event, not a state.
LAB_PAUSE_KINDS = ("printer_paused", "printer_resumed")
# The stages of the queue's history and the job statuses each one groups.
QUEUE_HISTORY_STAGES: dict[str, tuple[str, ...]] = {
    "waiting": (J.NO_PRINTER, J.QUEUED),
    "rasterizing": (J.RASTERIZING,),
    "ready": (J.READY,),
    "submitted": (J.SUBMITTING, J.SUBMITTED),
    "unknown": (J.UNKNOWN, J.SUSPECT),  # both wait for a person
}
STAGE_OF = {status: stage for stage, statuses in QUEUE_HISTORY_STAGES.items() for status in statuses}
QUEUE_HISTORY_HOURS = 24

# An interval in seconds since the epoch: the printing intervals are tens of thousands over a month, and
# psycopg parses each timestamp from text (~5 µs each, most of the figure's time at 1 M jobs); PostgreSQL
# sends them as numbers instead.
Span = tuple[float, float]


class EpochSeconds(Func):
    """A timestamp as seconds since the epoch (a float), computed by the database."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)::float8"
    output_field = FloatField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        # julianday() reads Django's stored text timestamps (UTC) with their fractions of a second.
        template = "((julianday(%(expressions)s) - 2440587.5) * 86400.0)"
        return self.as_sql(compiler, connection, template=template, **extra_context)


@dataclass(frozen=True)
class PrinterTimeRow:
    printer_id: int
    printer: str
    seconds: dict[str, float]  # per printer state, over the range up to now
    printing_seconds: float  # online with at least one job submitted to it
    utilisation: float | None  # printing ÷ online; None when never online


@dataclass(frozen=True)
class QueueSample:
    hour: datetime.datetime
    jobs: dict[str, int]  # per stage
    oldest_seconds: dict[str, float | None]  # per stage: the longest any job there had been in it


@dataclass(frozen=True)
class ReprintRateRow:
    day: datetime.date
    printed: int
    reprints: int
    rate: float | None  # reprints ÷ printed; None on a day nothing printed


def _range_end(filters: Filters, now: datetime.datetime) -> datetime.datetime:
    return max(filters.start, min(filters.end, now))


def printer_time(*, filters: Filters, now: datetime.datetime) -> list[PrinterTimeRow]:
    """Seconds in each printer state per printer (from `printer_state` events and the lab's pauses), and
    utilisation: time a job was at the printer (submitted until printed, failed or any other move) within its
    online time. A printer counts from when it was added (`created_at`), if that is within the range; one
    added at or after the range's end is not listed."""
    end = _range_end(filters, now)
    printers = Printer.objects.filter(created_at__lt=end).order_by("name")
    if filters.printer_id is not None:
        printers = printers.filter(pk=filters.printer_id)
    before_range = JobEvent.objects.filter(printer_id=OuterRef("pk"), created_at__lt=filters.start).order_by(
        "-created_at", "-pk"
    )
    printers = printers.annotate(
        state_before=Subquery(before_range.filter(kind="printer_state").values("to_status")[:1]),
        lab_pause_before=Subquery(before_range.filter(kind__in=LAB_PAUSE_KINDS).values("kind")[:1]),
    )
    listed = list(printers.values("pk", "name", "created_at", "state_before", "lab_pause_before"))
    changes: dict[int, list[tuple[datetime.datetime, str, str]]] = defaultdict(list)
    for printer_id, at, kind, to_status in (
        JobEvent.objects.filter(
            kind__in=["printer_state", *LAB_PAUSE_KINDS],
            printer_id__in=[printer["pk"] for printer in listed],
            created_at__gte=filters.start,
            created_at__lt=end,
        )
        .order_by("printer_id", "created_at", "pk")
        .values_list("printer_id", "created_at", "kind", "to_status")
    ):
        changes[printer_id].append((at, kind, to_status))
    printing = _printing_intervals(
        filters=filters, end=end, printer_ids=[printer["pk"] for printer in listed]
    )
    rows = []
    for printer in listed:
        start = max(filters.start, printer["created_at"])
        seconds, online = _state_seconds(
            first_state=printer["state_before"] or STATE_BEFORE_ANY_EVENT,
            is_paused_by_lab=printer["lab_pause_before"] == "printer_paused",
            changes=changes[printer["pk"]],
            start=start,
            end=end,
        )
        clipped = _clip(printing[printer["pk"]], start=start.timestamp(), end=end.timestamp())
        printing_seconds = _overlap_seconds(_union(clipped), online)
        rows.append(
            PrinterTimeRow(
                printer_id=printer["pk"],
                printer=printer["name"],
                seconds=seconds,
                printing_seconds=printing_seconds,
                utilisation=printing_seconds / seconds["online"] if seconds["online"] else None,
            )
        )
    return rows


def _state_seconds(
    *,
    first_state: str,
    is_paused_by_lab: bool,
    changes: list[tuple[datetime.datetime, str, str]],
    start: datetime.datetime,
    end: datetime.datetime,
) -> tuple[dict[str, float], list[Span]]:
    """Seconds per state between start and end, and the online intervals (epoch seconds). `changes` are
    (time, kind, to_status) of state events and the lab's pauses; one before `start` (the printer was added
    later) only sets the state. Paused by the lab while otherwise online is paused: it takes no job; offline
    and error stay what they are, the lab's pause or not."""
    seconds = dict.fromkeys(PRINTER_STATES, 0.0)
    online: list[Span] = []
    state, since = first_state, start
    for at, kind, to_state in [*changes, (end, "", "")]:
        if at > since:
            shown = PrinterState.PAUSED if is_paused_by_lab and state == PrinterState.ONLINE else state
            seconds[shown] = seconds.get(shown, 0.0) + (at - since).total_seconds()
            if shown == PrinterState.ONLINE:
                online.append((since.timestamp(), at.timestamp()))
            since = at
        if kind == "printer_state":
            state = to_state
        elif kind in LAB_PAUSE_KINDS:
            is_paused_by_lab = kind == "printer_paused"
    return seconds, online


def _clip(intervals: Iterable[Span], *, start: float, end: float) -> list[Span]:
    return [(max(first, start), min(last, end)) for first, last in intervals if last > start and first < end]


def _printing_intervals(
    *, filters: Filters, end: datetime.datetime, printer_ids: list[int]
) -> dict[int, list[Span]]:
    """Per printer, each job's submitted → next move intervals within the range, in epoch seconds.

    One query: the database pairs each event with the job's next and previous one (window functions) and
    returns only the events that open an interval (to submitted) or close one opened before the range (the
    job's first event in the range leaves submitted); a job still at the printer closes at the range's end.
    An interval is the printer's the job was at then (`event_printer`): a job never changes printer while
    submitted, and may have been rerouted since.
    """
    in_job_order = [F("created_at").asc(), F("pk").asc()]
    at_epoch = EpochSeconds(F("created_at"))
    rows = (
        JobEvent.objects.filter(job__isnull=False, created_at__gte=filters.start, created_at__lt=end)
        .annotate(at_printer=event_printer())
        .filter(at_printer__in=printer_ids)
        .filter(
            Q(to_status=J.SUBMITTED) | Q(from_status=J.SUBMITTED) | Q(to_status__in=[J.PRINTED, J.FAILED])
        )
        .annotate(
            at=at_epoch,
            next_at=Window(Lead(at_epoch), partition_by=[F("job_id")], order_by=in_job_order),
            previous_to=Window(Lag("to_status"), partition_by=[F("job_id")], order_by=in_job_order),
        )
        .filter(
            Q(to_status=J.SUBMITTED) & (Q(previous_to__isnull=True) | ~Q(previous_to=J.SUBMITTED))
            | Q(previous_to__isnull=True, from_status=J.SUBMITTED)
        )
        .values_list("at_printer", "at", "next_at", "to_status")
    )
    start_at, end_at = filters.start.timestamp(), end.timestamp()
    intervals: dict[int, list[Span]] = defaultdict(list)
    for printer_id, at, next_at, to_status in rows:
        if to_status == J.SUBMITTED:
            intervals[printer_id].append((at, end_at if next_at is None else next_at))
        else:  # submitted before the range began
            intervals[printer_id].append((start_at, at))
    return intervals


def _union(intervals: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap_seconds(first: list[Span], second: list[Span]) -> float:
    """Seconds covered by both lists of sorted, disjoint intervals."""
    total, i, j = 0.0, 0, 0
    while i < len(first) and j < len(second):
        start, end = max(first[i][0], second[j][0]), min(first[i][1], second[j][1])
        total += max(end - start, 0.0)
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return total


def queue_history(*, now: datetime.datetime, printer_id: int | None) -> list[QueueSample]:
    """Jobs per stage and the oldest job's age in its stage at each whole hour of the last 24 hours.

    Each job's stage intervals come from its status events: the candidates are the jobs with an event in the
    window and the jobs in a queue stage now (some waited through the whole window); their events are read
    in one ordered query and walked once. With a printer, a job counts while it was at that printer
    (`event_printer`): one with an event in the window may have been there before a reroute in it.
    """
    last_hour = now.replace(minute=0, second=0, microsecond=0)
    hours = [
        last_hour - timedelta(hours=QUEUE_HISTORY_HOURS - 1 - index) for index in range(QUEUE_HISTORY_HOURS)
    ]
    window = JobEvent.objects.filter(job__isnull=False, created_at__gte=hours[0], created_at__lte=now)
    waiting_now = PrintJob.objects.filter(status__in=list(STAGE_OF))
    if printer_id is not None:
        waiting_now = waiting_now.filter(printer_id=printer_id)
    job_ids = set(window.values_list("job_id", flat=True)) | set(waiting_now.values_list("pk", flat=True))
    jobs = {stage: [0] * len(hours) for stage in QUEUE_HISTORY_STAGES}
    oldest: dict[str, list[float | None]] = {stage: [None] * len(hours) for stage in QUEUE_HISTORY_STAGES}
    events = (
        JobEvent.objects.filter(job_id__in=job_ids, created_at__lte=now)
        .exclude(to_status="")
        .order_by("job_id", "created_at", "pk")
    )
    rows: Iterable[tuple[int, datetime.datetime, str, int | None]]
    if printer_id is None:  # no printer to tell apart: no join for it
        rows = ((*row, None) for row in events.values_list("job_id", "created_at", "to_status"))
    else:
        rows = events.annotate(at_printer=event_printer()).values_list(
            "job_id", "created_at", "to_status", "at_printer"
        )
    for stage, entered, since, left, at_printer in _stage_runs(rows, now=now):
        if at_printer != printer_id:
            continue
        for index, hour in enumerate(hours):
            if since <= hour < left:
                jobs[stage][index] += 1
                age = (hour - entered).total_seconds()
                current = oldest[stage][index]
                oldest[stage][index] = age if current is None else max(current, age)
    return [
        QueueSample(
            hour=hour,
            jobs={stage: jobs[stage][index] for stage in QUEUE_HISTORY_STAGES},
            oldest_seconds={stage: oldest[stage][index] for stage in QUEUE_HISTORY_STAGES},
        )
        for index, hour in enumerate(hours)
    ]


def _stage_runs(
    events: Iterable[tuple[int, datetime.datetime, str, int | None]], *, now: datetime.datetime
) -> Iterable[tuple[str, datetime.datetime, datetime.datetime, datetime.datetime, int | None]]:
    """(stage, entered, since, left, printer) for each continuous stay of a job in one queue stage at one
    printer: it entered the stage at `entered`, and was at the printer from `since` until `left`. A move
    within the stage (queued → queued on reroute, submitting → submitted) does not restart its age; when it
    moves the job to another printer, the stay goes on at that one."""
    current_job: int | None = None
    stage: str | None = None
    entered = since = now
    printer: int | None = None
    for job_id, at, to_status, at_printer in events:
        next_stage = STAGE_OF.get(to_status)
        if job_id != current_job:
            if stage is not None:
                yield stage, entered, since, now, printer
            current_job, stage, entered, since, printer = job_id, next_stage, at, at, at_printer
            continue
        if next_stage == stage and at_printer == printer:
            continue
        if stage is not None:
            yield stage, entered, since, at, printer
        if next_stage != stage:
            entered = at
        stage, since, printer = next_stage, at, at_printer
    if stage is not None:
        yield stage, entered, since, now, printer


def reprint_rate(*, filters: Filters) -> list[ReprintRateRow]:
    """Per day of the range: reprints requested ÷ jobs printed (a reprint counts at the printer of the print
    it replaces, as in the reprints table)."""
    printed = JobEvent.objects.filter(
        job__isnull=False, to_status=J.PRINTED, created_at__gte=filters.start, created_at__lt=filters.end
    )
    reprints = JobEvent.objects.filter(
        job__isnull=False, kind="reprint_requested", created_at__gte=filters.start, created_at__lt=filters.end
    )
    if filters.printer_id is not None:
        printed = printed.filter(job__printer_id=filters.printer_id)
        reprints = reprints.filter(job__reprint_of__printer_id=filters.printer_id)
    per_day: dict[str, dict[datetime.date, int]] = {}
    for name, events in (("printed", printed), ("reprints", reprints)):
        rows = events.annotate(day=TruncDate("created_at")).values("day").annotate(count=Count("pk"))
        per_day[name] = {row["day"]: row["count"] for row in rows.order_by("day")}
    days = (filters.end - filters.start).days
    result = []
    for offset in range(days):
        day = filters.start.date() + timedelta(days=offset)
        printed_count, reprint_count = per_day["printed"].get(day, 0), per_day["reprints"].get(day, 0)
        result.append(
            ReprintRateRow(
                day=day,
                printed=printed_count,
                reprints=reprint_count,
                rate=reprint_count / printed_count if printed_count else None,
            )
        )
    return result
