"""`manage.py account_seals_upgrade`: migration 0009's step again (lab/accounts/seal.py:
`account_seals_upgrade`), for the accounts a web process of the previous version sealed after 0009 ran.

0009 made the seal name the account's row (its primary key), and the check accepts no other. A previous
version's web process still serving while the upgrade rolls out seals the accounts it registers (and those its
admin forms set) without the key: once its host is upgraded, each is refused for good (401 for its tokens,
403 `account_changed_outside_the_lab`, a security event each time). Run this once no web process of the
previous version is left (deploy/README.md, Upgrading): each account whose seal in the old format holds is
sealed again with its row; accounts whose seal holds in neither format stay refused, and a second run changes
nothing. Run it for an upgrade, not routinely: a seal in the old format names no row.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from lab.accounts.seal import account_seals_upgrade


class Command(BaseCommand):
    help = (
        "Seal again with their row the accounts sealed the way before accounts/0009 (by a previous-version "
        "web process during the upgrade); run once no such process is left."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        upgraded = account_seals_upgrade()
        for public_id in upgraded:
            self.stdout.write(f"sealed again with its row {public_id}")
        self.stdout.write(f"{len(upgraded)} account(s) sealed again with their row")
