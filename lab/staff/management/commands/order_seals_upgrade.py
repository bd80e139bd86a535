"""`manage.py order_seals_upgrade [--pickup REF]…`: migration orders/0013's re-seal again
(`seal_the_method_too`), for the orders a web process of the previous version sealed after 0013 ran.

0013 made an order's seal cover its shipping method as well as its address, and the check accepts no other
(lab/orders/models.py: `address_is_sealed`). A previous version's web process still serving while the upgrade
rolls out seals the orders it takes the old way (the address alone): once its host is upgraded, each is
refused for good: no packing slip (409 `address_changed_outside_the_lab` at the station), no change of
address by its customer, and the lab's own next write does not seal it again (it seals only a row whose seal
holds). Run this once no web process of the previous version is left (deploy/README.md, Upgrading).

It looks at every order, whenever it was created: no time window. The one it had (from the migration
recorded before 0013) reached back days or weeks when 0013 was the first of its run, and `created_at` is
written by the clock of the web host that placed the order, so an old host whose clock was behind left its
orders out of it, refused for good and not even named. Each order whose seal does not hold with its method
and whose seal of the address alone holds is sealed again with its method, when that method is a parcel's
(standard, express). The trade-off, accepted: an old seal covers no method, so a database administrator who
kept an order's old seal from before the upgrade (a backup) and writes it back with the other parcel method
has this command seal that method. The change is in the database's own record, the box is still posted to the
sealed address, and it is handed to nobody. A pickup is different (the box is handed over at the counter to
whoever gives the name on its slip): it is sealed only when the operator names it (`--pickup REF`,
repeatable), once they know the order was placed as a pickup, as `account_seals_upgrade` makes the operator
name the accounts. Every order left is printed with its ref: a pickup not named, and an order whose seal
holds in neither format (its address or method written in the database alone), for a supervisor to look at.
A second run seals nothing more.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.migrations.recorder import MigrationRecorder

from lab.orders.models import Order

METHOD_SEALED_MIGRATION = ("orders", "0013_order_shipping_method_sealed_slip_served_at")
PICKUP = Order.ShippingMethod.PICKUP


class Command(BaseCommand):
    help = (
        "Seal again with their shipping method the orders a previous-version web process sealed the way "
        "before orders/0013 (pickups only when named with --pickup); run once no such process is left."
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
        app, name = METHOD_SEALED_MIGRATION
        if not MigrationRecorder.Migration.objects.filter(app=app, name=name).exists():
            raise CommandError("Migration orders/0013 has not run here: run migrate first.")
        reseal = importlib.import_module(f"lab.orders.migrations.{name}")
        named: set[str] = set(options["pickup"])

        left: list[Order] = []
        parcels = reseal.seal_the_method_too(
            Order.objects.exclude(shipping_method=PICKUP), on_left=left.append
        )
        pickups = reseal.seal_the_method_too(
            Order.objects.filter(shipping_method=PICKUP, ref__in=named), on_left=left.append
        )
        for order in sorted(parcels, key=lambda order: order.ref):
            self.stdout.write(f"sealed with its method {order.ref} ({order.shipping_method})")
        for order in sorted(pickups, key=lambda order: order.ref):
            self.stdout.write(f"sealed with its method {order.ref} ({PICKUP}), named by the operator")

        unnamed: list[str] = []
        others = (
            Order.objects.filter(shipping_method=PICKUP)
            .exclude(ref__in=named)
            .only(*reseal.SEALED_FIELDS)
            .order_by("pk")
        )
        for order in others.iterator(chunk_size=reseal.BATCH):
            if not order.shipping_address or reseal.sealed_with_its_method(order):
                continue
            if reseal.sealed_the_old_way(order):
                unnamed.append(order.ref)
            else:
                left.append(order)
        for ref in sorted(unnamed):
            self.stdout.write(
                f"left refused {ref} ({PICKUP}): its old seal does not cover the method, which the database "
                f"alone could have set; once you know it was placed as a pickup: order_seals_upgrade "
                f"--pickup {ref}"
            )
        for order in sorted(left, key=lambda order: order.ref):
            self.stdout.write(
                f"left refused {order.ref}: its seal holds in neither format (its address or method was "
                "written in the database alone); a supervisor looks at it"
            )

        found = set(Order.objects.filter(ref__in=named).values_list("ref", "shipping_method"))
        for ref in sorted(named - {ref for ref, _ in found}):
            self.stdout.write(f"named {ref}: no such order")
        for ref, method in sorted(found):
            if method != PICKUP:
                self.stdout.write(f"named {ref}: not a pickup ({method}), sealed as every parcel is")

        self.stdout.write(
            f"{len(parcels) + len(pickups)} order(s) sealed again with their method "
            f"({len(pickups)} pickup(s) named), {len(unnamed)} pickup(s) left until named, "
            f"{len(left)} left refused"
        )
