"""Refusing a staff account changed outside the lab's tools (lab/accounts/seal.py), on the record.

Every staff page (lab.staff.middleware), the staff sign-in and the auditors' API ask `staff_seal_check` before
they act for a staff member. An account whose seal does not hold is refused; the refusal is a security event
of the account and an audit record (`staff.account_refused`, rule `account_changed_outside_the_lab`), written
together, so auditors see who tried and a database administrator cannot make the account usable unseen.
"""

from __future__ import annotations

import logging

from django.db import transaction

from lab.accounts.models import SecurityEvent, User
from lab.accounts.roles import is_staff_member, primary_role
from lab.accounts.seal import account_seal_holds
from lab.audit.records import Entry, RequestMeta, audit_append

logger = logging.getLogger(__name__)

REFUSAL_MESSAGE = (
    "This account was changed outside the lab's tools (its roles, password or status), so it cannot be "
    "used. A lab admin must look at it and save it again in the lab admin."
)


def staff_seal_check(user: User, *, meta: RequestMeta, channel: str) -> bool:
    """True for an account that is not staff, or whose seal holds; otherwise record the refusal and say no."""
    if not is_staff_member(user) or account_seal_holds(user):
        return True
    with transaction.atomic():
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.ACCOUNT_SEAL_BROKEN, channel=channel, user=user, client_ip=meta.client_ip
        )
        audit_append(
            Entry(
                action="staff.account_refused",
                actor_id=str(user.public_id),
                actor_role=primary_role(user),
                outcome="denied",
                rule="account_changed_outside_the_lab",
                context_type="user",
                context_id=str(user.public_id),
                meta=meta,
            )
        )
    logger.error("staff account changed outside the lab refused user=%s channel=%s", user.public_id, channel)
    return False
