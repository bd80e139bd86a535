"""`manage.py account_seals_upgrade [EMAIL…]`: migration 0009's step again (lab/accounts/seal.py:
`account_seals_upgrade`), for the accounts a web process of the previous version sealed after 0009 ran.

0009 made the seal name the account's row (its primary key), and the check accepts no other. A previous
version's web process still serving while the upgrade rolls out seals the accounts it registers (and those its
admin forms set) without the key: once its host is upgraded, each is refused for good (401 for its tokens,
403 `account_changed_outside_the_lab`, a security event each time). Run this once no web process of the
previous version is left (deploy/README.md, Upgrading).

It seals again with its row only an account whose old-format seal holds AND that the upgrade window could have
sealed so, by evidence the database alone cannot forge: sealed since 0009 ran by the lab's own tools as the
audit log records it under a valid mac (a lab admin's save, an operator's command); any other (a customer a
previous-version process registered meanwhile) only when the operator names its e-mail here. The time 0009 ran
is read from django_migrations, which a DBA can move back: records from before 0009 then count, so a staff
account the lab admin made before the upgrade could lend its moved seal (README, staff accounts). Read what
the command prints: each account it seals, and why. An old seal names no row: a database administrator who
kept their own account's public id, password hash and old seal from before the upgrade, and wrote them onto a
customer's row, had the command seal the customer's account for them (they then signed in with the customer's
e-mail and their own password). Accounts left are printed; accounts whose seal holds in neither format stay
refused; a second run changes nothing. Each account sealed is an audit record (`staff.account_sealed`, rule
`account_seals_upgrade`, saying why it was taken), so the command lives in lab.staff, beside the audit log,
and is `manage.py staff_account_seal --old-seals`, which this calls.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Seal again with their row the accounts sealed the way before accounts/0009 by a previous-version "
        "web process during the upgrade (and those named); run once no such process is left."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "emails", nargs="*", help="accounts to take even if nothing shows the upgrade sealed them"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command(
            "staff_account_seal", "--old-seals", *options["emails"], stdout=self.stdout, stderr=self.stderr
        )
