"""The supervisor's view: charts and tables of turnaround, throughput, waste, queues, printer states and
utilisation, their CSV, alerts."""

from __future__ import annotations

import csv
import datetime
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from lab.accounts.roles import BOARD_READER_ROLES, SUPERVISOR_VIEW_ROLES
from lab.lib.calendar import day_in_span
from lab.orders.models import Order
from lab.production.alerts import orders_at_risk
from lab.production.models import PrintJob
from lab.production.selectors import alerts_recent, printers_by_name
from lab.production.states import ReprintReason
from lab.staff import board, supervisor, supervisor_timelines
from lab.staff.access import can, forbidden, staff_page
from lab.staff.board import BOARD_LIST_LIMIT, batch_jobs, first_rows_and_count
from lab.staff.charts import Bar, Series, StackedBar, bar_chart, line_chart, stacked_bar_chart

# Technicians read it too; nothing on the page changes anything.
DEFAULT_DAYS = 7
MAX_DAYS = 92
# Each table's columns, in order (its CSV's header, written even when the table is empty); a row's `link`
# is the page's, not a column.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "turnaround": (
        "day",
        "shipping_method",
        "orders",
        "on_time",
        "mean_hours",
        "max_hours",
        "promised_hours",
    ),
    "throughput": ("printer", "hour", "jobs", "copies"),
    "failures": ("reason", "printer", "jobs", "copies"),
    "reprints": ("reason", "printer", "jobs", "copies"),
    "queue": ("stage", "jobs", "oldest_minutes"),
    "at_risk": ("order", "status", "shipping_method", "promised_by", "is_late"),
    "printer_time": (
        "printer",
        *(f"{state}_hours" for state in supervisor_timelines.PRINTER_STATES),
        "printing_hours",
        "utilisation_percent",
    ),
    "queue_history": (
        "hour",
        *(
            column
            for stage in supervisor_timelines.QUEUE_HISTORY_STAGES
            for column in (f"{stage}_jobs", f"{stage}_oldest_minutes")
        ),
    ),
    "reprint_rate": ("day", "printed", "reprints", "rate_percent"),
}
TABLES = tuple(TABLE_COLUMNS)


def _date(value: str | None) -> datetime.date | None:
    try:
        day = datetime.date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return day if day is not None and day_in_span(day) else None


def filters_from(request: HttpRequest) -> supervisor.Filters:
    """`from`/`to` (inclusive days, UTC) and `printer`; anything malformed falls back to the default."""
    today = timezone.now().date()
    last = _date(request.GET.get("to")) or today
    first = _date(request.GET.get("from")) or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last or (last - first).days >= MAX_DAYS:
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    printer = request.GET.get("printer", "")
    return supervisor.Filters(
        start=datetime.datetime.combine(first, datetime.time.min, tzinfo=datetime.UTC),
        end=datetime.datetime.combine(last + timedelta(days=1), datetime.time.min, tzinfo=datetime.UTC),
        printer_id=int(printer) if printer.isascii() and printer.isdigit() and len(printer) < 19 else None,
    )


def _query(filters: supervisor.Filters, **extra: str | int) -> str:
    params: dict[str, str | int] = {
        "from": filters.start.date().isoformat(),
        "to": (filters.end - timedelta(days=1)).date().isoformat(),
    }
    if filters.printer_id is not None:
        params["printer"] = filters.printer_id
    params.update(extra)
    return urlencode(params)


def _behind(filters: supervisor.Filters, **key: str | int) -> str:
    return f"{reverse('staff:supervisor_behind')}?{_query(filters, **key)}"


