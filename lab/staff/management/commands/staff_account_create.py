"""`manage.py staff_account_create EMAIL --role admin [--name NAME]`: a staff account from the app host.

How a new lab gets its first lab admin (who then makes every other account in the lab admin). The password
is asked twice at the terminal (or read from the file `--password-file` names, for automation) and checked
by the password validators; the account is sealed (lab/accounts/seal.py) and its creation is an audit record
(`staff.account_created`, actor `system`, rule `operator_command`).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from lab.accounts.models import User
from lab.accounts.roles import STAFF_ROLES
from lab.accounts.seal import account_seal_set, email_as_stored
from lab.audit.records import Entry, audit_append


class Command(BaseCommand):
    help = "Create a staff account (the first lab admin, typically) with its roles; asks for its password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--role", action="append", required=True, choices=sorted(STAFF_ROLES))
        parser.add_argument("--name", default="", help="the person's full name")
        parser.add_argument("--password-file", help="read the password from this file instead of asking")

    def handle(self, *args: Any, **options: Any) -> None:
        email = email_as_stored(str(options["email"]))
        if User.objects.filter(email=email).exists():
            raise CommandError(f"An account with the e-mail address {email} exists already.")
        password = self._password(options.get("password_file"))
        user = User(email=email, full_name=options["name"])
        try:
            validate_password(password, user=user)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        roles = sorted(set(options["role"]))
        with transaction.atomic():
            user = User.objects.create_user(email, password, full_name=options["name"])
            for role in roles:
                user.groups.add(Group.objects.get_or_create(name=role)[0])
            account_seal_set(user, roles=roles)
            audit_append(
                Entry(
                    action="staff.account_created",
                    actor_id=None,
                    actor_role="system",
                    outcome="done",
                    rule="operator_command",
                    justification=f"created; roles - -> {','.join(roles)}",
                    context_type="user",
                    context_id=str(user.public_id),
                )
            )
        self.stdout.write(f"created {user.public_id} ({', '.join(roles)})")

    def _password(self, path: str | None) -> str:
        if path:
            return Path(path).read_text().strip()
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("The two passwords differ.")
        return first
