"""`manage.py retention_purge`: apply the retention schedule now (the beat task runs the same sweep).

Prints how many photos and rasters each rule purged, and how many were kept because an order needs them.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from lab.customer_data.retention import retention_sweep
from lab.customer_data.retention_rules import RetentionPolicy


class Command(BaseCommand):
    help = "Purge photos and rasters whose retention period is over (crypto-shredding their data keys)."

    def handle(self, *args: Any, **options: Any) -> None:
        policy = RetentionPolicy.from_settings()
        self.stdout.write(
            f"retention: shipped orders {policy.shipped_days} d, rasters {policy.raster_days} d after"
            f" printing, unpaid/cancelled orders {policy.unpaid_days} d,"
            f" photos never ordered {policy.unused_days} d"
        )
        for name, count in retention_sweep(policy=policy).items():
            self.stdout.write(f"{name}: {count}")
