"""`manage.py order_seals_upgrade [--pickup REF]…`: migrations orders/0013's and orders/0016's re-seals again
(`seal_the_method_too`, then `seal_with_the_row`), for the orders a web process of the previous version sealed
after they ran.

0013 made an order's seal cover its shipping method as well as its address, and 0016 its row (its primary
key) too; the check accepts no other (lab/orders/models.py: `address_is_sealed`). A previous version's web
process still serving while the upgrade rolls out seals the orders it takes the old way (the address alone
before 0013, the address and method without the row before 0016): once its host is upgraded, each is refused
for good: no packing slip (409 `address_changed_outside_the_lab` at the station), no change of address by its
customer, and the lab's own next write does not seal it again (it seals only a row whose seal holds). Run this
once no web process of the previous version is left (deploy/README.md, Upgrading).

It looks at every order, whenever it was created: no time window. The one it had (from the migration
recorded before 0013) reached back days or weeks when 0013 was the first of its run, and `created_at` is
written by the clock of the web host that placed the order, so an old host whose clock was behind left its
orders out of it, refused for good and not even named. Each order whose seal does not hold as this version
makes it and whose seal of the address alone, or of the address and method without the row, holds is sealed
again (with its method, then with its row), when that method is a parcel's (standard, express). The
trade-offs, accepted: an old seal of the address alone covers no method, so a database administrator who
kept an order's old seal from before the upgrade (a backup) and writes it back with the other parcel method
has this command seal that method (the box is still posted to the sealed address, and handed to nobody); and
an old seal names no row, so one who kept an order's ref, address and old seal and moves them onto another
order's row before this runs has it sealed there (every order sealed is printed with its ref, for a
supervisor to compare with the orders placed during the upgrade). A pickup is different (the box is handed
over at the counter to whoever gives the name on its slip): it is sealed only when the operator names it
(`--pickup REF`, repeatable), once they know the order was placed as a pickup, as `account_seals_upgrade`
makes the operator name the accounts. Every order left is printed with its ref: a pickup not named, and an
order whose seal holds in no format (its address or method written in the database alone, or moved there from
another order's row), for a supervisor to look at. A second run seals nothing more.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.migrations.recorder import MigrationRecorder

from lab.orders.models import Order

METHOD_SEALED_MIGRATION = ("orders", "0013_order_shipping_method_sealed_slip_served_at")
ROW_SEALED_MIGRATION = ("orders", "0016_order_address_seal_names_its_row")
PICKUP = Order.ShippingMethod.PICKUP


class Command(BaseCommand):
    help = (
        "Seal again with their shipping method and row the orders a previous-version web process sealed the "
        "way before orders/0013 or 0016 (pickups only when named with --pickup); run once no such process is "
        "left."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--pickup",
            action="append",
            default=[],
            metavar="REF",
            help="a pickup order to seal again: once you know it was placed as a pickup (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for app, name in (METHOD_SEALED_MIGRATION, ROW_SEALED_MIGRATION):
            if not MigrationRecorder.Migration.objects.filter(app=app, name=name).exists():
                raise CommandError(f"Migration {app}/{name[:4]} has not run here: run migrate first.")
        method = importlib.import_module(f"lab.orders.migrations.{METHOD_SEALED_MIGRATION[1]}")
        row = importlib.import_module(f"lab.orders.migrations.{ROW_SEALED_MIGRATION[1]}")
        named: set[str] = set(options["pickup"])

        # The address alone sealed with its method first (then without the row), then with the row; what
        # holds in neither old format is named by the second step alone.
        left: list[Order] = []
        parcels = Order.objects.exclude(shipping_method=PICKUP)
        pickups = Order.objects.filter(shipping_method=PICKUP, ref__in=named)
        parcels_with_method = method.seal_the_method_too(parcels)
        pickups_with_method = method.seal_the_method_too(pickups)
        parcels_with_row = row.seal_with_the_row(parcels, on_left=left.append)
        pickups_with_row = row.seal_with_the_row(pickups, on_left=left.append)
        for order in sorted(parcels_with_method, key=lambda order: order.ref):
            self.stdout.write(f"sealed with its method {order.ref} ({order.shipping_method})")
        for order in sorted(pickups_with_method, key=lambda order: order.ref):
            self.stdout.write(f"sealed with its method {order.ref} ({PICKUP}), named by the operator")
        for order in sorted(parcels_with_row, key=lambda order: order.ref):
            self.stdout.write(f"sealed with its row {order.ref} ({order.shipping_method})")
        for order in sorted(pickups_with_row, key=lambda order: order.ref):
            self.stdout.write(f"sealed with its row {order.ref} ({PICKUP}), named by the operator")

        unnamed: list[str] = []
        others = (
            Order.objects.filter(shipping_method=PICKUP)
            .exclude(ref__in=named)
            .only(*row.SEALED_FIELDS)
            .order_by("pk")
        )
        for order in others.iterator(chunk_size=row.BATCH):
            if not order.shipping_address or row.sealed_with_its_row(order):
                continue
            if method.sealed_the_old_way(order) or row.sealed_without_its_row(order):
                unnamed.append(order.ref)
            else:
                left.append(order)
        for ref in sorted(unnamed):
            self.stdout.write(
                f"left refused {ref} ({PICKUP}): its old seal covers no method or names no row, and the "
                f"database alone could have set the one or moved it from another order; once you know it was "
                f"placed as a pickup, as this order: order_seals_upgrade --pickup {ref}"
            )
        for order in sorted(left, key=lambda order: order.ref):
            self.stdout.write(
                f"left refused {order.ref}: its seal holds in no format (its address or method was written "
                "in the database alone, or moved there from another order's row); a supervisor looks at it"
            )

        found = set(Order.objects.filter(ref__in=named).values_list("ref", "shipping_method"))
        for ref in sorted(named - {ref for ref, _ in found}):
            self.stdout.write(f"named {ref}: no such order")
        for ref, shipping_method in sorted(found):
            if shipping_method != PICKUP:
                self.stdout.write(f"named {ref}: not a pickup ({shipping_method}), sealed as every parcel is")

        with_method = len(parcels_with_method) + len(pickups_with_method)
        with_row = len(parcels_with_row) + len(pickups_with_row)
        self.stdout.write(
            f"{with_method} order(s) sealed again with their method "
            f"({len(pickups_with_method)} pickup(s) named), {with_row} order(s) sealed again with their row "
            f"({len(pickups_with_row)} pickup(s) named), {len(unnamed)} pickup(s) left until named, "
            f"{len(left)} left refused"
        )
