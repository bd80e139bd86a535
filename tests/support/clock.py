"""A lab process on a host whose clock is off, and time passing as the database sees it.

In this process (host_clock_off) django.utils.timezone.now, what the lab reads the time from (claims,
events, sweeps), is moved for the duration of a block. In a child process (clock_off_by) it is moved by the
offset at interpreter start-up (tests/support/clock_off/sitecustomize.py), before any of the lab is
imported. Not libfaketime: with Debian's 0.9.10 every timed wait of Python 3.11 (Event.wait, queue.get) either
failed with EINVAL or never returned, so no Celery worker could run under it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import rest_framework.throttling  # noqa: F401  (see below)
from django.utils import timezone

SITECUSTOMIZE_DIR = Path(__file__).resolve().parent / "clock_off"


def clock_off_by(offset: timedelta, env: dict[str, str]) -> dict[str, str]:
    """`env` for a process whose clock is `offset` off the true time."""
    path = os.pathsep.join(p for p in (str(SITECUSTOMIZE_DIR), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, "LAB_TEST_CLOCK_OFFSET_SECONDS": str(offset.total_seconds())}


@contextmanager
def host_clock_off(offset: timedelta, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run this process as a host whose clock is `offset` off the database's: both clocks the lab reads,
    django.utils.timezone.now and time.time, are moved."""
    # DRF's throttles read `timer = time.time`, a class attribute taken when rest_framework.throttling is
    # first imported (at a worker's first API request): imported inside this block, it took the lambda below,
    # which as a class attribute binds like a method (called with the throttle: TypeError), and every later
    # test of that worker calling the API failed. Imported above, before any block, it keeps the real clock.
    real_now: Callable[[], datetime] = timezone.now
    real_time: Callable[[], float] = time.time
    seconds = offset.total_seconds()
    with monkeypatch.context() as patched:
        patched.setattr(timezone, "now", lambda: real_now() + offset)
        patched.setattr(time, "time", lambda: real_time() + seconds)
        yield


def grants_age(by: timedelta) -> None:
    """`by` passes for every photo grant, on the database's clock, which grants are opened and judged by:
    their times move back."""
    from django.db.models import F

    from lab.audit.models import AccessGrant

    AccessGrant.objects.update(
        created_at=F("created_at") - by, expires_at=F("expires_at") - by, revoked_at=F("revoked_at") - by
    )


def keys_age(by: timedelta) -> None:
    """`by` passes for every data key, on the database's clock, which keys are dated and judged by."""
    from django.db.models import F

    from lab.privacy.models import DataKey

    DataKey.objects.update(created_at=F("created_at") - by)
