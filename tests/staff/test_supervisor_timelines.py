"""The supervisor's timelines over small, explicit event histories: time in each printer state and
utilisation, queue depth and age per stage per hour, the reprint rate per day; each also recomputed minute by
minute from the raw events, independently of the view's one-pass walk."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from lab.production.models import JobEvent, Printer, PrintJob
from lab.staff import supervisor, supervisor_timelines
from tests.builders import client_as, hotfolder_printer, released_order

pytestmark = pytest.mark.django_db
DAY = datetime(2026, 11, 20, tzinfo=UTC)
URL = "/lab/supervisor/"


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def _state(printer: Printer, to_state: str, when: datetime) -> None:
    JobEvent.objects.create(printer=printer, kind="printer_state", to_status=to_state, created_at=when)


def _move(job: PrintJob, from_status: str, to_status: str, when: datetime, kind: str = "moved") -> None:
    JobEvent.objects.create(job=job, kind=kind, from_status=from_status, to_status=to_status, created_at=when)


def _jobs(count: int) -> tuple[Printer, Printer, list[PrintJob]]:
    """Two printers added long before DAY (a printer counts from when it was added) and `count` jobs."""
    alpha = hotfolder_printer("alpha", sizes=["4x6"])
    beta = hotfolder_printer("beta", sizes=["5x7"])
    Printer.objects.filter(pk__in=[alpha.pk, beta.pk]).update(created_at=at(-24 * 30))
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)] * count)
    return alpha, beta, list(PrintJob.objects.filter(order=order).order_by("pk"))


def _printer_history() -> tuple[Printer, Printer]:
    """alpha: error from before the range until 00:30, online 2 h, paused 30 min, offline 30 min (to 03:30);
    beta: never a state event, so online throughout. Jobs at alpha: A submitted 00:15 → printed 01:00,
    B 00:45 → failed 01:15 (overlapping A), C submitted before the range → printed 00:20 (while in error),
    D submitted 02:00 and still there at 03:30."""
    alpha, beta, (job_a, job_b, job_c, job_d) = _jobs(4)
    _state(alpha, "online", at(-5))
    _state(alpha, "error", at(-1))
    _state(alpha, "online", at(0.5))
    _state(alpha, "paused", at(2.5))
    _state(alpha, "offline", at(3))
    _state(alpha, "online", at(30))  # after now: not counted
    _move(job_a, "submitting", "submitted", at(0.25))
    _move(job_a, "submitted", "printed", at(1))
    _move(job_b, "submitting", "submitted", at(0.75))
    _move(job_b, "submitted", "failed", at(1.25))
    _move(job_c, "submitting", "submitted", at(-0.5))
    _move(job_c, "submitted", "printed", at(20 / 60))
    _move(job_d, "submitting", "submitted", at(2))
    return alpha, beta


def _day(printer_id: int | None = None) -> supervisor.Filters:
    return supervisor.Filters(start=DAY, end=DAY + timedelta(days=1), printer_id=printer_id)


def _minutes_by_raw_events(printer: Printer, *, start: datetime, end: datetime) -> dict[str, int]:
    """Minute by minute: the printer's state is its latest state event at or before that minute (online
    before any), and it prints when one of its jobs' latest status event says submitted."""
    states = list(JobEvent.objects.filter(printer=printer, kind="printer_state").order_by("created_at"))
    job_events = list(
        JobEvent.objects.filter(job__printer=printer).exclude(to_status="").order_by("created_at")
    )
    minutes: dict[str, int] = {"online": 0, "paused": 0, "offline": 0, "error": 0, "printing": 0}
    moment = start
    while moment < end:
        state = next((e.to_status for e in reversed(states) if e.created_at <= moment), "online")
        minutes[state] += 1
        latest: dict[int | None, str] = {}
        for event in job_events:
            if event.created_at <= moment:
                latest[event.job_id] = event.to_status
        if state == "online" and "submitted" in latest.values():
            minutes["printing"] += 1
        moment += timedelta(minutes=1)
    return minutes


