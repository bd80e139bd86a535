"""`manage.py order_seals_upgrade`: migration orders/0013's re-seal again (`seal_the_method_too`), for the
orders a web process of the previous version placed after 0013 ran.

0013 made an order's seal cover its shipping method as well as its address, and the check accepts no other
(lab/orders/models.py: `address_is_sealed`). A previous version's web process still serving while the upgrade
rolls out seals the orders it takes the old way (the address alone): once its host is upgraded, each is
refused for good: no packing slip (409 `address_changed_outside_the_lab` at the station), no change of
address by its customer, and the lab's own next write does not seal it again (it seals only a row whose seal
holds). Run this once no web process of the previous version is left (deploy/README.md, Upgrading).

It seals again, with its method, each order created since 0013 began whose seal of the address alone holds,
and prints each (its ref and its method); an order there whose seal holds in neither format (its address or
method written in the database alone) is left refused and printed, for a supervisor to look at. The start is
read from django_migrations: 0013 records only when it ended, so the start is when the migration recorded
before it ended (0013 seals by primary key, and an order placed while it ran could be passed by). Orders
created before were all sealed by 0013 itself, and are not looked at. `created_at` is a column the database
alone writes, and a seal of the address alone covers no method: a database administrator who kept an old
seal of an order from before the upgrade, wrote it back with another method (a "pickup") and moved the
order's `created_at` into the window had the command seal that method. Read what it prints, the pickups
first. A second run changes nothing.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.migrations.recorder import MigrationRecorder

from lab.orders.models import Order

METHOD_SEALED_MIGRATION = ("orders", "0013_order_shipping_method_sealed_slip_served_at")


def method_sealed_since() -> datetime | None:
    """When migration 0013 (the seal covers the method) began here at the latest: when the migration recorded
    before it ended (0013's own time if none). None if 0013 has not run."""
    app, name = METHOD_SEALED_MIGRATION
    applied = MigrationRecorder.Migration.objects.filter(app=app, name=name).values_list("applied", flat=True)
    ended: datetime | None = applied.first()
    if ended is None:
        return None
    before: datetime | None = (
        MigrationRecorder.Migration.objects.filter(applied__lt=ended)
        .order_by("-applied")
        .values_list("applied", flat=True)
        .first()
    )
    return before or ended


class Command(BaseCommand):
    help = (
        "Seal again with their shipping method the orders a previous-version web process sealed the way "
        "before orders/0013 during the upgrade; run once no such process is left."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        since = method_sealed_since()
        if since is None:
            raise CommandError("Migration orders/0013 has not run here: run migrate first.")
        reseal = importlib.import_module(f"lab.orders.migrations.{METHOD_SEALED_MIGRATION[1]}")
        left: list[Order] = []
        sealed = reseal.seal_the_method_too(Order.objects.filter(created_at__gte=since), on_left=left.append)
        for order in sorted(sealed, key=lambda order: (order.shipping_method != "pickup", order.ref)):
            self.stdout.write(f"sealed with its method {order.ref} ({order.shipping_method})")
        for order in left:
            self.stdout.write(
                f"left refused {order.ref}: its seal holds in neither format (its address or method was "
                "written in the database alone); a supervisor looks at it"
            )
        self.stdout.write(
            f"{len(sealed)} order(s) created since {since.isoformat()} sealed again with their method, "
            f"{len(left)} left refused"
        )
