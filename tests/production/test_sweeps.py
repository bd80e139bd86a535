"""Beat's sweeps, watched from outside beat: a scheduled task that stops succeeding (beat dead, no worker
on its queue, an error at every run) is overdue on the board, on /metrics and for `manage.py sweeps_check`,
judged on the database's clock. (A real worker and beat, killed and started again: tests/e2e/test_sweeps.py.)
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import F
from django.test import Client
from django.urls import reverse

from lab.customer_data import retention, retention_rules
from lab.lib.clock import database_now
from lab.orders.models import Asset
from lab.production.models import SweepRun
from lab.production.sweeps import (
    PRINTER_EVENTS,
    WATCH_MIGRATION,
    scheduled_sweeps,
    sweep_allowance,
    sweep_record,
    sweep_succeeded,
    sweeps_overdue,
    sweeps_status,
    watched_processes,
)
from tests.builders import UserFactory, asset_for, client_as
from tests.support.clock import host_clock_off
from tests.support.metrics import scrape

pytestmark = pytest.mark.django_db
POLL, RECONCILE, RETENTION = "production.printer_poll", "production.reconcile", "privacy.retention_purge"
TOKEN = "a-metrics-token-of-this-test"


def _all_ran() -> None:
    for task in scheduled_sweeps():
        sweep_record(task)


def _last_success_ago(task: str, ago: timedelta) -> None:
    SweepRun.objects.filter(task=task).update(last_run_at=F("last_run_at") - ago)


def _overdue() -> list[str]:
    return [status.task for status in sweeps_status() if status.overdue]


def _board() -> str:
    client, _ = client_as("technician")
    response = client.get(reverse("staff:board_live"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.content.decode()


def test_every_beat_schedule_entry_is_watched_with_its_interval(settings):
    sweeps = scheduled_sweeps()

    assert sweeps[POLL] == timedelta(seconds=settings.PRODUCTION_POLL_SECONDS)
    assert sweeps[RECONCILE] == timedelta(seconds=settings.PRODUCTION_POLL_SECONDS * 3)
    assert sweeps["audit.review_sample_daily"] == timedelta(days=1)  # a crontab: daily
    assert {"audit.checkpoint", RETENTION, "notify.notifications_sweep"} <= set(sweeps)


def test_sweeps_that_ran_are_not_overdue_and_the_board_shows_no_alarm():
    _all_ran()

    assert _overdue() == []
    assert 'id="sweeps-overdue"' not in _board()
    assert "ok" in _check()[1] and "OVERDUE" not in _check()[1]


def test_a_sweep_past_its_allowance_is_overdue_on_the_board_in_metrics_and_for_the_check(settings):
    settings.METRICS_TOKEN = TOKEN
    _all_ran()
    allowance = sweep_allowance(scheduled_sweeps()[RECONCILE])
    _last_success_ago(RECONCILE, allowance + timedelta(seconds=5))

    assert _overdue() == [RECONCILE]
    board = _board()
    assert 'id="sweeps-overdue"' in board and "<code>production.reconcile</code>: last succeeded" in board
    assert "production.printer_poll" not in board
    failed, output = _check()
    assert failed and f"{RECONCILE:40} OVERDUE" in output
    samples = scrape(Client(), token=TOKEN)
    assert samples[("printlab_sweeps_overdue", ())] == 1
    age = samples[("printlab_sweep_seconds_since_success", (("task", RECONCILE),))]
    assert allowance.total_seconds() < age < allowance.total_seconds() + 60


def test_a_sweep_just_inside_its_allowance_is_not_overdue():
    _all_ran()
    _last_success_ago(RECONCILE, sweep_allowance(scheduled_sweeps()[RECONCILE]) - timedelta(seconds=5))

    assert _overdue() == []


def _installed_ago(ago: timedelta) -> None:
    MigrationRecorder.Migration.objects.filter(app="production", name=WATCH_MIGRATION).update(
        applied=database_now() - ago
    )


def test_when_no_sweep_ran_since_the_lab_was_installed_longer_ago_than_their_allowances_all_are_overdue():
    """Beat never started (or never reached the database): nothing runs the sweeps."""
    _installed_ago(max(sweep_allowance(interval) for interval in scheduled_sweeps().values()) + timedelta(1))
    statuses = sweeps_status()

    sweeps = [status for status in statuses if status.task not in watched_processes()]
    assert sweeps and all(status.overdue and status.age is None for status in sweeps)
    assert "has not run" in _board()
    assert _check()[0]


def test_a_lab_installed_a_moment_ago_whose_beat_has_not_run_yet_raises_no_alarm():
    _installed_ago(timedelta(seconds=5))

    assert _overdue() == []
    assert 'id="sweeps-overdue"' not in _board()

    _installed_ago(sweep_allowance(scheduled_sweeps()[POLL]) + timedelta(seconds=1))

    assert POLL in _overdue() and RETENTION not in _overdue()


def test_a_sweep_that_never_ran_is_overdue_once_the_others_ran_longer_than_its_allowance():
    _all_ran()
    SweepRun.objects.filter(task=RETENTION).delete()  # it fails at every run, say
    assert RETENTION not in _overdue()  # beat may simply not have reached it yet

    allowance = sweep_allowance(scheduled_sweeps()[RETENTION])
    SweepRun.objects.update(first_run_at=F("first_run_at") - allowance - timedelta(seconds=5))

    assert _overdue() == [RETENTION]


def test_a_listener_that_never_ran_raises_no_alarm_and_one_that_stopped_does():
    """A lab may run without the printer-events listener (the poll is its safety net); once it has run, its
    death is shown: completed prints would wait for the poll, unseen."""
    _installed_ago(timedelta(days=30))
    _all_ran()
    assert _overdue() == []

    sweep_record(PRINTER_EVENTS)
    _last_success_ago(
        PRINTER_EVENTS, sweep_allowance(watched_processes()[PRINTER_EVENTS]) + timedelta(seconds=1)
    )

    assert _overdue() == [PRINTER_EVENTS]
    assert "<code>printer_events</code>: last succeeded" in _board()


@pytest.mark.parametrize("hours", [2, -2])
def test_overdue_is_judged_on_the_database_s_clock_not_the_reader_s(hours, monkeypatch):
    """A web host whose clock is hours off neither raises a false alarm nor hides a real one."""
    _all_ran()
    _last_success_ago(RECONCILE, sweep_allowance(scheduled_sweeps()[RECONCILE]) + timedelta(seconds=5))

    with host_clock_off(timedelta(hours=hours), monkeypatch):
        assert _overdue() == [RECONCILE]


@pytest.mark.parametrize(
    ("task_name", "state", "is_eager", "recorded"),
    [
        (RECONCILE, "SUCCESS", False, True),
        (RECONCILE, "FAILURE", False, False),  # a sweep that fails at every run goes overdue
        (RECONCILE, "SUCCESS", True, False),  # run eagerly inside a caller's transaction
        ("production.print_job_submit", "SUCCESS", False, False),  # not scheduled
    ],
)
def test_only_a_scheduled_task_s_successful_run_is_recorded(task_name, state, is_eager, recorded):
    task = SimpleNamespace(name=task_name, request=SimpleNamespace(is_eager=is_eager))

    sweep_succeeded(task=task, state=state)  # type: ignore[arg-type]

    assert SweepRun.objects.filter(task=task_name).exists() is recorded


def test_a_run_updates_its_row_in_place():
    sweep_record(RECONCILE)
    first = SweepRun.objects.get(task=RECONCILE)
    _last_success_ago(RECONCILE, timedelta(minutes=5))

    sweep_record(RECONCILE)

    again = SweepRun.objects.get(task=RECONCILE)
    assert SweepRun.objects.count() == 1
    assert (again.first_run_at, again.last_run_at > first.last_run_at - timedelta(seconds=1)) == (
        first.first_run_at,
        True,
    )


def _run_finished(task: str, result: object) -> None:
    """Celery's task_postrun for a scheduled task run by a worker, that returned `result`."""
    celery_task = SimpleNamespace(name=task, request=SimpleNamespace(is_eager=False))
    sweep_succeeded(task=celery_task, state="SUCCESS", retval=result)  # type: ignore[arg-type]


