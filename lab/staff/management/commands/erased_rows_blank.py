"""`manage.py erased_rows_blank`: migration orders/0014's step again (`blank_what_erasure_and_purge_blank`),
for the rows that processes of the previous version erased or purged after 0014 ran.

0014 blanked, once, what an erasure and a purge blank since commit e978d66 on the rows erased or purged
before: an erased order's `address_sealed` (an HMAC of its address, which anyone holding SECRET_KEY and a
backup can test guessed addresses against), its items' preflight note quoting the photo's ICC profile
description, and a purged photo's `icc_description`. While the upgrade rolls out, the hosts not yet
upgraded still erase (`DELETE me`) and purge (the hourly retention purge) the previous version's way,
keeping them: 0014 does not run again, so they were kept for good. Run this once no process of the
previous version is left on any host (deploy/README.md, Upgrading); it prints how many rows it blanked.
What it blanks cannot be put back; it blanks only what an erasure or a purge of this version blanks, and a
second run changes nothing.

Migration orders/0017's step too (`erased_orders_keys_and_floor_notes_blank`), for the orders a previous
version's processes erase after it ran: their idempotency keys (a guest's scope is a hash of the e-mail, the
request hash covers the address, the key is the client's text) and the floor's notes on their print jobs.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db.migrations.recorder import MigrationRecorder

from lab.orders.models import Asset, Order, OrderItem

ERASED_ROWS_MIGRATION = ("orders", "0014_erased_rows_blanked")
ERASED_KEYS_MIGRATION = ("orders", "0017_erased_orders_keys_and_floor_notes_blanked")


class Command(BaseCommand):
    help = (
        "Blank the address seals and ICC profile descriptions kept by the orders erased and the photos "
        "purged by previous-version processes after orders/0014 ran, and the idempotency keys and floor "
        "notes of the orders they erased after orders/0017 ran; run once no such process is left."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for app, name in (ERASED_ROWS_MIGRATION, ERASED_KEYS_MIGRATION):
            if not MigrationRecorder.Migration.objects.filter(app=app, name=name).exists():
                raise CommandError(f"Migration {app}/{name[:4]} has not run here: run migrate first.")
        blank = importlib.import_module(f"lab.orders.migrations.{ERASED_ROWS_MIGRATION[1]}")
        keys_blank = importlib.import_module(f"lab.orders.migrations.{ERASED_KEYS_MIGRATION[1]}")
        seals = Order.objects.filter(is_anonymized=True).exclude(address_sealed="").count()
        descriptions = Asset.objects.filter(status=blank.PURGED).exclude(icc_description="").count()
        notes = (
            OrderItem.objects.filter(order__is_anonymized=True, preflight__color_note__startswith="embedded")
            .exclude(preflight__color_note=blank.ERASED_COLOR_NOTE)
            .count()
        )
        # The app's registry for the migration's historical one; its step alters no schema (no editor).
        blank.blank_what_erasure_and_purge_blank(apps, None)
        keys, floor_notes = keys_blank.erased_orders_keys_and_floor_notes_blank(apps)
        self.stdout.write(
            f"{seals} erased order(s) without their address seal, {notes} item note(s) without the ICC "
            f"profile's description, {descriptions} purged photo(s) without their ICC profile's description, "
            f"{keys} idempotency key(s) of erased orders naming only their order, {floor_notes} print job "
            "note(s) of erased orders in the lab's own words"
        )
