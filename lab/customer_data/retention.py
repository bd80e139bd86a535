"""The retention sweep (beat task "privacy.retention_purge", `manage.py retention_purge`): each rule a batch
at a time within the sweep's time budget, then its chores (sessions, orphan keys, sign-ins, mail files)."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from lab.accounts.models import SecurityEvent
from lab.accounts.sessions import sessions_expired_delete
from lab.customer_data.mail_files import MAIL_FILES_KEPT, mail_files_expire
from lab.customer_data.photo_purge import AssetStillNeeded, asset_purge
from lab.customer_data.purged_files import BLOB_DELETION_GRACE, purged_files_delete
from lab.customer_data.raster_purge import raster_purge
from lab.customer_data.retention_rules import (
    RULE_CANCELLED,
    RULE_NEVER_ORDERED,
    RULE_PRINTED_RASTER,
    RULE_SHIPPED,
    RULE_UNPAID,
    Cutoffs,
    RetentionPolicy,
    retention_due,
)
from lab.customer_data.unpaid_expiry import StripeReads, order_expired
from lab.orders.models import Asset
from lab.privacy.models import DataKey

logger = logging.getLogger(__name__)

# A sweep starts no new batch of a rule after this long from its start (each rule's first batch always runs),
# well inside its task's soft time limit (840 s, workers/privacy_tasks.py), the batches under way and the
# sweep's other chores after them included; what is left is logged and taken up by the next sweep. Before, a
# sweep purged one batch per rule (RETENTION_BATCH, 500) and stopped: 12,000 a rule a day at the hourly
# interval, while bench/scale printed ~500,000 rasters a day, so photos and rasters outlived their promised
# retention for good and the disk filled.
SWEEP_TIME_BUDGET_SECONDS = 600.0
# What a sweep reports, always in this order (zeros included), so an operator can compare runs.
SWEEP_COUNTS = (
    "orders_expired",
    RULE_SHIPPED,
    RULE_UNPAID,
    RULE_CANCELLED,
    RULE_NEVER_ORDERED,
    RULE_PRINTED_RASTER,
    "still_needed",
    "sessions_expired",
    "orphan_keys_destroyed",
    "unknown_account_events_deleted",
)
# Rows whose handling raised something no rule foresees (a bug, a file no reader expected): each logged at
# ERROR by rule, id and error type, and counted under this name and in `work_left` (the row is left for the
# next sweep, so the sweep is behind on the board, for `sweeps_check` and in printlab_sweeps_behind until a
# run gets through it), while the rest of its batch, the later rules and the chores still run. Before, one
# such row (a photo's blob cut short after its magic: ValueError from the cipher) ended the whole sweep, and
# as rows go oldest first, every hourly sweep after it ended at the same row: nothing behind it ever ran.
ROWS_FAILED = "rows_failed"
# Failed sign-ins that found no account (by the e-mail's SHA-256, with the client's address) are kept this
# long for an operator looking into a guessing attack, then deleted. The sign-in limits never read them (they
# count in the shared cache, over SIGNIN_WINDOW_SECONDS); an account's own events go with the account.
UNKNOWN_ACCOUNT_EVENTS_KEPT = timedelta(days=7)
# A data key no photo row names after this long belongs to an upload whose web process was killed between the
# key (committed on its own) and the photo's row: gunicorn ends a request after 60 s, so it never comes.
ORPHAN_KEY_GRACE = timedelta(hours=1)


def _asset_purge_counted(asset_id: uuid.UUID, *, rule: str, cutoffs: Cutoffs) -> str:
    try:
        return rule if asset_purge(asset_id=asset_id, rule=rule, cutoffs=cutoffs) else "already_purged"
    except AssetStillNeeded:
        return "still_needed"


def _after(order: tuple[str, ...], row: tuple[object, ...]) -> Q:
    """The rows after `row` in `order` (its fields, the last one unique): a keyset, (a, b) > (x, y)."""
    later = Q(**{f"{order[-1]}__gt": row[-1]})
    for name, value in zip(reversed(order[:-1]), reversed(row[:-1]), strict=True):
        later = Q(**{f"{name}__gt": value}) | (Q(**{name: value}) & later)
    return later


@dataclass
class _RuleRun:
    """One rule's work in a sweep, done a batch (RETENTION_BATCH) at a time in a fixed order, each batch read
    after the last row of the one before: a row refused (kept by an order meanwhile, purged by another run)
    is tried once a sweep, and never comes back to hold up the rows behind it."""

    name: str  # what the sweep's counts call it
    rows: QuerySet[Model]  # ordered by `order`
    order: tuple[str, ...]  # the last field unique (the primary key), and handed to `handle`
    handle: Callable[[Any], str | None]  # one row's key: the count it adds to, None for none
    batch: int
    # Whether a batch stops between rows once its time is spent (after one row at least): a row that may wait
    # on the outside world (the expiry's Stripe read) would otherwise run a batch far past its share.
    is_timed_by_row: bool = False
    batches: int = 0
    drained: bool = False
    last: tuple[object, ...] | None = field(default=None)

    def _rest(self) -> QuerySet[Model]:
        return self.rows if self.last is None else self.rows.filter(_after(self.order, self.last))

    def batch_run(self, counts: Counter[str], *, until: float) -> None:
        page: list[tuple[object, ...]] = list(self._rest().values_list(*self.order)[: self.batch])
        done = 0
        for row in page:
            if done and self.is_timed_by_row and time.monotonic() >= until:
                break
            if (counted := self._row_handle(row[-1])) is not None:
                counts[counted] += 1
            done += 1
        self.batches += 1
        self.drained = done == len(page) and len(page) < self.batch
        if done:
            self.last = page[done - 1]

    def _row_handle(self, key: Any) -> str | None:
        """`handle` of one row; a row that raises is ROWS_FAILED (logged), not the end of the sweep. The
        task's soft time limit still ends it: the sweep is out of time, not the row at fault."""
        try:
            return self.handle(key)
        except SoftTimeLimitExceeded:
            raise
        except Exception as error:
            # By ids, error type and where it was raised only: an error's text can name a path or a person.
            frames = traceback.extract_tb(error.__traceback__)
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
            logger.error(
                "retention row failed, left for the next sweep rule=%s id=%s error=%s at=%s",
                self.name,
                key,
                type(error).__name__,
                where,
            )
            return ROWS_FAILED

    def left(self) -> int:
        """How many rows this sweep did not get to (counted only when asked: after the budget ran out)."""
        return 0 if self.drained else self._rest().count()