def _figures(filters: supervisor.Filters) -> dict[str, list[dict[str, object]]]:
    """Each table as rows of plain values (what the page and the CSV both show), plus each row's link."""
    now = timezone.now()
    return {
        "turnaround": [
            {
                "day": row.day.isoformat(),
                "shipping_method": row.shipping_method,
                "orders": row.orders,
                "on_time": row.on_time,
                "mean_hours": row.mean_hours,
                "max_hours": row.max_hours,
                "promised_hours": row.promised_hours,
                "link": _behind(
                    filters, table="turnaround", day=row.day.isoformat(), method=row.shipping_method
                ),
            }
            for row in supervisor.turnaround(filters=filters)
        ],
        "throughput": [
            {
                "printer": row.printer,
                "hour": row.hour.strftime("%Y-%m-%d %H:00"),
                "jobs": row.jobs,
                "copies": row.copies,
                "link": _behind(
                    filters, table="throughput", printer=row.printer_id, hour=row.hour.isoformat()
                ),
            }
            for row in supervisor.throughput(filters=filters)
        ],
        "failures": [
            {
                "reason": row.reason,
                "printer": row.printer,
                "jobs": row.jobs,
                "copies": row.copies,
                "link": _behind(filters, table="failures", reason=row.reason, printer=row.printer_id or ""),
            }
            for row in supervisor.failures(filters=filters)
        ],
        "reprints": [
            {
                "reason": row.reason,
                "printer": row.printer,
                "jobs": row.jobs,
                "copies": row.copies,
                "link": _behind(filters, table="reprints", reason=row.reason, printer=row.printer_id or ""),
            }
            for row in supervisor.reprints(filters=filters)
        ],
        "queue": [
            {
                "stage": row.stage,
                "jobs": row.jobs,
                "oldest_minutes": int((now - row.oldest).total_seconds() // 60) if row.oldest else "",
                "link": _behind(filters, table="queue", stage=row.stage),
            }
            for row in supervisor.queue_depth(printer_id=filters.printer_id)
        ],
        "at_risk": [
            {
                "order": order.ref,
                "status": order.status,
                "shipping_method": order.shipping_method,
                "promised_by": order.promised_by.strftime("%Y-%m-%d %H:%M") if order.promised_by else "",
                "is_late": bool(order.promised_by and order.promised_by < now),
                "link": reverse("staff:order", args=[order.ref]),
            }
            for order in orders_at_risk(now=now)
        ],
        **_timeline_figures(filters, now=now),
    }


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def _minutes(seconds: float | None) -> int | str:
    return "" if seconds is None else int(seconds // 60)


def _timeline_figures(
    filters: supervisor.Filters, *, now: datetime.datetime
) -> dict[str, list[dict[str, object]]]:
    """Printer states and utilisation, the queue's last 24 hours, the reprint rate per day."""
    stages = list(supervisor_timelines.QUEUE_HISTORY_STAGES)
    return {
        "printer_time": [
            {
                "printer": row.printer,
                **{
                    f"{state}_hours": _hours(row.seconds[state])
                    for state in supervisor_timelines.PRINTER_STATES
                },
                "printing_hours": _hours(row.printing_seconds),
                "utilisation_percent": "" if row.utilisation is None else round(row.utilisation * 100, 1),
                "link": _behind(filters, table="printer_time", printer=row.printer_id),
            }
            for row in supervisor_timelines.printer_time(filters=filters, now=now)
        ],
        "queue_history": [
            {
                "hour": sample.hour.strftime("%Y-%m-%d %H:00"),
                **{
                    column: value
                    for stage in stages
                    for column, value in (
                        (f"{stage}_jobs", sample.jobs[stage]),
                        (f"{stage}_oldest_minutes", _minutes(sample.oldest_seconds[stage])),
                    )
                },
            }
            for sample in supervisor_timelines.queue_history(now=now, printer_id=filters.printer_id)
        ],
        "reprint_rate": [
            {
                "day": row.day.isoformat(),
                "printed": row.printed,
                "reprints": row.reprints,
                "rate_percent": "" if row.rate is None else round(row.rate * 100, 1),
            }
            for row in supervisor_timelines.reprint_rate(filters=filters)
        ],
    }


def _charts(figures: dict[str, list[dict[str, object]]]) -> list[object]:
    charts: list[object] = []
    by_method: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in figures["turnaround"]:
        by_method[str(row["shipping_method"])].append(row)
    for method, rows in sorted(by_method.items()):
        promised = float(str(rows[0]["promised_hours"]))
        bars = [
            Bar(
                label=str(row["day"])[5:],
                value=float(str(row["mean_hours"])),
                href=str(row["link"]),
                is_warning=float(str(row["mean_hours"])) > promised,
            )
            for row in rows
        ]
        charts.append(
            bar_chart(
                title=f"Mean hours paid to shipped per day, {method}",
                bars=bars,
                unit=" h",
                reference=promised,
                reference_label=f"promised {promised:g} h",
            )
        )
    hourly: dict[str, float] = defaultdict(float)
    for row in figures["throughput"]:
        hourly[str(row["hour"])[5:]] += float(str(row["jobs"]))
    charts.append(
        bar_chart(
            title="Jobs printed per hour, all printers shown",
            bars=[Bar(label=hour, value=value) for hour, value in hourly.items()],
        )
    )
    charts.append(
        bar_chart(
            title="Jobs per queue stage now",
            bars=[
                Bar(label=str(row["stage"]), value=float(str(row["jobs"])), href=str(row["link"]))
                for row in figures["queue"]
            ],
        )
    )
    return charts + _timeline_charts(figures)


def _timeline_charts(figures: dict[str, list[dict[str, object]]]) -> list[object]:
    states = supervisor_timelines.PRINTER_STATES
    stages = list(supervisor_timelines.QUEUE_HISTORY_STAGES)
    hours = [str(row["hour"])[11:] for row in figures["queue_history"]]

    def values(rows: list[dict[str, object]], column: str) -> list[float | None]:
        return [None if row[column] == "" else float(str(row[column])) for row in rows]

    return [
        stacked_bar_chart(
            title="Hours in each printer state",
            segments=list(states),
            bars=[
                StackedBar(
                    label=str(row["printer"]),
                    parts=[float(str(row[f"{state}_hours"])) for state in states],
                    href=str(row["link"]),
                )
                for row in figures["printer_time"]
            ],
            unit=" h",
        ),
        line_chart(
            title="Queue depth per stage, last 24 hours (jobs)",
            labels=hours,
            series=[Series(stage, values(figures["queue_history"], f"{stage}_jobs")) for stage in stages],
        ),
        line_chart(
            title="Oldest job's minutes in its stage, last 24 hours",
            labels=hours,
            series=[
                Series(stage, values(figures["queue_history"], f"{stage}_oldest_minutes")) for stage in stages
            ],
            unit=" min",
        ),
        line_chart(
            title="Reprint rate per day (reprints per printed job)",
            labels=[str(row["day"])[5:] for row in figures["reprint_rate"]],
            series=[Series("reprint rate", values(figures["reprint_rate"], "rate_percent"))],
            unit=" %",
        ),
    ]


def _csv(table: str, rows: list[dict[str, object]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{table}.csv"'
    writer = csv.writer(response)
    columns = TABLE_COLUMNS[table]
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row[column] for column in columns])
    return response


@staff_page(*SUPERVISOR_VIEW_ROLES)
@require_GET
def supervisor_view(request: HttpRequest) -> HttpResponse:
    filters = filters_from(request)
    figures = _figures(filters)
    if request.GET.get("format") == "csv":
        table = request.GET.get("table", "")
        if table not in TABLES:
            raise Http404("no such table")
        return _csv(table, figures[table])
    return render(
        request,
        "staff/supervisor.html",
        {
            "filters": filters,
            "first_day": filters.start.date(),
            "last_day": (filters.end - timedelta(days=1)).date(),
            "printers": printers_by_name(),
            "figures": figures,
            "charts": _charts(figures),
            "csv_links": {table: f"?{_query(filters, format='csv', table=table)}" for table in TABLES},
            "alerts": alerts_recent(limit=20),
        },
    )


FAILURE_CODE_MAX_LENGTH = PrintJob._meta.get_field("failure_code").max_length or 0
# The most jobs one page of a list behind a figure shows (a queue stage can hold thousands, a printer's time
# 92 days of jobs), with how many there are in all and a link to the next page.
BEHIND_LIMIT = BOARD_LIST_LIMIT


def _row_key_is_possible(table: str, key: dict[str, str]) -> bool:
    """Whether a row of `table` can have this reason or stage: anything else (a NUL, which PostgreSQL refuses
    in text with a DataError, a 500 before) names no row."""
    if table == "queue":
        return key["stage"] in supervisor.QUEUE_STAGES
    if table == "reprints":
        return key["reason"] in ReprintReason.values
    if table == "failures":
        # A failure code is whatever a printer or a step said (PrintJob.failure_code): printable, 64 at most.
        return key["reason"].isprintable() and len(key["reason"]) <= FAILURE_CODE_MAX_LENGTH
    return True


Row = TypeVar("Row", PrintJob, Order)


@dataclass
class RowsPage(Generic[Row]):
    """One page of a list behind a figure or the board: its rows (jobs; the late orders' list, orders), where
    they start among all of them, the next page."""

    rows: list[Row]
    total: int  # all the list's rows
    first_number: int  # the first row's place in the list, from 1
    next_url: str  # "" on the last page
    next_count: int  # how many rows the next page shows

    @property
    def last_number(self) -> int:
        return self.first_number + len(self.rows) - 1


def _value_at(row: object, path: str) -> object:
    """The value of a field path (`order__promised_by`) on a row whose relations were loaded with it."""
    for name in path.split("__"):
        row = getattr(row, name)
    return row


def _rows_page(
    request: HttpRequest, rows: QuerySet[Row], *, by_time: str | None, time_nullable: bool = False
) -> RowsPage[Row]:
    """`BEHIND_LIMIT` rows after the cursor (`after`, the id of the last row shown; a list ordered by a time
    first, `by_time` — a queue stage by its jobs' time in the stage, the board's lists by the promise — also
    `after_time`, that row's time, empty when it had none and `time_nullable`), so a list of any length is
    read to its end a page at a time: keyset, not offset, so a page is as fast at its millionth row as at its
    first. `rows` are ordered by (`by_time`, pk), a row without a time last (PostgreSQL's NULLS LAST), or by
    pk."""
    after = request.GET.get("after", "")
    rest = rows
    if after:
        if not (after.isascii() and after.isdigit() and len(after) < 19):
            raise ValueError("malformed cursor")
        raw_time = request.GET.get("after_time", "")
        if by_time is None:
            rest = rows.filter(pk__gt=int(after))
        elif time_nullable and raw_time == "":
            # The last row shown had no time: what is left are the rows without one after it.
            rest = rows.filter(Q(**{f"{by_time}__isnull": True}), pk__gt=int(after))
        else:
            since = datetime.datetime.fromisoformat(raw_time)
            if since.tzinfo is None:  # every time here is UTC; a naive one names no row's
                raise ValueError("cursor without a time zone")
            # In UTC: PostgreSQL refuses an offset past ±15:59 or one with seconds, which fromisoformat takes
            # (a 500); a time at the calendar's ends raises OverflowError here, a 404 as the rest.
            since = since.astimezone(datetime.UTC)
            later = Q(**{f"{by_time}__gt": since}) | Q(**{by_time: since, "pk__gt": int(after)})
            if time_nullable:
                later |= Q(**{f"{by_time}__isnull": True})
            rest = rows.filter(later)
    shown, remaining = first_rows_and_count(rest, limit=BEHIND_LIMIT)
    # The first page counts all in its own query; a later one counts those before it too (one more query).
    total = rows.count() if after else remaining
    next_url = ""
    if remaining > len(shown):
        params = request.GET.copy()
        params["after"] = str(shown[-1].pk)
        if by_time is not None:
            time = _value_at(shown[-1], by_time)
            params["after_time"] = time.isoformat() if isinstance(time, datetime.datetime) else ""
        next_url = f"{reverse('staff:supervisor_behind')}?{params.urlencode()}"
    return RowsPage(
        rows=shown,
        total=total,
        first_number=total - remaining + 1,
        next_url=next_url,
        next_count=min(BEHIND_LIMIT, remaining - len(shown)),
    )


# The board's capped lists, whose "and N more" link here: every row, in the board's order (its first page is
# the rows the board shows), with the board's section titles.
BOARD_LISTS = {
    "waiting": "Waiting for a capable printer",
    "failed": "Failed",
    "late_orders": "Late orders",
}
# The lists the board links to: whoever reads the board opens them.
BOARD_TABLES = ("batch", *BOARD_LISTS)


# Whoever reads the board reads the lists it links to, a finished batch's jobs and its capped lists in full
# (auditors read the board): only those; the figures' other lists stay the supervisor's view's.
@staff_page(*SUPERVISOR_VIEW_ROLES, *BOARD_READER_ROLES)
@require_GET
def supervisor_behind_view(request: HttpRequest) -> HttpResponse:
    """The jobs (or orders) behind one row of a table, a batch's jobs, or one of the board's capped lists, a
    page at a time."""
    filters = filters_from(request)
    table = request.GET.get("table", "")
    if table not in BOARD_TABLES and not can(request, SUPERVISOR_VIEW_ROLES):
        return forbidden(request)
    key = {name: request.GET.get(name, "") for name in ("printer", "hour", "reason", "stage")}
    orders: list[Order] = []
    jobs_page: RowsPage[PrintJob] | None = None
    orders_page: RowsPage[Order] | None = None
    try:
        if table == "turnaround":
            day = datetime.date.fromisoformat(request.GET.get("day", ""))
            orders = supervisor.orders_behind_turnaround(
                filters=filters, day=day, method=request.GET.get("method", "")
            )
        elif table in ("throughput", "failures", "reprints", "queue", "printer_time"):
            if not _row_key_is_possible(table, key):
                raise Http404("no such row")
            jobs = supervisor.jobs_behind(table=table, filters=filters, key=key)
            jobs_page = _rows_page(request, jobs, by_time="updated_at" if table == "queue" else None)
        elif table == "batch":  # a batch of the board, finished: its jobs are not listed there
            batch = request.GET.get("batch", "")
            if not (batch.isascii() and batch.isdigit() and len(batch) < 19):
                raise Http404("no such batch")
            jobs_page = _rows_page(request, batch_jobs(batch_id=int(batch)), by_time=None)
        elif table in ("waiting", "failed"):  # the board's lists in full; not filtered, as the board is not
            jobs = board.waiting_jobs() if table == "waiting" else board.failed_jobs()
            jobs_page = _rows_page(request, jobs, by_time=board.JOB_PROMISE_FIELD, time_nullable=True)
        elif table == "late_orders":
            orders_page = _rows_page(
                request,
                board.late_orders(now=timezone.now()),
                by_time=board.ORDER_PROMISE_FIELD,
                time_nullable=True,
            )
        else:
            raise Http404("no such table")
    except (ValueError, OverflowError) as error:  # e.g. an hour at the calendar's end
        raise Http404("malformed row") from error
    is_from_board = table in BOARD_TABLES
    page = jobs_page or orders_page
    return render(
        request,
        "staff/supervisor_behind.html",
        {
            "table": table,
            "heading": BOARD_LISTS.get(table, f"Behind the figure: {table}"),
            "page": page,
            "jobs": jobs_page.rows if jobs_page else [],
            "orders": orders_page.rows if orders_page else orders,
            "lists_orders": table in ("turnaround", "late_orders"),
            "noun": "orders" if orders_page else "jobs",
            "total": page.total if page else 0,
            # Queue stages list the jobs longest in their stage first; the board's lists the soonest promise
            # first, as the board; the other lists by job number.
            "shown_oldest": table == "queue",
            "shown_by_promise": table in BOARD_LISTS,
            # A list reached from the board goes back to it (auditors read the board, not the supervisor's
            # view).
            "back": reverse("staff:board")
            if is_from_board
            else f"{reverse('staff:supervisor')}?{_query(filters)}",
            "back_label": "the board" if is_from_board else "the supervisor's view",
        },
    )
