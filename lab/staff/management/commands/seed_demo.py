"""`manage.py seed_demo`: roles, the demo catalog, demo staff users and the demo hot-folder printer.

It lives in staff, the top layer, because it seeds accounts, catalog and production together."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from lab.accounts.roles import Role
from lab.accounts.services import roles_ensure, staff_user_create
from lab.catalog.demo import catalog_seed_demo
from lab.production.demo import printer_seed_demo

DEMO_STAFF = [
    ("technician@lab.example", "Demo Technician", [Role.TECHNICIAN]),
    ("packer@lab.example", "Demo Packer", [Role.PACKER]),
    ("supervisor@lab.example", "Demo Supervisor", [Role.SUPERVISOR]),
    ("auditor@lab.example", "Demo Auditor", [Role.AUDITOR]),
    ("admin@lab.example", "Demo Admin", [Role.ADMIN]),
]
DEMO_PASSWORD = "demo-lab-password"


class Command(BaseCommand):
    help = "Seed roles, the demo catalog, demo staff users and the demo hot-folder printer (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        roles_ensure()
        created = catalog_seed_demo()
        for email, name, roles in DEMO_STAFF:
            staff_user_create(
                email=email, password=DEMO_PASSWORD, full_name=name, roles=[str(r) for r in roles]
            )
        printers = self._seed_printers()
        self.stdout.write(
            f"demo: {created} new products, {len(DEMO_STAFF)} staff users (password {DEMO_PASSWORD!r}), "
            f"printers: {', '.join(printers) or 'none'}"
        )

    def _seed_printers(self) -> list[str]:
        return printer_seed_demo()
