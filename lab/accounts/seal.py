"""An account's seal: proof that its staff roles, its password and whether it is active were last set by the
lab's own tools, not by a write in the database.

A database administrator can write any row: give a technician the supervisor role, put a password hash they
made on someone else's account (a colleague's, a customer's), or re-activate a dismissed employee's, then sign
in as that person and look at photos through the gate, recorded under that person's name. The seal is an HMAC
of the account's public id, its staff roles, whether it is active and its password hash, under a key the
database never holds (Django's SECRET_KEY, salted for this use). The tools that set those write the seal with
the change (registration, My Account's password change, the lab admin's account and password forms,
`seed_demo`, `manage.py staff_account_seal`, and a sign-in that upgrades the password's hash). Every staff
page and the auditors' API check it (`lab.staff.middleware`, `api.audit_views`), and so does the issue of a
customer's API token (`lab.accounts.tokens`): an account changed in the database alone cannot be used until
the lab seals it again, and each refusal is a security event (for staff also an audit record).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from lab.accounts.roles import STAFF_ROLES, user_roles
from lab.lib.seals import seal_holds, seal_of

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


def account_seal_holds(user: object) -> bool:
    """Whether the account is as the lab's tools last set it (under SECRET_KEY or one of its fallbacks)."""
    return seal_holds(getattr(user, "account_seal", ""), SEAL_SALT, _user_facts(user))


def account_seal_set(user: object, *, roles: Iterable[str] | None = None) -> None:
    """Seal the account as it is now (the caller is one of the lab's tools that set roles or passwords)."""
    from lab.accounts.models import User

    seal = account_seal_of(user, roles=roles)
    User.objects.filter(pk=user.pk).update(account_seal=seal)  # type: ignore[attr-defined]
    user.account_seal = seal  # type: ignore[attr-defined]
