"""Writes of the lab admin on staff accounts: roles decide who may see photos, so each change is audited.

The admin's ModelAdmin calls these inside its own transaction, so the account, Django's LogEntry and the
audit record commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import Group
from django.db import transaction

from lab.accounts.models import User
from lab.accounts.roles import STAFF_ROLES, primary_role
from lab.accounts.seal import account_seal_holds, account_seal_set
from lab.audit.records import Entry, audit_append


def staff_password_set(*, actor: User, user: User, seal_held: bool = True, disabled: bool = False) -> None:
    """The lab admin set `user`'s password (Django's admin password form saved it), or made it unusable
    (`disabled`: the form's "Disable password-based authentication"): seal the account again and record who
    did it, in the same transaction.

    `seal_held`: whether the account's seal held before the form saved the password. One that did not was
    changed outside the lab (a role granted in SQL, say), and the password form shows no roles: sealing it
    would make that change the lab's own unseen. It stays unsealed (refused at sign-in), on the record; the
    admin accepts its state knowingly by saving its page, which shows the roles (and makes the password
    unusable: see `staff_account_save`), or with `manage.py staff_account_seal`."""
    with transaction.atomic():
        if seal_held:
            account_seal_set(user)
        lab_admin_record(
            actor=actor,
            action="staff.account_changed",
            justification=("password disabled" if disabled else "password set")
            + ("" if seal_held else "; not sealed: the account was changed outside the lab"),
            context_type="user",
            context_id=str(user.public_id),
        )


def lab_admin_record(
    *, actor: User, action: str, justification: str, context_type: str, context_id: str
) -> None:
    """One change the lab admin made, in the audit chain (call it in the change's transaction)."""
    audit_append(
        Entry(
            action=action,
            actor_id=str(actor.public_id),
            actor_role=primary_role(actor),
            outcome="done",
            rule="lab_admin",
            justification=justification[:1000],
            context_type=context_type,
            context_id=context_id,
        )
    )


def staff_roles_of(user: User) -> list[str]:
    return sorted(set(user.groups.values_list("name", flat=True)) & set(STAFF_ROLES))


def staff_account_save(*, actor: User, user: User, roles: Iterable[str], is_new: bool) -> bool:
    """Save `user` (fields already set by the form) with exactly these staff roles; record what changed.

    Returns whether the save accepted a state changed outside the lab (the account's seal did not hold). The
    page shows roles and activation, never the password: such a save makes the password unusable rather than
    seal a hash a database administrator may have written (they would then sign in as the person); the admin
    sets a new one with the account's password form."""
    wanted = sorted(set(roles) & set(STAFF_ROLES))
    with transaction.atomic():
        if is_new:
            before, was_active, seal_held = [], True, True
        else:
            # Under the account's row lock: two saves of one account take turns, and each records its change
            # from the roles the other committed, so the log's last change always ends with the roles held
            # (read before the lock, a role added meanwhile would be held and shown nowhere).
            current = User.objects.select_for_update(of=("self",)).get(pk=user.pk)
            before, was_active = staff_roles_of(current), current.is_active
            seal_held = account_seal_holds(current)
            # The page never edits the password: keep the stored one, not the copy the form loaded before
            # the lock (a password set meanwhile would be put back and sealed).
            user.password = current.password
            if not seal_held:
                user.set_unusable_password()
        user.save()
        for role in set(before) - set(wanted):
            user.groups.remove(Group.objects.get_or_create(name=role)[0])
        for role in set(wanted) - set(before):
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        user._lab_roles = None  # type: ignore[attr-defined]  # roles cached for this request are stale
        account_seal_set(user, roles=wanted)
        changes = []
        if is_new:
            changes.append("created")
        if not seal_held:
            # Saved over a state changed outside the lab: the roles it found are now the lab's, and the record
            # says so (its "roles a -> b" compares with what the database held, the outside change included).
            found = ",".join(before) or "-"
            changes.append(f"accepted a state changed outside the lab (roles found: {found})")
            changes.append("password made unusable: set a new one")
        if before != wanted:
            changes.append(f"roles {','.join(before) or '-'} -> {','.join(wanted) or '-'}")
        if was_active != user.is_active:
            changes.append("activated" if user.is_active else "deactivated")
        if changes:
            lab_admin_record(
                actor=actor,
                action="staff.account_created" if is_new else "staff.account_changed",
                justification="; ".join(changes),
                context_type="user",
                context_id=str(user.public_id),
            )
    return not seal_held
