"""An account's seal: proof that its staff roles, its password and whether it is active were last set by the
lab's own tools, not by a write in the database.

A database administrator can write any row: give a technician the supervisor role, put a password hash they
made on someone else's account (a colleague's, a customer's), or re-activate a dismissed employee's, then sign
in as that person and look at photos through the gate, recorded under that person's name. The seal is an HMAC
of the account's row (its primary key), its public id, its staff roles, whether it is active and its password
hash, under a key the database never holds (Django's SECRET_KEY, salted for this use). The primary key is in
it because the rows that name an account (photos, orders, roles, tokens) name it by that key: without it, the
public id, password hash and seal of one account, moved together onto another's row, held there, and the DBA
signed in with the other account's e-mail and their own password (migration 0009 sealed again, with the key,
the accounts whose earlier seal held, and `manage.py account_seals_upgrade` does it again for those the audit
log shows a previous-version process sealed after it ran, and those the operator names, and only those:
`account_seals_upgrade`). The tools that set
those write the seal with the change (registration, My Account's password change, the lab admin's account and
password forms, `seed_demo`, `manage.py staff_account_seal`, and a sign-in that upgrades the password's hash).
Every staff page and the auditors' API check it (`lab.staff.middleware`, `api.audit_views`), and so do the
issue of a customer's API token (`lab.accounts.tokens`) and My Account's password change: an account changed
in the database alone cannot be used until the lab seals it again, and each refusal is a security event (for
staff also an audit record). A tool that seals an account as a side effect of its own change (a password
change, a hash upgrade) seals it again only if its seal held: else it would make a role or a hash written in
the database the lab's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models.signals import post_save

from lab.accounts.errors import AccountError
from lab.accounts.roles import STAFF_ROLES, user_roles
from lab.lib.email_address import email_canonical
from lab.lib.errors import PermissionDenied
from lab.lib.seals import seal_holds, seal_of

if TYPE_CHECKING:
    from lab.accounts.models import User

logger = logging.getLogger(__name__)

SEAL_SALT = "lab.accounts.account_seal"


def _facts(*, pk: object, public_id: object, roles: Iterable[str], is_active: bool, password: str) -> str:
    staff_roles = sorted({str(role) for role in roles} & STAFF_ROLES)
    return json.dumps([pk, str(public_id), staff_roles, bool(is_active), password], separators=(",", ":"))


def _facts_without_the_row(*, public_id: object, roles: Iterable[str], is_active: bool, password: str) -> str:
    staff_roles = sorted({str(role) for role in roles} & STAFF_ROLES)
    return json.dumps([str(public_id), staff_roles, bool(is_active), password], separators=(",", ":"))


def seal_value(*, public_id: object, roles: Iterable[str], is_active: bool, password: str) -> str:
    """The seal as migration 0006 made it, before it named the account's row (no primary key): no check
    accepts it any more; 0006 still writes it, and 0009 (then `account_seals_upgrade`) seals again, with the
    key, the accounts it holds for."""
    facts = _facts_without_the_row(public_id=public_id, roles=roles, is_active=is_active, password=password)
    return seal_of(SEAL_SALT, facts)


def email_as_stored(address: str) -> str:
    """`address` as the lab stores it (`email_canonical`: the form its mail goes to), or, for one that has no
    such form, as typed, stripped and lower-cased (how such an address was stored and is left)."""
    try:
        return email_canonical(address)
    except ValueError:
        return address.strip().lower()


KEYED_SEAL_MIGRATION = ("accounts", "0009_account_seal_names_its_row")


def keyed_seal_applied_at() -> datetime | None:
    """When migration 0009 (the seal names its row) ran here: a previous-version process could seal an
    account the old way only after it (before, 0009 itself sealed it again). None if it has not run."""
    from django.db.migrations.recorder import MigrationRecorder

    app, name = KEYED_SEAL_MIGRATION
    return (
        MigrationRecorder.Migration.objects.filter(app=app, name=name)
        .values_list("applied", flat=True)
        .first()
    )


@dataclass(frozen=True)
class SealsUpgraded:
    upgraded: list[tuple[str, str]]  # (public id, why it was taken)
    left: list[tuple[str, str]]  # (public id, e-mail): old seal holds, nothing shows the upgrade sealed it


def account_seals_upgrade(
    *,
    emails: Iterable[str] = (),
    sealed_since: Iterable[str] = (),
    on_sealed: Callable[[User, str], None] | None = None,
    batch: int = 500,
) -> SealsUpgraded:
    """Migration 0009's step again (`manage.py account_seals_upgrade`) for the accounts the upgrade window
    could have sealed the old way (`seal_value`, no primary key): each whose old seal holds (under SECRET_KEY
    or a fallback) and that

    - is named in `sealed_since` (public ids the lab's own audit log shows sealed since 0009 ran, by records
      whose mac holds: a previous version's lab admin or operator command), or
    - is named by the operator in `emails`,

    is sealed again with its row, and `on_sealed(user, why)` is called in the same transaction (the caller's
    record). Any other account whose old seal holds is left refused, in `left` with its e-mail, for the
    operator to check and name: an old seal names no row, so the public id, password hash and old seal of one
    account, moved onto another's row in the database (a DBA with a copy of their own from before the
    upgrade), hold there too, and sealing every old seal that holds made the move the lab's own. Nothing read
    from a column the database alone writes takes an account: not when it joined (`date_joined`, which the
    DBA sets to now() with the move), so a customer a previous-version web process registered during the
    window is left too, until named. An account with a token bound to another public id than its row's (its
    public id was changed in the database) is left too, even when named. Each seal is replaced only if it is
    still the one read (a password change made meanwhile keeps its own seal); a second run changes nothing.

    A previous-version process seals the old way only accounts it registers, those its lab admin or operator
    command sets, and those it had already so sealed (a password change, a hash upgrade: it checks the old
    format, which a seal made by 0009 does not pass); `sealed_since` finds the second, the operator names the
    others."""
    from django.db import transaction

    from lab.accounts.models import User

    named = {email_as_stored(email) for email in emails}
    audited = {str(public_id) for public_id in sealed_since}
    upgraded: list[tuple[str, str]] = []
    left: list[tuple[str, str]] = []
    for user in User.objects.prefetch_related("groups").order_by("pk").iterator(chunk_size=batch):
        roles = [group.name for group in user.groups.all()]
        facts = _facts_without_the_row(
            public_id=user.public_id, roles=roles, is_active=user.is_active, password=user.password
        )
        if not seal_holds(user.account_seal, SEAL_SALT, facts):
            continue
        if user.email in named:
            why = "named_by_operator"
        elif str(user.public_id) in audited:
            why = "sealed_since_upgrade"
        else:
            left.append((str(user.public_id), user.email))
            continue
        if _tokens_bound_elsewhere(user):
            left.append((str(user.public_id), user.email))
            continue
        seal = account_seal_of(user, roles=roles)
        with transaction.atomic():
            if not User.objects.filter(pk=user.pk, account_seal=user.account_seal).update(account_seal=seal):
                continue
            user.account_seal = seal
            if on_sealed is not None:
                on_sealed(user, why)
        upgraded.append((str(user.public_id), why))
    return SealsUpgraded(upgraded=upgraded, left=left)


def _tokens_bound_elsewhere(user: User) -> bool:
    """Whether a token of the account is bound to another public id than the row's: the row's public id was
    written in the database (the lab never changes it)."""
    from lab.accounts.models import ApiToken
    from lab.accounts.tokens import TOKEN_BINDING_SALT

    return any(
        not seal_holds(binding, TOKEN_BINDING_SALT, f"{user.public_id}:{key_sha256}")
        for binding, key_sha256 in ApiToken.objects.filter(user=user).values_list("binding", "key_sha256")
    )


def _user_facts(user: object, roles: Iterable[str] | None = None) -> str:
    return _facts(
        pk=user.pk,  # type: ignore[attr-defined]
        public_id=user.public_id,  # type: ignore[attr-defined]
        roles=user_roles(user) if roles is None else roles,
        is_active=user.is_active,  # type: ignore[attr-defined]
        password=user.password,  # type: ignore[attr-defined]
    )


def account_seal_of(user: object, *, roles: Iterable[str] | None = None) -> str:
    """The account's seal as it is now. An account not saved yet has no primary key, and the seal made for it
    (of no key) holds for no row: once its row is inserted, it is sealed again with its key if the row holds
    what was sealed (`UserManager.create_user` seals before it saves; `_seal_again_with_the_key`)."""
    roles = None if roles is None else list(roles)
    facts = _user_facts(user, roles)
    seal = seal_of(SEAL_SALT, facts)
    if user.pk is None:  # type: ignore[attr-defined]
        user._account_seal_unsaved = (seal, facts, roles)  # type: ignore[attr-defined]
    return seal


def _seal_again_with_the_key(sender: object, instance: object, created: bool, **kwargs: object) -> None:
    """post_save of an account: one sealed before its row existed gets the seal of its row, if the row was
    inserted with that seal and with the facts it sealed (else it stays unsealed, refused as any other)."""
    unsaved = getattr(instance, "_account_seal_unsaved", None)
    if unsaved is None:
        return
    del instance._account_seal_unsaved  # type: ignore[attr-defined]
    seal, facts, roles = unsaved
    if not created or getattr(instance, "account_seal", "") != seal:
        return
    if _user_facts_without_key(instance, roles) != facts:
        return
    account_seal_set(instance, roles=roles)


def _user_facts_without_key(user: object, roles: Iterable[str] | None) -> str:
    return _facts(
        pk=None,
        public_id=user.public_id,  # type: ignore[attr-defined]
        roles=user_roles(user) if roles is None else roles,
        is_active=user.is_active,  # type: ignore[attr-defined]
        password=user.password,  # type: ignore[attr-defined]
    )


post_save.connect(_seal_again_with_the_key, sender="accounts.User", dispatch_uid="lab.accounts.seal.new_row")


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
