"""Beat's sweeps, watched from outside beat.

The reconcile sweeps are what makes every hand-off durable (README, Guarantees), the retention purge what
keeps the policy's promise to delete photos on schedule, the checkpoints what make a gap in the audit trail
visible, and the printer poll the safety net under the printer-events listener. One beat process schedules
them all. If it dies, or no worker takes the `default` queue, or a sweep fails at every run, nothing fails
loudly: lost work simply stops being recovered. So every successful run of a scheduled task is recorded
(`sweep_succeeded`, on Celery's task_postrun: apps.py), and a sweep that has not succeeded for
SWEEP_OVERDUE_FACTOR of its intervals plus SWEEP_OVERDUE_GRACE_SECONDS is overdue: shown on the production
board, on /metrics, and by `manage.py sweeps_check` (an exit status for a monitor), all served by processes
other than beat. The printer-events listener is watched the same way (watched_processes).

A run that succeeds but leaves work for the next one (its result's `work_left`: the retention sweep out of its
time budget) is recorded with what it left, and the sweep is behind until a run leaves none: shown with the
overdue ones (sweeps_overdue), counted by printlab_sweeps_behind. Before, such runs were recorded as plain
successes, and a retention sweep that fell further behind every hour showed nowhere but in a log line.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Task
from django.conf import settings
from django.db import DatabaseError
from django.db.migrations.recorder import MigrationRecorder
from django.db.models.functions import Now

from lab.lib.clock import database_now
from lab.production.models import SweepRun

logger = logging.getLogger(__name__)
# The lab schedules its crontab entries daily (the audit review sample); an interval in seconds otherwise.
CRONTAB_INTERVAL = timedelta(days=1)
WATCH_MIGRATION = "0014_sweeprun"  # made the table of runs
# Long-running processes are watched the same way (watched_processes). Unlike a sweep, one that never ran is
# not overdue: a lab may run without the printer-events listener (the poll is its safety net), so only a
# listener that ran and stopped is shown.
PRINTER_EVENTS = "printer_events"


@dataclass(frozen=True)
class SweepStatus:
    task: str
    interval: timedelta
    last_run_at: datetime.datetime | None  # None: it has never succeeded
    age: timedelta | None  # since its last success, on the database's clock
    overdue: bool
    work_left: int = 0  # what its last run left for the next one (its result's `work_left`)

    @property
    def behind(self) -> bool:
        """Its last run succeeded but left work: it is not keeping up with its schedule."""
        return self.work_left > 0

    @property
    def allowance(self) -> timedelta:
        return sweep_allowance(self.interval)


def sweep_allowance(interval: timedelta) -> timedelta:
    return interval * settings.SWEEP_OVERDUE_FACTOR + timedelta(seconds=settings.SWEEP_OVERDUE_GRACE_SECONDS)


def scheduled_sweeps() -> dict[str, timedelta]:
    """Each task beat schedules, with its interval."""
    from lab.celery import app

    sweeps: dict[str, timedelta] = {}
    for entry in app.conf.beat_schedule.values():
        sweeps[entry["task"]] = _interval(entry["schedule"])
    return sweeps


def _interval(schedule: Any) -> timedelta:
    if isinstance(schedule, int | float):
        return timedelta(seconds=float(schedule))
    if isinstance(schedule, timedelta):
        return schedule
    return CRONTAB_INTERVAL


def watched_processes() -> dict[str, timedelta]:
    """Each watched long-running process, with how often it records that it is alive: the printer-events
    listener, each time it reads its sources."""
    from lab.production.listener import SOURCE_REFRESH_SECONDS  # the listener imports this module

    return {PRINTER_EVENTS: timedelta(seconds=SOURCE_REFRESH_SECONDS)}


def watched() -> dict[str, timedelta]:
    """Every scheduled sweep and every watched process, with its interval."""
    return {**scheduled_sweeps(), **watched_processes()}


def sweep_record(task: str, *, work_left: int = 0) -> None:
    """One UPDATE per run (an INSERT the first time a task ever runs); `work_left`: what the run left."""
    if not SweepRun.objects.filter(task=task).update(last_run_at=Now(), work_left=work_left):
        now = database_now()
        SweepRun.objects.get_or_create(
            task=task, defaults={"first_run_at": now, "last_run_at": now, "work_left": work_left}
        )


def work_left_of(result: object) -> int:
    """What a run's result says it left for the next run: its `work_left` (a dict's), 0 when it says none."""
    if not isinstance(result, dict):
        return 0
    left = result.get("work_left", 0)
    return left if isinstance(left, int) and not isinstance(left, bool) and left > 0 else 0


def sweep_succeeded(
    *, task: Task[Any, Any], state: str | None = None, retval: object = None, **_: object
) -> None:
    """Celery's task_postrun (connected in apps.py): a scheduled task that finished without an error is
    recorded, with what its result says it left for the next run. Not for a task run eagerly inside a
    caller's transaction (tests)."""
    if state != "SUCCESS" or getattr(task.request, "is_eager", False) or task.name not in scheduled_sweeps():
        return
    work_left = work_left_of(retval)
    if work_left:
        logger.warning("sweep behind its schedule task=%s work_left=%d", task.name, work_left)
    try:
        sweep_record(task.name, work_left=work_left)
    except DatabaseError as error:  # the run's own work is done; a missed record only ages the sweep
        logger.warning("sweep run not recorded task=%s error=%s", task.name, type(error).__name__)


def sweeps_status() -> list[SweepStatus]:
    """Every scheduled sweep and watched process, judged on the database's clock (two queries; three while
    nothing has run).

    A sweep that never ran is overdue once the sweeps that did have run for longer than its allowance (beat
    has been up long enough to have run it); when none ever ran, once the lab has been installed (the
    migration that began the watch applied) for longer than its allowance: nothing runs them.
    """
    now = database_now()
    runs = {run.task: run for run in SweepRun.objects.all()}
    running_since = min((run.first_run_at for run in runs.values()), default=None) or _watched_since()
    processes = watched_processes()
    statuses = []
    for task, interval in sorted(watched().items()):
        run = runs.get(task)
        allowance = sweep_allowance(interval)
        if run is not None:
            age = now - run.last_run_at
            statuses.append(
                SweepStatus(
                    task, interval, run.last_run_at, age, overdue=age > allowance, work_left=run.work_left
                )
            )
        elif task in processes:
            statuses.append(SweepStatus(task, interval, None, None, overdue=False))
        else:
            overdue = running_since is None or now - running_since > allowance
            statuses.append(SweepStatus(task, interval, None, None, overdue=overdue))
    return statuses


def _watched_since() -> datetime.datetime | None:
    """When the table of runs was made: a fresh install is not overdue before beat had time to run."""
    return (
        MigrationRecorder.Migration.objects.filter(app="production", name=WATCH_MIGRATION)
        .values_list("applied", flat=True)
        .first()
    )


def sweeps_overdue() -> list[SweepStatus]:
    """The sweeps someone must look at: overdue, or behind (their last run left work)."""
    return [status for status in sweeps_status() if status.overdue or status.behind]
