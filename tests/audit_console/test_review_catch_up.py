"""The nightly review job queues every finished day of the last week whose queue is not recorded yet, not
just yesterday: a lost run (PostgreSQL restarting at 00:30, a killed worker, a lost message) no longer loses
a day's random sample and every flag of it, without a word."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from django import db
from django.utils import timezone

from lab.audit.models import AuditRecord, ReviewItem
from lab.gate import review
from lab.gate.anomalies import anomalies_find, lab_zone
from lab.gate.review import CATCH_UP_DAYS, day_bounds, lab_today, review_sample_daily
from lab.lib.clock import database_now
from tests.builders import attempt, denied
from tests.support.clock import host_clock_off

pytestmark = pytest.mark.django_db


def noon(*, days_ago: int) -> datetime:
    day = lab_today() - timedelta(days=days_ago)
    return datetime.combine(day, time(12), tzinfo=lab_zone())


def queued() -> list[tuple[int, str]]:
    return list(ReviewItem.objects.order_by("record_id", "reason").values_list("record_id", "reason"))


def days_recorded_as_queued() -> list[str]:
    return sorted(
        AuditRecord.objects.filter(action="audit.review.queued").values_list("context_id", flat=True)
    )


def test_a_day_whose_nightly_run_was_lost_is_queued_by_the_next_night_s_run(technician):
    # given a refusal two days ago, whose night's run was lost (before, only yesterday was ever queued)
    refused = denied(technician, at=noon(days_ago=2), rule="purpose_not_allowed_for_role")

    # when the nightly job runs, as beat sends it: without a day
    run = review_sample_daily(sample_size=5)

    # then the refusal is queued for its flag, and yesterday's run (nothing to queue) is what it returns
    assert queued() == [(refused.seq, "denied_attempt")]
    assert (run.day, run.sampled, run.flagged) == (lab_today() - timedelta(days=1), 0, 0)


def test_running_the_nightly_job_again_queues_nothing_twice_and_costs_two_queries(
    technician, django_assert_num_queries
):
    # given views three days ago, a refusal two days ago and a view yesterday, queued by one nightly run
    views = [attempt(technician, at=noon(days_ago=3) + timedelta(minutes=i)).seq for i in range(3)]
    refused = denied(technician, at=noon(days_ago=2), rule="purpose_not_allowed_for_role")
    late = attempt(technician, at=noon(days_ago=1), order_ref="PL-LATE")
    review_sample_daily(sample_size=2)
    first = queued()

    # when it runs again
    with django_assert_num_queries(2):  # the database's clock and the days recorded as queued; no day scanned
        again = review_sample_daily(sample_size=2)

    # then nothing was queued twice: two of the three views, the refusal and yesterday's view, once each
    assert queued() == first
    assert (again.sampled, again.flagged) == (0, 0)
    assert [reason for _, reason in first].count("sample") == 3
    assert {seq for seq, reason in first if reason == "sample"} <= {*views, late.seq}
    assert late.seq in {seq for seq, _ in first}
    assert (refused.seq, "denied_attempt") in first
    # and each finished day of the window is recorded in the chain as queued, once
    today = lab_today()
    assert days_recorded_as_queued() == sorted(
        (today - timedelta(days=back)).isoformat() for back in range(1, CATCH_UP_DAYS + 1)
    )


def test_a_day_older_than_the_window_is_left_to_the_auditors(technician):
    # given a refusal on the day before the week the nightly job looks back over
    denied(technician, at=noon(days_ago=CATCH_UP_DAYS + 1), rule="purpose_not_allowed_for_role")

    # when the nightly job runs
    review_sample_daily(sample_size=5)

    # then that day is neither scanned nor recorded (an auditor queues it by hand from the console)
    oldest = (lab_today() - timedelta(days=CATCH_UP_DAYS)).isoformat()
    assert (CATCH_UP_DAYS, queued(), days_recorded_as_queued()[0]) == (7, [], oldest)


def test_a_day_queued_by_hand_before_it_was_over_is_queued_again_the_next_night(technician, monkeypatch):
    # given a view today, and today queued by hand while it is still going on (its sample then draws nothing)
    today = lab_today()
    view = attempt(technician, at=timezone.now() - timedelta(seconds=1))
    early = review_sample_daily(day=today, sample_size=0)

    # when the next night's job runs (the database's clock, which says when a day is over, after midnight)
    midnight = datetime.combine(today + timedelta(days=1), time(0, 30), tzinfo=lab_zone())
    monkeypatch.setattr(review, "database_now", lambda: midnight)
    run = review_sample_daily(sample_size=5)

    # then today is queued as a finished day: its record from before midnight does not count
    assert (early.sampled, run.day, run.sampled) == (0, today, 1)
    assert queued() == [(view.seq, "sample")]


def test_a_worker_whose_clock_runs_ahead_past_midnight_does_not_queue_the_database_s_today(
    technician, monkeypatch
):
    """The nightly run took "yesterday" from the worker's clock. With beat and the worker 2 hours ahead, the
    00:30 run came at 22:30 on the database's clock: today counted as finished, its sample was drawn from the
    views so far and, a sample only topping up to its size, the views of its last 90 minutes could never be
    drawn. Which days are over is now read on the database's clock, like an auditor's build."""
    # given a view earlier today, on the database's clock
    today = lab_today()
    attempt(technician, at=database_now())

    # when the nightly job runs on a worker whose clock is already an hour into tomorrow
    ahead = day_bounds(today)[1] - database_now() + timedelta(hours=1)
    with host_clock_off(ahead, monkeypatch):
        run = review_sample_daily(sample_size=5)

    # then today, still going on, is neither sampled nor recorded as queued; yesterday was the last day run
    assert (run.day, queued()) == (today - timedelta(days=1), [])
    assert today.isoformat() not in days_recorded_as_queued()


def test_a_review_day_runs_midnight_to_midnight_in_the_lab_s_time_zone(technician, settings):
    """The review day ended at UTC midnight whatever the lab's zone: a lab in Chicago had its evenings queued
    with the next day. A day is now midnight to midnight in LAB_TIME_ZONE, 23 hours on the day the clocks go
    forward."""
    settings.LAB_TIME_ZONE = "America/Chicago"
    spring_forward = date(2026, 3, 8)  # Chicago: 02:00 CST -> 03:00 CDT
    late_on_the_day = attempt(technician, at=datetime(2026, 3, 9, 4, 30, tzinfo=UTC))  # 23:30 CDT, March 8
    attempt(technician, at=datetime(2026, 3, 8, 5, 30, tzinfo=UTC), order_ref="PL-EVE")  # 23:30 CST, March 7

    since, until = day_bounds(spring_forward)
    run = review_sample_daily(day=spring_forward, sample_size=5)

    assert (since.astimezone(UTC), until.astimezone(UTC) - since.astimezone(UTC)) == (
        datetime(2026, 3, 8, 6, tzinfo=UTC),
        timedelta(hours=23),
    )
    assert (run.sampled, queued()) == (1, [(late_on_the_day.seq, "sample")])


@pytest.mark.django_db(transaction=True)
def test_two_runs_for_one_day_at_once_draw_one_sample(technician, monkeypatch):
    """Two runs at once (two nightly messages after the worker was down two nights, or an auditor's build
    beside the nightly job) each read the day's sample as empty and each drew a full one: 2 x the sample
    size, for good, since review items are never deleted. Each run now queues the day alone."""
    day = lab_today() - timedelta(days=1)
    for minute in range(8):
        attempt(technician, at=noon(days_ago=1) + timedelta(minutes=minute))
    # both runs meet here after reading the day's sample, if neither waits for the other (then the first
    # waits out the barrier's timeout and goes on alone)
    meeting = threading.Barrier(2, timeout=3)
    real_find = anomalies_find

    def find_after_meeting(**window: Any) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait()
        return real_find(**window)

    monkeypatch.setattr(review, "anomalies_find", find_after_meeting)

    def run() -> None:
        try:
            review_sample_daily(day=day, sample_size=3)
        finally:
            db.connections.close_all()

    runs = [threading.Thread(target=run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=60)

    assert ReviewItem.objects.filter(reason="sample").count() == 3
    assert days_recorded_as_queued() == [day.isoformat(), day.isoformat()]
