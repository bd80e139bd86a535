"""`manage.py staff_account_seal EMAIL… | --all | --old-seals [EMAIL…]`: seal accounts as they are now
(lab/accounts/seal.py).

For an operator on the app host (who holds SECRET_KEY, and so could seal anything anyway): after Django's own
`createsuperuser` or `changepassword`, after a SECRET_KEY rotation (every seal was made under the old key), or
after looking at an account the lab refused as changed outside its tools. Accounts named by e-mail may be
customers too: a customer whose seal does not hold is refused everything, tokens included (so also their own
export and erasure), and before this took only staff accounts nothing could seal them again. `--all` is
every staff account only. Each account sealed is an audit
record (`staff.account_sealed`, actor `system`, rule `operator_command`) naming what it now holds.

Sealing ends every API token of the account, in the same transaction: a token's validity is its binding (of
the public id and the key, no password) and the account's seal, so sealing again after `changepassword`
brought back every token of before, the thief's whose holder the reset was for included. A customer's webhook
endpoints are deactivated too (any token could register one, and it kept receiving the account's tracking
numbers); the owner turns on those they recognise. On the customer's security log as `token_revoked`
(reason `operator_reseal`, with both counts). Staff hold no token (none is issued to them and one left from
before is refused), so for them this only removes, on the record, a token row left from when the account was
a customer, which would come back if the staff role were taken away; their endpoints are left as they are
(`--all` follows a key rotation, not a reset).

`--old-seals` is `manage.py account_seals_upgrade` (its command calls this one): it seals again with their row
only the accounts whose seal is in the format before accounts/0009 and that the audit log (records whose mac
holds) shows the lab's tools sealed since 0009 ran, and those named (lab/accounts/seal.py
`account_seals_upgrade`); the others are printed with their e-mail, to check and name; each is an audit record
(`staff.account_sealed`, rule `account_seals_upgrade`) saying why it was taken. Its tokens stay (the seal is
the one the lab made; only its format changes).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from lab.accounts.models import SecurityEvent, User
from lab.accounts.roles import STAFF_ROLES, user_roles
from lab.accounts.seal import account_seal_set, account_seals_upgrade, email_as_stored, keyed_seal_applied_at
from lab.accounts.services import account_access_end
from lab.audit.configured import record_key
from lab.audit.models import AuditRecord
from lab.audit.records import Entry, audit_append, record_mac_holds

# The lab's own tools that seal an account, as the audit log names them (a previous version's lab admin and
# operator commands during an upgrade).
SEALING_ACTIONS = ("staff.account_created", "staff.account_changed", "staff.account_sealed")


class Command(BaseCommand):
    help = "Seal accounts as they are now: their roles, password and status become the lab's own again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("emails", nargs="*", help="the accounts' e-mail addresses")
        parser.add_argument("--all", action="store_true", help="every account that holds a staff role")
        parser.add_argument(
            "--old-seals",
            action="store_true",
            help="accounts sealed the old way during the upgrade (manage.py account_seals_upgrade)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        emails = [email_as_stored(str(email)) for email in options["emails"]]
        if options["old_seals"]:
            if options["all"]:
                raise CommandError("--old-seals takes e-mail addresses, not --all.")
            self._old_seals(emails)
            return
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
            staff_roles = user_roles(user) & STAFF_ROLES
            with transaction.atomic():
                account_seal_set(user)
                ended = account_access_end(user=user, webhooks=not staff_roles)
                if not staff_roles or ended.tokens_revoked:
                    SecurityEvent.objects.create(
                        kind=SecurityEvent.Kind.TOKEN_REVOKED,
                        channel=SecurityEvent.Channel.API,
                        user=user,
                        detail={
                            "reason": "operator_reseal",
                            "tokens_revoked": ended.tokens_revoked,
                            "webhook_endpoints_deactivated": ended.webhook_endpoints_deactivated,
                        },
                    )
                audit_append(
                    Entry(
                        action="staff.account_sealed",
                        actor_id=None,
                        actor_role="system",
                        outcome="done",
                        rule="operator_command",
                        justification=(
                            f"roles {','.join(sorted(staff_roles)) or '(customer)'}; "
                            f"{'active' if user.is_active else 'inactive'}"
                        ),
                        context_type="user",
                        context_id=str(user.public_id),
                    )
                )
            self.stdout.write(
                f"sealed {user.public_id}; {ended.tokens_revoked} token(s) revoked, "
                f"{ended.webhook_endpoints_deactivated} webhook endpoint(s) deactivated"
            )

    def _old_seals(self, emails: list[str]) -> None:
        since = keyed_seal_applied_at()
        if since is None:
            raise CommandError("Migration accounts/0009 has not run here: run migrate first.")
        known = set(User.objects.filter(email__in=emails, erased_at=None).values_list("email", flat=True))
        missing = sorted(set(emails) - known)
        if missing:
            raise CommandError(f"No account for: {', '.join(missing)}")
        # The audit log is chained and MACed under a key the database never holds: a record that the lab's own
        # tools sealed an account since 0009 ran cannot be written in the database alone.
        # Each record's mac is checked: one inserted in the database alone is no evidence.
        key = record_key()
        sealed_since = [
            record.context_id
            for record in AuditRecord.objects.filter(
                action__in=SEALING_ACTIONS, context_type="user", occurred_at__gte=since
            ).iterator()
            if record_mac_holds(record, key)
        ]

        def record(user: User, why: str) -> None:
            audit_append(
                Entry(
                    action="staff.account_sealed",
                    actor_id=None,
                    actor_role="system",
                    outcome="done",
                    rule="account_seals_upgrade",
                    justification=(
                        f"sealed again with its row ({why}); "
                        f"roles {','.join(sorted(user_roles(user) & STAFF_ROLES)) or '(customer)'}; "
                        f"{'active' if user.is_active else 'inactive'}"
                    ),
                    context_type="user",
                    context_id=str(user.public_id),
                )
            )

        result = account_seals_upgrade(emails=emails, sealed_since=sealed_since, on_sealed=record)
        for public_id, why in result.upgraded:
            self.stdout.write(f"sealed again with its row {public_id} ({why})")
        for public_id, email in result.left:
            self.stdout.write(
                f"left refused {public_id} {email}: its old seal holds, but nothing shows the upgrade sealed "
                "it (name its e-mail to seal it again, once you know the account is as its owner left it)"
            )
        self.stdout.write(f"{len(result.upgraded)} account(s) sealed again with their row")