def test_time_in_each_printer_state_and_utilisation() -> None:
    alpha, beta = _printer_history()

    rows = supervisor_timelines.printer_time(filters=_day(), now=at(3.5))

    assert [(row.printer, row.seconds, row.printing_seconds, row.utilisation) for row in rows] == [
        ("alpha", {"online": 7200.0, "paused": 1800.0, "offline": 1800.0, "error": 1800.0}, 4500.0, 0.625),
        ("beta", {"online": 12600.0, "paused": 0.0, "offline": 0.0, "error": 0.0}, 0.0, 0.0),
    ]
    for row, printer in zip(rows, (alpha, beta), strict=True):
        raw = _minutes_by_raw_events(printer, start=DAY, end=at(3.5))
        assert {state: int(seconds // 60) for state, seconds in row.seconds.items()} == {
            state: raw[state] for state in ("online", "paused", "offline", "error")
        }
        assert row.printing_seconds == raw["printing"] * 60


def test_printer_time_with_the_printer_filter_and_a_range_in_the_past() -> None:
    alpha, _ = _printer_history()

    rows = supervisor_timelines.printer_time(
        filters=supervisor.Filters(start=at(-2), end=at(0), printer_id=alpha.pk), now=at(100)
    )

    # online until -1 h (state before the range: online, from the event at -5 h), then error
    assert [(row.printer, row.seconds["online"], row.seconds["error"]) for row in rows] == [
        ("alpha", 3600.0, 3600.0)
    ]
    # C was submitted at -0.5 h and still there when the range ends, but alpha was in error by then
    assert (rows[0].printing_seconds, rows[0].utilisation) == (0.0, 0.0)


def _queue_history() -> list[PrintJob]:
    """job1 walks the whole queue today; job2 waits from 22:00 yesterday and rasterizes from 04:30; job3 is of
    unknown fate since 30 hours ago, longer than the window, and never moved since."""
    _, _, (job1, job2, job3) = _jobs(3)
    for from_status, to_status, hours in (
        ("", "no_printer", 10 / 60),
        ("no_printer", "queued", 20 / 60),
        ("queued", "queued", 50 / 60),  # rerouted: still waiting, its age goes on
        ("queued", "rasterizing", 70 / 60),
        ("rasterizing", "ready", 80 / 60),
        ("ready", "submitting", 125 / 60),
        ("submitting", "submitted", 126 / 60),
        ("submitted", "printed", 3.5),
    ):
        _move(job1, from_status, to_status, at(hours))
    _move(job2, "", "no_printer", at(-2))
    _move(job2, "no_printer", "queued", at(-1.5))
    _move(job2, "queued", "rasterizing", at(4.5))
    _move(job3, "", "no_printer", at(-31))
    _move(job3, "ready", "submitting", at(-30.25))
    _move(job3, "submitting", "unknown", at(-30))
    PrintJob.objects.filter(pk=job3.pk).update(status="unknown")
    return [job1, job2, job3]


def test_queue_depth_and_oldest_age_per_stage_each_hour() -> None:
    _queue_history()

    samples = supervisor_timelines.queue_history(now=at(5.5), printer_id=None)

    assert [sample.hour for sample in samples] == [at(hour) for hour in range(-18, 6)]
    assert all(sample.jobs["unknown"] == 1 for sample in samples)
    assert samples[0].oldest_seconds["unknown"] == 12 * 3600.0  # at -18 h, unknown since -30 h
    minutes = {
        sample.hour.hour: (
            sample.jobs,
            {stage: None if age is None else age / 60 for stage, age in sample.oldest_seconds.items()},
        )
        for sample in samples[-8:]
    }
    none = {"waiting": 0, "rasterizing": 0, "ready": 0, "submitted": 0, "unknown": 1}
    assert minutes[22] == ({**none, "waiting": 1}, {**_ages(unknown=1680), "waiting": 0.0})
    assert minutes[0] == ({**none, "waiting": 1}, {**_ages(unknown=1800), "waiting": 120.0})
    assert minutes[1] == ({**none, "waiting": 2}, {**_ages(unknown=1860), "waiting": 180.0})
    assert minutes[2] == (
        {**none, "waiting": 1, "ready": 1},
        {**_ages(unknown=1920), "waiting": 240.0, "ready": 40.0},
    )
    assert minutes[3] == (
        {**none, "waiting": 1, "submitted": 1},
        {**_ages(unknown=1980), "waiting": 300.0, "submitted": 55.0},
    )
    assert minutes[5] == ({**none, "rasterizing": 1}, {**_ages(unknown=2100), "rasterizing": 30.0})


def _ages(*, unknown: float) -> dict[str, float | None]:
    return {"waiting": None, "rasterizing": None, "ready": None, "submitted": None, "unknown": unknown}


def test_queue_history_matches_a_recount_from_the_raw_events() -> None:
    jobs = _queue_history()
    events = list(JobEvent.objects.filter(job__in=jobs).exclude(to_status="").order_by("created_at", "pk"))

    samples = supervisor_timelines.queue_history(now=at(5.5), printer_id=None)

    for sample in samples:
        depth = dict.fromkeys(supervisor_timelines.QUEUE_HISTORY_STAGES, 0)
        oldest: dict[str, float | None] = dict.fromkeys(supervisor_timelines.QUEUE_HISTORY_STAGES, None)
        for job in jobs:
            history = [
                event for event in events if event.job_id == job.pk and event.created_at <= sample.hour
            ]
            stage = supervisor_timelines.STAGE_OF.get(history[-1].to_status) if history else None
            if stage is None:
                continue
            entered = history[-1].created_at
            for event in reversed(history):  # walk back while the job stayed in this stage
                if supervisor_timelines.STAGE_OF.get(event.to_status) != stage:
                    break
                entered = event.created_at
            depth[stage] += 1
            age = (sample.hour - entered).total_seconds()
            oldest[stage] = age if oldest[stage] is None else max(age, oldest[stage] or 0.0)
        assert (sample.jobs, sample.oldest_seconds) == (depth, oldest), sample.hour


def test_reprint_rate_per_day() -> None:
    alpha, _, jobs = _jobs(5)
    for job, hours in zip(jobs[:4], (1, 2, 3, 26), strict=True):
        _move(job, "submitted", "printed", at(hours))
    reprint = PrintJob.objects.create(
        order=jobs[0].order, item=jobs[0].item, copies=1, reprint_of=jobs[0], reprint_reason="damaged"
    )
    JobEvent.objects.create(job=reprint, kind="reprint_requested", to_status="no_printer", created_at=at(4))

    rows = supervisor_timelines.reprint_rate(
        filters=supervisor.Filters(start=DAY, end=DAY + timedelta(days=3), printer_id=None)
    )
    other_printer = supervisor_timelines.reprint_rate(
        filters=supervisor.Filters(start=DAY, end=DAY + timedelta(days=1), printer_id=alpha.pk + 1000)
    )

    assert [(row.day.day, row.printed, row.reprints, row.rate) for row in rows] == [
        (20, 3, 1, 1 / 3),
        (21, 1, 0, 0.0),
        (22, 0, 0, None),
    ]
    assert [(row.printed, row.reprints, row.rate) for row in other_printer] == [(0, 0, None)]


def test_the_page_shows_the_new_tables_charts_csv_and_drill_down() -> None:
    alpha, _ = _printer_history()
    client, _ = client_as("supervisor")
    span = {"from": "2026-11-20", "to": "2026-11-20"}

    page = client.get(URL, span)
    printer_csv = client.get(URL, {**span, "format": "csv", "table": "printer_time"})
    history_csv = client.get(URL, {**span, "format": "csv", "table": "queue_history"})
    rate_csv = client.get(URL, {**span, "format": "csv", "table": "reprint_rate"})
    behind_query: dict[str, str | int] = {**span, "table": "printer_time", "printer": alpha.pk}
    behind = client.get("/lab/supervisor/behind/", behind_query)

    html = page.content.decode()
    assert page.status_code == 200
    # shipped nothing: throughput, queue now, printer states, queue depth and age, reprint rate
    assert html.count('<svg class="chart"') == 6
    assert 'id="table-printer_time"' in html and 'id="table-queue_history"' in html
    printer_rows = list(csv.reader(io.StringIO(printer_csv.content.decode())))
    assert printer_rows[0] == [
        "printer",
        "online_hours",
        "paused_hours",
        "offline_hours",
        "error_hours",
        "printing_hours",
        "utilisation_percent",
    ]
    # the range is a past day: alpha online from 00:30 to 02:30 and again from 30 h, so 2 h in all
    assert printer_rows[1] == ["alpha", "2.0", "0.5", "21.0", "0.5", "1.25", "62.5"]
    assert printer_rows[2] == ["beta", "24.0", "0.0", "0.0", "0.0", "0.0", "0.0"]
    history_rows = list(csv.reader(io.StringIO(history_csv.content.decode())))
    assert history_rows[0][:3] == ["hour", "waiting_jobs", "waiting_oldest_minutes"]
    assert len(history_rows) == 25
    assert list(csv.reader(io.StringIO(rate_csv.content.decode()))) == [
        ["day", "printed", "reprints", "rate_percent"],
        ["2026-11-20", "2", "0", "0.0"],
    ]
    assert behind.status_code == 200
    assert len(behind.context["jobs"]) == 4


def test_a_printer_counts_from_when_it_was_added_and_one_added_after_the_range_is_not_listed() -> None:
    # given alpha, added at 12:00 of DAY, whose job was submitted at 10:00 (before it was added: a test's
    # history) and printed at 14:00, and beta, added the next day
    alpha, beta, (job,) = _jobs(1)
    Printer.objects.filter(pk=alpha.pk).update(created_at=at(12))
    Printer.objects.filter(pk=beta.pk).update(created_at=at(24))
    _move(job, "submitting", "submitted", at(10))
    _move(job, "submitted", "printed", at(14))

    # when the supervisor reads DAY's printer time, two days later
    rows = supervisor_timelines.printer_time(filters=_day(), now=at(48))

    # then alpha was online its last 12 hours, printing 2 of them; beta did not exist yet
    assert [(row.printer, row.seconds, row.printing_seconds, row.utilisation) for row in rows] == [
        ("alpha", {"online": 43200.0, "paused": 0.0, "offline": 0.0, "error": 0.0}, 7200.0, 7200 / 43200)
    ]


def _by_the_lab(printer: Printer, kind: str, when: datetime) -> None:
    """As lab.production.actions.printer_pause/printer_resume record it: no state event."""
    JobEvent.objects.create(printer=printer, kind=kind, created_at=when)


def test_a_printer_paused_from_the_board_is_paused_not_online() -> None:
    # given alpha, paused by the lab from before DAY until 02:00, in error 03:00-04:00, paused by the lab
    # again 03:30-05:00; a job submitted at 00:30 printed at 02:30 (a paused printer finishes what it holds)
    alpha, _, (job,) = _jobs(1)
    _by_the_lab(alpha, "printer_paused", at(-1))
    _by_the_lab(alpha, "printer_resumed", at(2))
    _state(alpha, "error", at(3))
    _by_the_lab(alpha, "printer_paused", at(3.5))
    _state(alpha, "online", at(4))
    _by_the_lab(alpha, "printer_resumed", at(5))
    _move(job, "submitting", "submitted", at(0.5))
    _move(job, "submitted", "printed", at(2.5))

    # when the supervisor reads alpha's time at 06:00
    (row,) = supervisor_timelines.printer_time(filters=_day(alpha.pk), now=at(6))

    # then the lab's pauses while it was otherwise online are paused time; its error stays an error
    assert row.seconds == {"online": 7200.0, "paused": 10800.0, "offline": 0.0, "error": 3600.0}
    assert (row.printing_seconds, row.utilisation) == (1800.0, 0.25)
