"""Loaded at start-up by a process whose PYTHONPATH holds this folder (tests/support/clock.py): the lab's
clock, django.utils.timezone.now, reads LAB_TEST_CLOCK_OFFSET_SECONDS off the host's, as on a host whose clock
is wrong. Celery's own timers keep the true time (they run on the monotonic clock anyway)."""

import datetime
import os

import django.utils.timezone

_offset = datetime.timedelta(seconds=float(os.environ.get("LAB_TEST_CLOCK_OFFSET_SECONDS", "0")))
_true_now = django.utils.timezone.now


def _now() -> datetime.datetime:
    return _true_now() + _offset


django.utils.timezone.now = _now
