"""Recording what the gate refuses: the kinds a refusal is raised as, the refusal recorded in the audit chain
(ending the person's grants on the context) and the audit entry every access, refused or delivered, is."""

from __future__ import annotations

import logging
from typing import NoReturn

from django.db import DatabaseError, transaction

from lab.accounts.models import User
from lab.accounts.roles import primary_role
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.gate.errors import GateError
from lab.gate.grants import closed_grants_revoke
from lab.gate.rules import AccessRequest, Decision
from lab.lib.errors import DomainError, Gone, MethodNotAllowed, NotFound, PermissionDenied, Unavailable
from lab.orders.models import Asset

# The gate's one logger, named as before its modules were split: log routing and alerts key on the name.
logger = logging.getLogger("lab.gate.access")

DENIED_ACTION = "image.access.denied"


class AccessDenied(DomainError):
    """The gate did not show a photo; raised as one of the kinds below, each with its own code."""


class ImageRefused(AccessDenied, PermissionDenied):
    """Refused for this person, purpose and context (details: the rule)."""


class ImageNotFound(AccessDenied, NotFound):
    """No such photo (the owner's), or no photo view at that path or variant (details: the rule)."""


class ImageMethodNotAllowed(AccessDenied, MethodNotAllowed):
    """A photo URL asked with another method than GET (details: the rule)."""


class ImageGone(AccessDenied, Gone):
    """The photo was purged: its data key is destroyed, its bytes are unreadable."""


class AuditUnavailable(Unavailable):
    """The access (or an auditor's read) could not be recorded, so it is refused: no record, no photo."""


# How a recorded refusal is raised, by its code: the kind (whose status api/errors.py and the lab's own pages
# decide) and what the person is told. The rule names the reason in the details and in the record.
REFUSALS: dict[GateError, tuple[type[AccessDenied], str]] = {
    GateError.IMAGE_ACCESS_DENIED: (ImageRefused, "This photo cannot be shown for that purpose now."),
    GateError.IMAGE_NOT_FOUND: (ImageNotFound, "No photo is served at this address."),
    GateError.IMAGE_METHOD_NOT_ALLOWED: (ImageMethodNotAllowed, "Photos are only read here, with GET."),
}


def access_entry(
    *,
    user: User,
    request: AccessRequest,
    asset: Asset | None,
    decision: Decision,
    meta: RequestMeta,
    action: str = DENIED_ACTION,
    content_sha256: str = "",
) -> Entry:
    return Entry(
        action=action,
        actor_id=str(user.public_id),
        actor_role=primary_role(user),
        outcome="granted" if decision.granted else "denied",
        rule=decision.rule,
        purpose=request.purpose[:32],
        justification=request.justification,
        # The photo's id as stored, however the request spelled it (upper case, no hyphens, urn:uuid:): an
        # auditor's filter by photo finds every attempt on it.
        asset_id=str(asset.pk) if asset else None,
        order_ref=decision.order_ref,
        context_type=request.context_type[:32],
        context_id=request.context_id[:64],
        content_sha256=content_sha256,
        meta=meta,
    )


def refuse(
    *,
    user: User,
    request: AccessRequest,
    asset: Asset | None,
    decision: Decision,
    meta: RequestMeta,
    has_open_grants: bool = True,
    message: str | None = None,
) -> NoReturn:
    """Record the refusal (ending the person's grants on a context that closed) and raise its AccessDenied
    kind. has_open_grants False: the decision's facts found no unrevoked grant of this scope to end (or
    this refusal ends none). message: what the person is told, if not the refusal kind's own words."""
    try:
        with transaction.atomic():
            if asset is not None and has_open_grants:
                closed_grants_revoke(user=user, request=request, rule=decision.rule)
            audit_append(
                access_entry(user=user, request=request, asset=asset, decision=decision, meta=meta),
                ends_transaction=True,
            )
    except DatabaseError as error:
        logger.error("audit write failed on a refusal actor=%s", user.public_id)
        raise AuditUnavailable(
            GateError.AUDIT_UNAVAILABLE, "The request could not be recorded, so it is refused."
        ) from error
    logger.info("image access denied actor=%s rule=%s", user.public_id, decision.rule)
    kind, default_message = REFUSALS[decision.refusal]
    raise kind(decision.refusal, message or default_message, rule=decision.rule)
