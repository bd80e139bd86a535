"""`manage.py staff_account_seal EMAIL… | --all`: seal accounts as they are now (lab/accounts/seal.py).

For an operator on the app host (who holds SECRET_KEY, and so could seal anything anyway): after Django's own
`createsuperuser` or `changepassword`, after a SECRET_KEY rotation (every seal was made under the old key), or
after looking at an account the lab refused as changed outside its tools. Accounts named by e-mail may be
customers too: a customer whose seal does not hold is refused everything, tokens included (so also their own
export and erasure), and before this took only staff accounts nothing could seal them again. `--all` is
every staff account only. Each account sealed is an audit
record (`staff.account_sealed`, actor `system`, rule `operator_command`) naming what it now holds.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from lab.accounts.models import User
from lab.accounts.roles import STAFF_ROLES, user_roles
from lab.accounts.seal import account_seal_set
from lab.audit.records import Entry, audit_append


class Command(BaseCommand):
    help = "Seal accounts as they are now: their roles, password and status become the lab's own again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("emails", nargs="*", help="the accounts' e-mail addresses")
        parser.add_argument("--all", action="store_true", help="every account that holds a staff role")

    def handle(self, *args: Any, **options: Any) -> None:
        emails = [str(email).lower() for email in options["emails"]]
        if bool(emails) == bool(options["all"]):
            raise CommandError("Name the accounts' e-mail addresses, or pass --all.")
        if options["all"]:
            users = list(User.objects.filter(groups__name__in=STAFF_ROLES).distinct().order_by("pk"))
        else:
            users = list(User.objects.filter(email__in=emails, erased_at=None).order_by("pk"))
        missing = sorted(set(emails) - {user.email for user in users})
        if missing:
            raise CommandError(f"No account for: {', '.join(missing)}")
        for user in users:
            with transaction.atomic():
                account_seal_set(user)
                audit_append(
                    Entry(
                        action="staff.account_sealed",
                        actor_id=None,
                        actor_role="system",
                        outcome="done",
                        rule="operator_command",
                        justification=(
                            f"roles {','.join(sorted(user_roles(user) & STAFF_ROLES)) or '(customer)'}; "
                            f"{'active' if user.is_active else 'inactive'}"
                        ),
                        context_type="user",
                        context_id=str(user.public_id),
                    )
                )
            self.stdout.write(f"sealed {user.public_id}")
