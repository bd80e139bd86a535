"""A lab process on a host whose clock is off.

Its clock, django.utils.timezone.now (what the lab reads the time from: claims, events, sweeps), is moved by
the offset at interpreter start-up (tests/support/clock_off/sitecustomize.py), before any of the lab is
imported. Not libfaketime: with Debian's 0.9.10 every timed wait of Python 3.11 (Event.wait, queue.get) either
failed with EINVAL or never returned, so no Celery worker could run under it."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

SITECUSTOMIZE_DIR = Path(__file__).resolve().parent / "clock_off"


def clock_off_by(offset: timedelta, env: dict[str, str]) -> dict[str, str]:
    """`env` for a process whose clock is `offset` off the true time."""
    path = os.pathsep.join(p for p in (str(SITECUSTOMIZE_DIR), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, "LAB_TEST_CLOCK_OFFSET_SECONDS": str(offset.total_seconds())}
