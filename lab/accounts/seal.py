"""An account's seal: proof that its staff roles, its password and whether it is active were last set by the
lab's own tools, not by a write in the database.

A database administrator can write any row: give a technician the supervisor role, put a password hash they
made on someone else's account (a colleague's, a customer's), or re-activate a dismissed employee's, then sign
in as that person and look at photos through the gate, recorded under that person's name. The seal is an HMAC
of the account's public id, its staff roles, whether it is active and its password hash, under a key the
database never holds (Django's SECRET_KEY, salted for this use). The tools that set those write the seal with
the change (registration, My Account's password change, the lab admin's account and password forms,
`seed_demo`, `manage.py staff_account_seal`, and a sign-in that upgrades the password's hash). Every staff
page and the auditors' API check it (`lab.staff.middleware`, `api.audit_views`), and so do the issue of a
customer's API token (`lab.accounts.tokens`) and My Account's password change: an account changed in the
database alone cannot be used until the lab seals it again, and each refusal is a security event (for staff
also an audit record). A tool that seals an account as a side effect of its own change (a password change, a
hash upgrade) seals it again only if its seal held: else it would make a role or a hash written in the
database the lab's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lab.accounts.errors import AccountError
from lab.accounts.roles import STAFF_ROLES, user_roles
from lab.lib.errors import PermissionDenied
from lab.lib.seals import seal_holds, seal_of

if TYPE_CHECKING:
    from lab.accounts.models import User

logger = logging.getLogger(__name__)

SEAL_SALT = "lab.accounts.account_seal"


def _facts(*, public_id: object, roles: Iterable[str], is_active: bool, password: str) -> str:
    staff_roles = sorted({str(role) for role in roles} & STAFF_ROLES)
    return json.dumps([str(public_id), staff_roles, bool(is_active), password], separators=(",", ":"))


def seal_value(*, public_id: object, roles: Iterable[str], is_active: bool, password: str) -> str:
    """The seal of these facts of an account (primitives: migrations compute it on historical models too)."""
    return seal_of(
        SEAL_SALT, _facts(public_id=public_id, roles=roles, is_active=is_active, password=password)
    )


def _user_facts(user: object, roles: Iterable[str] | None = None) -> str:
    return _facts(
        public_id=user.public_id,  # type: ignore[attr-defined]
        roles=user_roles(user) if roles is None else roles,
        is_active=user.is_active,  # type: ignore[attr-defined]
        password=user.password,  # type: ignore[attr-defined]
    )


def account_seal_of(user: object, *, roles: Iterable[str] | None = None) -> str:
    return seal_of(SEAL_SALT, _user_facts(user, roles))


def account_seal_holds(user: object, *, roles: Iterable[str] | None = None) -> bool:
    """Whether the account is as the lab's tools last set it (under SECRET_KEY or one of its fallbacks).

    `roles`: the roles a caller read once and will seal again, so that what it reseals is exactly what it
    found sealed (by default the user's roles as `user_roles` knows them)."""
    return seal_holds(getattr(user, "account_seal", ""), SEAL_SALT, _user_facts(user, roles))


def account_seal_required(
    user: User, *, client_ip: str | None, refused: str, roles: Iterable[str] | None = None
) -> None:
    """Refuse, on the record, to act for a customer account whose seal does not hold: what the API's sign-in
    answers (no token), and what My Account's password change answers, which would otherwise seal again
    whatever the database now holds (a password hash or a role written there) as the lab's own.

    `refused` says what is not done ("no token is issued for it"); the refusal is a `SecurityEvent`
    (`account_seal_broken`) and 403 `account_changed_outside_the_lab`. Staff accounts are refused on the
    record by `lab.audit.staff_seal`, which also writes the audit record.
    """
    from lab.accounts.models import SecurityEvent

    if account_seal_holds(user, roles=roles):
        return
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.ACCOUNT_SEAL_BROKEN,
        channel=SecurityEvent.Channel.API,
        user=user,
        client_ip=client_ip,
    )
    logger.error("account changed outside the lab refused user=%s", user.public_id)
    raise PermissionDenied(
        AccountError.ACCOUNT_CHANGED_OUTSIDE_THE_LAB,
        f"This account was changed outside the lab's own tools, so {refused}. Please contact the lab.",
    )


def account_seal_set(user: object, *, roles: Iterable[str] | None = None) -> None:
    """Seal the account as it is now (the caller is one of the lab's tools that set roles or passwords)."""
    from lab.accounts.models import User

    seal = account_seal_of(user, roles=roles)
    User.objects.filter(pk=user.pk).update(account_seal=seal)  # type: ignore[attr-defined]
    user.account_seal = seal  # type: ignore[attr-defined]