def _runs_drain(runs: list[_RuleRun], counts: Counter[str], *, started: float) -> None:
    """Each rule in turn, in the order given (as before: a photo due under two rules is purged under the
    first), a batch at a time until it is drained or its share of SWEEP_TIME_BUDGET_SECONDS from `started` is
    spent: what is left of the budget, divided among it and the rules after it, so no rule's backlog takes
    the others' time, and a rule drained early leaves its time to the next. Each rule's first batch runs
    whatever the time (a sweep does at least what it did before), but for a rule timed by row (the expiry):
    its first row."""
    deadline = started + SWEEP_TIME_BUDGET_SECONDS
    for index, run in enumerate(runs):
        now = time.monotonic()
        share_ends = now + max(deadline - now, 0.0) / (len(runs) - index)
        run.batch_run(counts, until=share_ends)
        while not run.drained and time.monotonic() < share_ends:
            run.batch_run(counts, until=share_ends)


def orphan_keys_destroy(*, grace: timedelta, limit: int) -> int:
    """Destroy the data keys made more than `grace` ago that no photo row names: an upload commits its key on
    its own, writes the encrypted photo, then the photo's row, and a web process killed in between (SIGKILL,
    the OOM killer, a host lost) left a live key and a readable blob that no purge or erasure could reach.

    A key's age is judged on the database's clock, which dates it (DataKey.created_at): judged on this host's,
    a retention worker whose clock ran two hours ahead of the web host's destroyed the key of an upload still
    in progress, and the photo stored under it a moment later was lost.

    The keys are locked (skipping any an upload holds) and checked against the photo rows in a later
    statement, which sees every row committed before the locks were taken."""
    with transaction.atomic():
        candidates = list(
            DataKey.objects.select_for_update(skip_locked=True)
            .filter(destroyed_at__isnull=True, created_at__lt=Now() - grace)
            .exclude(pk__in=Asset.objects.filter(data_key__isnull=False).values("data_key_id"))
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        named = set(Asset.objects.filter(data_key_id__in=candidates).values_list("data_key_id", flat=True))
        orphans = [pk for pk in candidates if pk not in named]
        destroyed = DataKey.objects.filter(pk__in=orphans).update(wrapped_key=None, destroyed_at=Now())
    if destroyed:
        logger.warning("orphan data keys destroyed count=%d", destroyed)
    return destroyed


def unknown_account_events_delete(*, before: datetime) -> int:
    """Delete the sign-in events of no account recorded before `before` (UNKNOWN_ACCOUNT_EVENTS_KEPT)."""
    deleted, _ = SecurityEvent.objects.filter(user=None, created_at__lt=before).delete()
    return deleted


def retention_schedule_lag() -> timedelta:
    """How long after it falls due an item must be gone: one sweep interval (RETENTION_SWEEP_SECONDS) for the
    next sweep to start, and its time budget for it to get there."""
    interval = float(getattr(settings, "RETENTION_SWEEP_SECONDS", 3600))
    return timedelta(seconds=interval + SWEEP_TIME_BUDGET_SECONDS)


def retention_sweep(*, now: datetime | None = None, policy: RetentionPolicy | None = None) -> dict[str, int]:
    """Apply every retention rule, each a batch (RETENTION_BATCH) at a time until nothing it covers is left or
    SWEEP_TIME_BUDGET_SECONDS is spent; returns how many photos/rasters each rule purged, and `work_left`
    (only when there is any) how many the budget left for the next sweep (logged by rule), and the rows that
    raised (`rows_failed`, each logged at ERROR; counted in `work_left` too)."""
    started = time.monotonic()
    policy = policy or RetentionPolicy.from_settings()
    now = now or timezone.now()
    cutoffs = Cutoffs.at(policy=policy, now=now)
    counts: Counter[str] = Counter(dict.fromkeys(SWEEP_COUNTS, 0))
    due = retention_due(policy=policy, now=now)
    # First, in its share of the budget (one among the rules): the files of purges killed after their commit.
    if purged_files_deleted := purged_files_delete(
        before=now - BLOB_DELETION_GRACE,
        limit=policy.batch,
        until=started + SWEEP_TIME_BUDGET_SECONDS / (len(due) + 1),
    ):
        counts["purged_files_deleted"] = purged_files_deleted
    raster_cutoff = now - timedelta(days=policy.raster_days)
    reads = StripeReads()
    handles: dict[str, Callable[[Any], str | None]] = {
        "orders_expired": lambda pk: "orders_expired" if order_expired(pk, reads=reads) else None,
        **{
            rule: partial(_asset_purge_counted, rule=rule, cutoffs=cutoffs)
            for rule in (RULE_SHIPPED, RULE_UNPAID, RULE_CANCELLED, RULE_NEVER_ORDERED)
        },
        RULE_PRINTED_RASTER: lambda pk: (
            RULE_PRINTED_RASTER if raster_purge(job_id=pk, cutoff=raster_cutoff) else None
        ),
    }
    expiring, *runs = [
        _RuleRun(
            name=rule.name,
            rows=rule.rows,
            order=rule.order,
            handle=handles[rule.name],
            batch=policy.batch,
            is_timed_by_row=rule.name == "orders_expired",
        )
        for rule in due
    ]
    _runs_drain([expiring, *runs], counts, started=started)
    if reads.orders_left:
        counts["orders_left_stripe_silent"] = reads.orders_left
    left = {run.name: run.left() for run in [expiring, *runs]}
    if work_left := sum(left.values()):
        # For the next sweep; visible here (and in the counts) as long as retention runs behind its schedule.
        logger.warning(
            "retention sweep out of time after %.0f s, left for the next sweep: %s (done: %s)",
            time.monotonic() - started,
            " ".join(f"{name}={count}" for name, count in left.items() if count),
            " ".join(f"{run.name}={counts[run.name]}" for run in [expiring, *runs]),
        )
        counts["work_left"] = work_left
    if counts[ROWS_FAILED]:  # left for the next sweep, as the rows out of time are: the sweep is behind
        counts["work_left"] += counts[ROWS_FAILED]
    counts["sessions_expired"] = sessions_expired_delete()
    # Keys of killed uploads are few; the next batch only while a batch came back full and time is left.
    destroyed = orphan_keys_destroy(grace=ORPHAN_KEY_GRACE, limit=policy.batch)
    counts["orphan_keys_destroyed"] = destroyed
    while destroyed == policy.batch and time.monotonic() - started <= SWEEP_TIME_BUDGET_SECONDS:
        destroyed = orphan_keys_destroy(grace=ORPHAN_KEY_GRACE, limit=policy.batch)
        counts["orphan_keys_destroyed"] += destroyed
    counts["unknown_account_events_deleted"] = unknown_account_events_delete(
        before=now - UNKNOWN_ACCOUNT_EVENTS_KEPT
    )
    # Reported when there were any (demo mode's mail files, work left), after the counts every run reports.
    if mail_files_deleted := mail_files_expire(before=now - MAIL_FILES_KEPT):
        counts["mail_files_deleted"] = mail_files_deleted
    result = {key: counts[key] for key in (*SWEEP_COUNTS, *sorted(set(counts) - set(SWEEP_COUNTS)))}
    logger.info("retention sweep %s", " ".join(f"{key}={value}" for key, value in result.items()))
    return result
