"""Roles are Django groups; this module names them and answers "which role does this user act in"."""

from __future__ import annotations

from django.db.models import TextChoices


class Role(TextChoices):
    CUSTOMER = "customer"
    TECHNICIAN = "technician"
    PACKER = "packer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


STAFF_ROLES = frozenset({Role.TECHNICIAN, Role.PACKER, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})
# Precedence when a person holds several roles: the most privileged one names them in audit records.
_PRECEDENCE = [Role.ADMIN, Role.AUDITOR, Role.SUPERVISOR, Role.TECHNICIAN, Role.PACKER, Role.CUSTOMER]


def user_roles(user: object) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_lab_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
        user._lab_roles = cached  # type: ignore[attr-defined]
    return cached


def has_role(user: object, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))


def primary_role(user: object) -> str:
    roles = user_roles(user)
    for role in _PRECEDENCE:
        if role in roles:
            return str(role)
    return "none"


def is_staff_member(user: object) -> bool:
    return bool(user_roles(user) & STAFF_ROLES)