def test_a_retention_sweep_that_ran_out_of_time_is_behind_on_the_board_in_metrics_and_for_the_check(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    """A sweep that succeeds but leaves work for the next one, run after run, falls behind its schedule for
    good (photos kept past their promised retention) while each run is recorded as a success. Before, the
    board, /metrics and the check stayed clean: only a log line said so."""
    settings.METRICS_TOKEN = TOKEN
    settings.RETENTION_BATCH = 1
    monkeypatch.setattr(retention, "SWEEP_TIME_BUDGET_SECONDS", 0.0)  # spent once the first batch ran
    _all_ran()
    customer = UserFactory.create()
    photos = [asset_for(customer) for _ in range(3)]
    overdue_by = retention.retention_schedule_lag() + timedelta(hours=1)
    Asset.objects.filter(pk__in=[photo.pk for photo in photos]).update(
        created_at=F("created_at") - timedelta(days=settings.RETENTION_UNUSED_DAYS) - overdue_by
    )

    # when the hourly sweep runs out of time after one photo
    with django_capture_on_commit_callbacks(execute=True):
        result = retention.retention_sweep()
    _run_finished(RETENTION, result)

    # then it is recorded as a run, but a run that fell behind: shown wherever an overdue sweep is
    assert result["work_left"] == 2
    assert [(status.task, status.overdue, status.behind) for status in sweeps_overdue()] == [
        (RETENTION, False, True)
    ]
    board = _board()
    assert 'id="sweeps-overdue"' in board
    assert "<code>privacy.retention_purge</code>: fell behind, 2 items left for its next run" in board
    failed, output = _check()
    assert failed and f"{RETENTION:40} BEHIND" in output
    samples = scrape(Client(), token=TOKEN)
    assert samples[("printlab_sweeps_behind", ())] == 1
    assert samples[("printlab_sweeps_overdue", ())] == 0
    due = samples[("printlab_retention_due_past_schedule", (("rule", retention_rules.RULE_NEVER_ORDERED),))]
    assert due == 2

    # and a run that caught up clears it
    monkeypatch.setattr(retention, "SWEEP_TIME_BUDGET_SECONDS", 600.0)
    with django_capture_on_commit_callbacks(execute=True):
        caught_up = retention.retention_sweep()
    _run_finished(RETENTION, caught_up)
    assert "work_left" not in caught_up
    assert sweeps_overdue() == []
    assert not _check()[0]
    samples = scrape(Client(), token=TOKEN)
    assert samples[("printlab_sweeps_behind", ())] == 0
    assert (
        samples[("printlab_retention_due_past_schedule", (("rule", retention_rules.RULE_NEVER_ORDERED),))]
        == 0
    )


@pytest.mark.parametrize("result", [None, 3, {"work_left": 0}, {"work_left": "many"}, {"purged": 5}])
def test_a_run_that_reports_no_work_left_is_not_behind(result):
    _run_finished(RETENTION, result)

    assert SweepRun.objects.get(task=RETENTION).work_left == 0
    assert sweeps_overdue() == []


def _check() -> tuple[bool, str]:
    out = StringIO()
    try:
        call_command("sweeps_check", stdout=out)
    except CommandError as error:
        assert error.returncode == 1
        return True, out.getvalue()
    return False, out.getvalue()
