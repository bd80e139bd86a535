"""Grants: a person's time-limited access to one photo for one purpose and context, reused for the same
request while it lives, never extended, a new one soon after an expiry being a renewal; ended when refused."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Case, F, Q, When
from django.db.models.functions import Now

from lab.accounts.models import User
from lab.audit.models import AccessGrant
from lab.gate.rules import AccessRequest, Decision
from lab.orders.models import Asset

# A grant lets one person see one photo for one purpose in one context until it expires or the context
# closes. A live grant is reused for a request with the same justification (each view is recorded with its
# grant's); a request with another one opens its own grant, which ends when the live one does; an expired
# one is never extended: the next view needs a new request, which opens a new grant — a renewal when it
# comes soon after the last one expired, flagged for auditors.


def _scope(*, user: User, request: AccessRequest) -> dict[str, object]:
    return {
        "actor": user,
        "asset_id": request.asset_id,
        "purpose": request.purpose,
        "context_type": request.context_type,
        "context_id": request.context_id,
    }


# A grant revoked because its task closed (an order moved, a job moved, a ticket or case closed: see
# lab.audit.grants.grants_revoke, and refusals that found the task closed) ended for a reason of the work, not
# the person's: a grant after it, when the task opens again (a reprint sends an order back to the floor), is
# no renewal.
_TASK_CLOSED = (
    Q(revoked_reason__startswith="order_")
    | Q(revoked_reason__startswith="job_")
    | Q(
        revoked_reason__in=[
            "print_job_not_active",
            "clarification_not_open",
            "maintenance_ticket_closed",
            "ticket_closed",
            "case_closed",
        ]
    )
)


# When a grant ended: the earlier of its revocation and its expiry (Least() is NULL on SQLite with a NULL).
_ENDED = Case(When(revoked_at__lt=F("expires_at"), then=F("revoked_at")), default=F("expires_at"))


def grant_for(
    *, user: User, asset: Asset, request: AccessRequest, now: datetime, live: AccessGrant | None = None
) -> AccessGrant:
    """Reuse the person's live grant for this exact scope, resolution and justification, or open a new
    short-lived one (ending with the live grant that covers the request under another justification).
    now: the database's clock as the decision's facts were read (Facts.now), never this host's.
    live: that grant as the decision's facts found it (still live now: reused without another query)."""
    justification = request.justification[:500]
    # Only under the same reason: a view's record takes its grant's, so a second request with another reason
    # that reused the grant was recorded with the first one, and its own reason was kept nowhere.
    if (
        live is not None
        and live.revoked_at is None
        and live.expires_at > now
        and live.justification == justification
    ):
        return live
    scope = _scope(user=user, request=request)
    # One grant opened at a time per person and photo: two requests at once (a double click, two tabs) each
    # found no live grant and opened one, two live grants for one scope, each flagged as a renewal. Under the
    # lock the second finds the first's grant, committed, and reuses it.
    _grants_of_person_and_photo_lock(user=user, asset=asset)
    found = AccessGrant.objects.filter(**scope, revoked_at__isnull=True, expires_at__gt=now)
    if request.is_full_resolution:
        found = found.filter(is_full_resolution=True)
    covering = list(found.order_by("-created_at"))
    grant = next((g for g in covering if g.justification == justification), None)
    if grant is not None:
        return grant
    expires_at = now + timedelta(seconds=settings.AUDIT_GRANT_SECONDS)
    if covering:
        # Another reason while a grant that covers this request lives: its own grant (its views recorded
        # with its reason), ending when the live one does. Opened for the full lifetime, it kept the photo
        # open past the first grant's end with no renewal flagged (the renewal search looks at grants that
        # ended, and none had): "…photo." for "…photo" 10 s before expiry held the original 1,190 s. It
        # renews nothing, as it extends nothing; the next request after the chain ends is the renewal.
        chain_end = max(g.expires_at for g in covering)
        return _grant_create(
            user=user, asset=asset, request=request, now=now, expires_at=min(expires_at, chain_end)
        )
    renewal_window = timedelta(seconds=settings.AUDIT_GRANT_RENEWAL_SECONDS)
    since = now - renewal_window
    previous = (
        # The person's last grant on this photo that ended within the window, for whatever purpose and task,
        # however it ended: by its expiry, or revoked by a refusal (any refusal on the photo ends the
        # person's grants on it: a reload of the expired page, an unknown variant, full resolution without
        # its justification). Only expiries counted before, so a refusal just before asking again hid the
        # renewal, or, sent while the grant was live, opened a fresh one that no rule flagged. And only the
        # same purpose and task counted, so a technician alternating `printing` and `handling` on one job
        # kept a photo open for as long as they liked with no renewal flagged.
        AccessGrant.objects.filter(actor=user, asset=asset)
        .filter(
            Q(revoked_at__isnull=True, expires_at__lte=now, expires_at__gte=since)
            # ended (the earlier of its expiry and its revocation) within the window, not hours before and
            # revoked only now by a refusal on it
            | (Q(revoked_at__lte=now, revoked_at__gte=since, expires_at__gte=since) & ~_TASK_CLOSED)
        )
        .order_by(_ENDED.desc())
        .first()
    )
    return _grant_create(
        user=user, asset=asset, request=request, now=now, expires_at=expires_at, renews=previous
    )


def _grant_create(
    *,
    user: User,
    asset: Asset,
    request: AccessRequest,
    now: datetime,
    expires_at: datetime,
    renews: AccessGrant | None = None,
) -> AccessGrant:
    return AccessGrant.objects.create(
        actor=user,
        asset=asset,
        purpose=request.purpose,
        context_type=request.context_type,
        context_id=request.context_id,
        justification=request.justification[:500],
        created_at=now,
        expires_at=expires_at,
        is_full_resolution=request.is_full_resolution,
        renews=renews,
    )


_GRANT_LOCK_CLASS = 0x47524E54  # "GRNT"


def _grants_of_person_and_photo_lock(*, user: User, asset: Asset) -> None:
    """A transaction-long PostgreSQL advisory lock on (person, photo); SQLite writes one at a time anyway."""
    if connection.vendor != "postgresql":
        return
    key = zlib.crc32(f"{user.pk}:{asset.pk}".encode()) - 2**31  # an int4, as the two-key form takes
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_GRANT_LOCK_CLASS, key])


def grant_refusal(*, grant: AccessGrant | None, request: AccessRequest, now: datetime) -> Decision | None:
    """Why a grant named by a view does not cover it (None: it does); the context is decided separately.
    now: the database's clock (Facts.now)."""
    if grant is None:
        return Decision(False, "grant_not_found")
    if str(grant.asset_id) != request.asset_id:
        return Decision(False, "grant_not_for_this_photo")
    if grant.revoked_at is not None:
        return Decision(False, "grant_revoked")
    if grant.expires_at <= now:
        return Decision(False, "grant_expired")
    if request.is_full_resolution and not grant.is_full_resolution:
        return Decision(False, "grant_is_preview_only")
    return None


def closed_grants_revoke(*, user: User, request: AccessRequest, rule: str) -> None:
    """The task a grant rests on has closed: its grants end now, not when they expire."""
    AccessGrant.objects.filter(**_scope(user=user, request=request), revoked_at__isnull=True).update(
        revoked_at=Now(), revoked_reason=rule
    )
