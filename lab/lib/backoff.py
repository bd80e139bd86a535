"""The one exponential backoff: the wait after a failed attempt, doubling from `first` up to `cap`."""

from __future__ import annotations

from datetime import timedelta


def backoff_delay(*, attempt: int, first: timedelta, cap: timedelta) -> timedelta:
    """Wait after failed attempt `attempt` (1-based): first, 2x, 4x, … at most `cap`."""
    exponent = min(max(attempt - 1, 0), 32)  # 2**32 times any first delay is far past any cap
    factor: int = 2**exponent  # an int: the exponent is never negative
    return min(first * factor, cap)
