"""How far retention runs behind its schedule: per rule, the items due more than one sweep's lag ago and still
here (the /metrics gauge printlab_retention_due_past_schedule)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from lab.customer_data.retention import retention_schedule_lag
from lab.customer_data.retention_rules import RetentionPolicy, retention_due

# A count of the gauge stops here: enough to say how far behind, cheap when far.
DUE_LATE_CAP = 10_000


def retention_due_late(*, now: datetime | None = None, cap: int = DUE_LATE_CAP) -> dict[str, int]:
    """For each rule of the sweep (and the expiry of unpaid orders): how many items fell due under it more
    than retention_schedule_lag() ago and are still here, at most `cap` each (the /metrics gauge
    printlab_retention_due_past_schedule). Above 0, the sweep is not keeping the schedule the README and the
    privacy policy promise: dead, failing, or behind.

    Read at every scrape, so bounded: each count stops at `cap`, the photo rules read only photos not yet
    purged (the Asset status index), the expiry only unpaid orders (the Order status index)."""
    policy = RetentionPolicy.from_settings()
    late = (now or timezone.now()) - retention_schedule_lag()
    return {due.name: due.rows.order_by()[:cap].count() for due in retention_due(policy=policy, now=late)}
