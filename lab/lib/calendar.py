"""The span of days a person may ask the lab's pages about. Python's dates end at years 1 and 9999, and a
page's arithmetic (a day after `to`, a week before `until`, a rule's lookback) overflowed at the edges: a
500 for `?to=9999-12-31`. Filters outside this span are refused or fall back to their defaults."""

from __future__ import annotations

import datetime

FIRST_DAY = datetime.date(2000, 1, 1)
LAST_DAY = datetime.date(2999, 12, 31)


def day_in_span(day: datetime.date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY


def moment_in_span(moment: datetime.datetime) -> bool:
    return day_in_span(moment.date())


OUT_OF_SPAN = f"Dates from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}."
