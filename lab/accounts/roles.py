"""Roles are Django groups; this module names them and answers "which role does this user act in"."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import TextChoices


class Role(TextChoices):
    CUSTOMER = "customer"
    TECHNICIAN = "technician"
    PACKER = "packer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


STAFF_ROLES = frozenset({Role.TECHNICIAN, Role.PACKER, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})

# The role policy: who may do what. Every role check in services, views and templates names one of these sets,
# so a change of policy is a change here (tests/accounts/test_role_policy.py pins the table).
FLOOR_ROLES = frozenset({Role.TECHNICIAN, Role.SUPERVISOR, Role.ADMIN})  # act on jobs, holds, tickets
BOARD_READER_ROLES = FLOOR_ROLES | {Role.AUDITOR}  # read the production board (auditors: read only)
QC_ROLES = FLOOR_ROLES | {Role.PACKER}  # record a quality check of printed copies
PACKING_ROLES = frozenset({Role.PACKER, Role.SUPERVISOR, Role.ADMIN})  # the packing station
SUPERVISOR_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})  # cancel an order in production
SUPERVISOR_VIEW_ROLES = SUPERVISOR_ROLES | {Role.TECHNICIAN}  # the supervisor's view (technicians read)
TICKET_APPROVER_ROLES = frozenset({Role.SUPERVISOR})  # the second person for full-resolution maintenance
AUDITOR_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})  # the audit console and its review queue
# Actors of audit records who are not employees: the customer's own views and the production pipeline.
NON_EMPLOYEE_ACTOR_ROLES = ("customer", "system")
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


def roles_known(user: object, roles: Iterable[str]) -> None:
    """Remember roles read with the user (one query for both), so `user_roles` does not ask again."""
    user._lab_roles = set(roles)  # type: ignore[attr-defined]


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
