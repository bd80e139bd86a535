"""The access gate: the only code path that hands customer image bytes to a person.

A request names the photo, a purpose from the privacy policy, a justification and the context it rests on;
the gate decides by role and by the current state of that context, records the decision (and the SHA-256 of
exactly what is delivered) in the audit chain in the same transaction, and fails closed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, NoReturn

import pyvips
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, F, Q, When
from django.db.models.functions import Now
from PIL import Image

from lab.accounts.models import User
from lab.accounts.roles import Role, primary_role, user_roles
from lab.audit.models import AccessGrant, AuditRecord, Purpose, ReviewItem
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.gate.anomalies import ALWAYS_REVIEWED
from lab.gate.errors import GateError
from lab.gate.facts import Context, Facts, context_int, facts_gather, grant_of
from lab.gate.watermark import preview_render
from lab.lib.errors import DomainError, Gone, MethodNotAllowed, NotFound, PermissionDenied, Unavailable
from lab.orders.errors import OrderError
from lab.orders.imaging import ACCEPTED_FORMATS
from lab.orders.models import Asset
from lab.orders.states import OrderStatus
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.vault import vault_read
from lab.production.imaging.source import WHOLE_DECODE_MAX_BYTES, decode, decoding, open_source
from lab.production.maintenance import MAINTENANCE_ORDER_STATUSES
from lab.production.models import MaintenanceTicket
from lab.production.states import ACTIVE_JOB_STATUSES, JobStatus

logger = logging.getLogger(__name__)

# Who may ask for which purpose. Auditors and admins are absent on purpose: they never see photos.
PURPOSES_BY_ROLE: dict[str, frozenset[str]] = {
    Role.TECHNICIAN: frozenset(
        {Purpose.PRINTING, Purpose.HANDLING, Purpose.MAINTENANCE, Purpose.ORDER_CLARIFICATION}
    ),
    Role.PACKER: frozenset({Purpose.PACKAGING, Purpose.HANDLING}),
    Role.SUPERVISOR: frozenset(
        {
            Purpose.PRINTING,
            Purpose.HANDLING,
            Purpose.PACKAGING,
            Purpose.MAINTENANCE,
            Purpose.ORDER_CLARIFICATION,
        }
    ),
}
FULL_RESOLUTION_PURPOSES = frozenset({Purpose.PRINTING, Purpose.MAINTENANCE, Purpose.ORDER_CLARIFICATION})
MIN_JUSTIFICATION = 10
VARIANT_ACTIONS = {"preview": "image.view.preview", "full": "image.view.full", "download": "image.download"}
# What a browser shows in the tab rather than saving to the station's disk: full resolution is one of these.
BROWSER_SHOWN_TYPES = frozenset({"image/jpeg", "image/png"})
DENIED_ACTION = "image.access.denied"
SHIPPED_STATUSES = frozenset({OrderStatus.PACKED, OrderStatus.SHIPPED, OrderStatus.DELIVERED})
# The job statuses a hold stops (nothing submits a held order's job: lab/production/submission.py). A job
# already at the printer when the order was held finishes there, and may fail, end unknown or suspect: a
# person still counts its prints under `handling`, as for any other order.
HOLD_STOPPED_JOB_STATUSES = frozenset(
    {JobStatus.NO_PRINTER, JobStatus.QUEUED, JobStatus.RASTERIZING, JobStatus.READY}
)
# Jobs that left the printer with their prints still to count or decide: a failed job (rerouted or cancelled
# next), an unknown one and a suspect one (a print sent twice, a cancel at the console mid-print), which a
# person counts before confirming it printed or asking for a reprint (lab/production/actions.py).
PRINTS_TO_COUNT_JOB_STATUSES = frozenset({JobStatus.FAILED, JobStatus.UNKNOWN, JobStatus.SUSPECT})
# Largest TIFF or HEIC re-encoded as a PNG for the tab, in bytes of its decoded pixels (every band, every
# sample's bytes): the raster decoders' whole-decode budget. The PNG is built whole in memory (its SHA-256
# is recorded before a byte is sent), measured at two to three times that: a 24 MP 8-bit photo (72 MB)
# grew the web process by ~140 MiB as a TIFF and ~190 MiB as a HEIC, within a worker's 200 MiB; a 48 MP
# phone HEIC grew it by ~250 MiB, an 89 MP TIFF by ~470 MiB. Larger ones are refused
# (`full_resolution_too_large`); their preview is still shown.
FULL_RESOLUTION_RE_ENCODE_MAX_BYTES: Final = WHOLE_DECODE_MAX_BYTES
_SAMPLE_BYTES: Final = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4}


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


@dataclass(frozen=True)
class AccessRequest:
    asset_id: str
    purpose: str
    justification: str
    context_type: str  # print_job | order | maintenance_ticket | clarification_case
    context_id: str
    variant: str = "preview"  # preview | full | download

    def __post_init__(self) -> None:
        # PostgreSQL's text holds no NUL: a NUL in any of these failed the facts query or the record's insert
        # (a 500, or a 503 "audit unavailable") and left the attempt unrecorded, the status telling a prober
        # what the gate would have decided. Made U+FFFD, it is an ordinary request, refused and recorded.
        for name in ("asset_id", "purpose", "justification", "context_type", "context_id", "variant"):
            value = getattr(self, name)
            if "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", "\ufffd"))

    @property
    def is_full_resolution(self) -> bool:
        return self.variant != "preview"


@dataclass(frozen=True)
class Delivery:
    data: bytes
    content_type: str
    sha256: str
    audit_seq: int


@dataclass(frozen=True)
class Decision:
    granted: bool
    rule: str
    order_ref: str | None = None
    refusal: GateError = GateError.IMAGE_ACCESS_DENIED  # the code a refusal is raised with (see REFUSALS)


def _decide(*, user: User, role: str, request: AccessRequest, facts: Facts) -> Decision:
    """Variant, role, then whether the purpose fits the current state of the named context."""
    if request.variant not in VARIANT_ACTIONS:
        return Decision(False, "unknown_variant", refusal=GateError.IMAGE_NOT_FOUND)
    roles = user_roles(user)
    allowed = set().union(*(PURPOSES_BY_ROLE.get(r, frozenset()) for r in roles))
    if role in (Role.AUDITOR, Role.ADMIN) and not (roles & set(PURPOSES_BY_ROLE)):
        return Decision(False, "role_never_views_photos")
    if request.purpose not in allowed:
        return Decision(False, "purpose_not_allowed_for_role")
    asset = facts.asset
    if asset is None or asset.status != Asset.Status.READY:
        return Decision(False, "asset_unavailable")
    if request.is_full_resolution and request.purpose not in FULL_RESOLUTION_PURPOSES:
        return Decision(False, "full_resolution_not_needed_for_purpose")
    if request.is_full_resolution and len(request.justification.strip()) < MIN_JUSTIFICATION:
        return Decision(False, "justification_required_for_full_resolution")
    return _context_fits(request=request, context=facts.context)


def _context_fits(*, request: AccessRequest, context: Context) -> Decision:
    decision = _context_state_fits(request=request, context=context)
    if decision.granted and request.purpose == Purpose.MAINTENANCE:
        return _maintenance_ticket_on_record(request=request, decision=decision)
    return decision


def offer_fits(*, purpose: str, context_type: str, context_id: str, context: Context, variant: str) -> bool:
    """Whether the gate's own rules on a context's state grant this purpose at this variant: what a page may
    offer. An offer the gate refuses got an honest person a flagged denial and ended their live grant on the
    photo. The person's role, the photo and the justification are decided on the request itself, and so is
    a maintenance ticket's record (a query per ticket, left to the request)."""
    request = AccessRequest(
        asset_id="",
        purpose=purpose,
        justification="",
        context_type=context_type,
        context_id=context_id,
        variant=variant,
    )
    return _context_state_fits(request=request, context=context).granted


def _context_state_fits(*, request: AccessRequest, context: Context) -> Decision:
    purpose, kind = request.purpose, request.context_type
    if purpose in (Purpose.PRINTING, Purpose.HANDLING):
        if kind != "print_job" or not context.found:
            return Decision(False, "context_not_found")
        if context.order_status == OrderStatus.ON_HOLD and context.status in HOLD_STOPPED_JOB_STATUSES:
            # A held order's waiting jobs stay where they are (nothing submits them): the work on it is the
            # clarification, whose full resolution is for someone other than the person who held it. Under
            # printing, whoever held the order downloaded its originals alone, unflagged. A job that was at
            # the printer (failed, unknown, suspect) is still handled: its prints are counted.
            return Decision(False, "order_on_hold", context.order_ref)
        if context.status not in ACTIVE_JOB_STATUSES | PRINTS_TO_COUNT_JOB_STATUSES:
            # A suspect job was left out: the technician who must count its prints was offered nothing, and
            # asking directly was a flagged refusal that ended their grants on the photo.
            return Decision(False, "print_job_not_active", context.order_ref)
        return Decision(True, "active_print_job", context.order_ref)
    if purpose == Purpose.PACKAGING:
        if kind != "order" or not context.found:
            return Decision(False, "context_not_found")
        if context.order_status not in (OrderStatus.READY_TO_PACK, OrderStatus.PACKED):
            return Decision(False, "order_not_being_packed", context.order_ref)
        return Decision(True, "order_being_packed", context.order_ref)
    if purpose == Purpose.MAINTENANCE:
        return _maintenance_state_fits(request=request, context=context)
    if purpose == Purpose.ORDER_CLARIFICATION:
        if kind != "clarification_case" or not context.found:
            return Decision(False, "context_not_found")
        if not context.is_open or context.order_status != OrderStatus.ON_HOLD:
            return Decision(False, "clarification_not_open", context.order_ref)
        if request.is_full_resolution and not context.is_approved:
            # Whoever puts an order on hold opens its case: alone, any floor person could put any order on
            # hold, download its originals and release it (a maintenance ticket needs a second person for
            # full resolution too). The opener sees the preview; full resolution is for another person.
            return Decision(False, "clarification_full_resolution_not_by_its_opener", context.order_ref)
        return Decision(True, "open_clarification_case", context.order_ref)
    return Decision(False, "unknown_purpose")


def _maintenance_state_fits(*, request: AccessRequest, context: Context) -> Decision:
    """Only the jobs the ticket names, only while their order is still in production, full resolution only
    on a ticket a second person (a supervisor) approved; then the ticket's record (below)."""
    if request.context_type != "maintenance_ticket" or not context.found:
        return Decision(False, "context_not_found")
    if not context.on_ticket:
        # Name the order the photo belongs to, so auditors see which one was probed (and whether it shipped).
        return Decision(False, "photo_not_on_ticket", context.probed_ref)
    if not context.is_open:
        return Decision(False, "maintenance_ticket_closed", context.order_ref)
    if context.order_status in SHIPPED_STATUSES:
        return Decision(False, "order_packed_or_shipped", context.order_ref)
    if context.order_status not in MAINTENANCE_ORDER_STATUSES:
        return Decision(False, "order_not_in_production", context.order_ref)
    if request.is_full_resolution and not context.is_approved:
        return Decision(False, "maintenance_full_resolution_needs_approval", context.order_ref)
    return Decision(True, "open_maintenance_ticket", context.order_ref)


def _maintenance_ticket_on_record(*, request: AccessRequest, decision: Decision) -> Decision:
    """A ticket whose state fits, as its own actions left it (else refused, naming the decision's order)."""
    # Read only for a view the ticket would allow: a job added, an approval or a reopening written in the
    # database alone, not by the ticket's actions, shows nothing (lab/production/models.py).
    # A ticket the audit log says was closed stays closed: an open state (and its seal) copied before the
    # close and put back afterwards would carry a valid seal.
    ticket = MaintenanceTicket.objects.filter(pk=context_int(request.context_id)).first()
    if ticket is None or not ticket.is_sealed or _closed_on_the_record(ticket):
        logger.error("maintenance ticket changed outside the lab refused ticket=%s", request.context_id)
        return Decision(False, "maintenance_ticket_changed_outside_the_lab", decision.order_ref)
    return decision


def _closed_on_the_record(ticket: MaintenanceTicket) -> bool:
    return AuditRecord.objects.filter(
        action="maintenance.ticket.close", context_type="maintenance_ticket", context_id=str(ticket.pk)
    ).exists()


# --- Grants ---------------------------------------------------------------------------------------
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


def _grant_for(
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


def _grant_refusal(*, grant: AccessGrant | None, request: AccessRequest, now: datetime) -> Decision | None:
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


def _revoke_closed_grants(*, user: User, request: AccessRequest, rule: str) -> None:
    """The task a grant rests on has closed: its grants end now, not when they expire."""
    AccessGrant.objects.filter(**_scope(user=user, request=request), revoked_at__isnull=True).update(
        revoked_at=Now(), revoked_reason=rule
    )


# --- Deciding, refusing, delivering ---------------------------------------------------------------


def _entry(
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


def _refuse(
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
                _revoke_closed_grants(user=user, request=request, rule=decision.rule)
            audit_append(
                _entry(user=user, request=request, asset=asset, decision=decision, meta=meta),
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


def _sealed_or_refused(asset: Asset) -> None:
    """A photo row whose owner, key or file were written in the database alone (lab/orders/models.py) would
    hand out another photo's bytes under its id: nothing is read."""
    if not asset.is_sealed:
        logger.error("photo changed outside the lab refused asset=%s", asset.pk)
        raise ImageGone(
            GateError.IMAGE_UNAVAILABLE,
            "This photo's record was changed outside the lab; it is not shown.",
            rule="photo_changed_outside_the_lab",
        )


def _deliver(
    *,
    user: User,
    request: AccessRequest,
    asset: Asset,
    decision: Decision,
    meta: RequestMeta,
    now: datetime,
    grant: AccessGrant | None = None,
    live: AccessGrant | None = None,
) -> Delivery:
    """Render outside any transaction, then record the delivery (and open or reuse the grant) in one.
    now: the database's clock at the decision; grant: the grant the view came with; live: the person's live
    grant for this scope the facts found."""
    role, actor_id = primary_role(user), str(user.public_id)
    _sealed_or_refused(asset)
    try:
        original = vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
        data, media_type = _render(
            asset=asset, original=original, variant=request.variant, viewer=f"{role}:{actor_id[:8]}", at=now
        )
    except (KeyDestroyed, DecryptionFailed, FileNotFoundError) as error:
        raise ImageGone(GateError.IMAGE_UNAVAILABLE, "This photo no longer exists.", rule="purged") from error
    except _TooLargeToReEncode:
        # Recorded as any refusal; the person's grants stay: the task is still open and the preview fits.
        _refuse(
            user=user,
            request=request,
            asset=asset,
            decision=Decision(False, "full_resolution_too_large", decision.order_ref),
            meta=meta,
            has_open_grants=False,
            message="This photo is too large to show at full resolution here; its preview can be shown.",
        )
    digest = hashlib.sha256(data).hexdigest()
    try:
        with transaction.atomic():
            if grant is None:
                grant = _grant_for(user=user, asset=asset, request=request, now=now, live=live)
            follows = _written_after_delivery(grant=grant, request=request)
            record = audit_append(
                _entry(
                    user=user,
                    request=request,
                    asset=asset,
                    decision=decision,
                    meta=meta,
                    action=VARIANT_ACTIONS[request.variant],
                    content_sha256=digest,
                ),
                ends_transaction=not follows,
            )
            if follows:
                _after_delivery(grant=grant, record=record)
    except DatabaseError as error:
        # Fail closed: no record, no bytes.
        logger.error("audit write failed; image withheld actor=%s asset=%s", actor_id, request.asset_id)
        raise AuditUnavailable(
            GateError.AUDIT_UNAVAILABLE, "The access could not be recorded, so it is refused."
        ) from error
    logger.info("image delivered actor=%s asset=%s grant=%s seq=%s", actor_id, asset.pk, grant.pk, record.seq)
    return Delivery(data=data, content_type=media_type, sha256=digest, audit_seq=record.seq)


def _written_after_delivery(*, grant: AccessGrant, request: AccessRequest) -> bool:
    """Whether _after_delivery writes anything for this view (otherwise the record ends the transaction)."""
    return grant.first_seq is None or request.purpose in ALWAYS_REVIEWED


def _after_delivery(*, grant: AccessGrant, record: AuditRecord) -> None:
    if grant.first_seq is None:
        AccessGrant.objects.filter(pk=grant.pk, first_seq__isnull=True).update(first_seq=record.seq)
        grant.first_seq = record.seq
    flag = ALWAYS_REVIEWED.get(record.purpose)
    if flag is not None:
        # In the auditors' queue at once, in the same transaction: a maintenance or clarification view is
        # never left to chance (the nightly rules flag it again; an item is unique per record and reason).
        # Only an item of this (record, reason) is skipped: a conflict of any other kind (a row at the id
        # drawn, which the database's trigger prevents, migration audit/0012) fails the view, never the item
        # alone. One statement, as before.
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {ReviewItem._meta.db_table} (record_id, reason, note) VALUES (%s, %s, '')"  # noqa: S608
                " ON CONFLICT (record_id, reason) DO NOTHING",
                [record.seq, flag.value],
            )


def _render(*, asset: Asset, original: bytes, variant: str, viewer: str, at: datetime) -> tuple[bytes, str]:
    if variant != "preview":
        return _full_resolution(asset=asset, original=original)
    return preview_render(original, stamp=f"{viewer} {at:%Y-%m-%d %H:%M}Z"), "image/jpeg"


def _full_resolution(*, asset: Asset, original: bytes) -> tuple[bytes, str]:
    """The original as a browser shows it in the tab: a JPEG or PNG as stored, anything else (TIFF, HEIC)
    as a lossless PNG of its pixels. Chromium saves an image/tiff or image/heic answer to the Downloads
    folder of the shared station instead of showing it, where it stays past the grant and past erasure.
    One whose PNG would not fit a web worker is not decoded (_TooLargeToReEncode)."""
    media_type = _media_type(asset=asset, original=original)
    if media_type in BROWSER_SHOWN_TYPES:
        return original, media_type
    if _decoded_bytes(original) > FULL_RESOLUTION_RE_ENCODE_MAX_BYTES:
        raise _TooLargeToReEncode
    return _lossless_png(original), "image/png"


class _TooLargeToReEncode(Exception):
    """The PNG would not fit a web worker's memory (`FULL_RESOLUTION_RE_ENCODE_MAX_BYTES`)."""


def _decoded_bytes(original: bytes) -> int:
    """The bytes of the pixels _lossless_png decodes, from the header alone: a HEIC as 8-bit grey or RGB
    (as the prints), anything else in its own bands and sample size (a 16-bit TIFF's PNG is 16-bit)."""
    source = open_source(original)
    if source.format == "heic":
        return source.width * source.height * (1 if source.mode == "L" else 3)
    header = pyvips.Image.new_from_buffer(original, "", access="sequential")
    return int(header.width * header.height * header.bands * _SAMPLE_BYTES.get(header.format, 8))


def _lossless_png(original: bytes) -> bytes:
    """Every pixel, depth (16-bit) and ICC profile kept, turned upright as the browser turns a JPEG; CMYK
    converted to RGB through its profile (PNG has no CMYK); no other metadata."""
    source = open_source(original)
    with decoding():
        if source.format == "heic":
            # pillow-heif's decode, upright (it applies the HEIF transforms), 8-bit as the prints are
            pixels = decode(original, source, shrink_factor=1)
            if source.icc_profile and pixels.get_typeof("icc-profile-data") == 0:
                pixels = pixels.copy()
                pixels.set_type(pyvips.GValue.blob_type, "icc-profile-data", source.icc_profile)
        else:
            # Rows are read in order unless the photo must be turned (a turn reads them out of order).
            access = "sequential" if source.orientation == 1 else "random"
            pixels = pyvips.Image.new_from_buffer(original, "", access=access, fail_on="error").autorot()
        data: bytes = pixels.pngsave_buffer(keep=pyvips.enums.ForeignKeep.ICC)
    return data


def _media_type(*, asset: Asset, original: bytes) -> str:
    """The media type of the format intake stored the photo in. Not a probe of the bytes: a phone's
    multi-picture JPEG is stored as its first picture, whose index still names the others, so Pillow reads it
    as MPO again, and `image/mpo` is a type no browser shows."""
    if known := ACCEPTED_FORMATS.get(asset.image_format):
        return known
    with Image.open(io.BytesIO(original)) as probe:
        return Image.MIME.get(probe.format or "", "application/octet-stream")


def _granted_or_refused(
    *, user: User, request: AccessRequest, meta: RequestMeta
) -> tuple[Facts, Asset, Decision]:
    """Read the facts and decide; a refusal is recorded and raised here: callers go on only when granted."""
    facts = facts_gather(user=user, request=request)
    asset = facts.asset
    decision = _decide(user=user, role=primary_role(user), request=request, facts=facts)
    if not decision.granted:
        _refuse(
            user=user,
            request=request,
            asset=asset,
            decision=decision,
            meta=meta,
            has_open_grants=facts.has_open_grants,
        )
    assert asset is not None
    return facts, asset, decision


def image_access(*, user: User, request: AccessRequest, meta: RequestMeta) -> Delivery:
    """One request, one view: decide, open (or reuse) a grant, render, record, deliver — or record the
    refusal and raise its AccessDenied kind."""
    facts, asset, decision = _granted_or_refused(user=user, request=request, meta=meta)
    return _deliver(
        user=user, request=request, asset=asset, decision=decision, meta=meta, now=facts.now, live=facts.grant
    )


def image_grant_open(*, user: User, request: AccessRequest, meta: RequestMeta) -> AccessGrant:
    """A request with purpose and context: decide and open (or reuse) a grant; the view follows with its id.

    Refusals are recorded here; a grant that is opened is recorded with its first view.
    """
    facts, asset, _ = _granted_or_refused(user=user, request=request, meta=meta)
    with transaction.atomic():
        return _grant_for(user=user, asset=asset, request=request, now=facts.now, live=facts.grant)


def image_grant_view(
    *, user: User, asset_id: str, grant_id: str, variant: str, meta: RequestMeta
) -> Delivery:
    """A view under a grant: only while it lives, only for its photo and resolution, only while its context
    still fits. An expired grant is refused and recorded; nothing renews it."""
    grant = grant_of(user=user, grant_id=grant_id)
    request = AccessRequest(
        asset_id=asset_id,
        purpose=grant.purpose if grant else "",
        justification=grant.justification if grant else "",
        context_type=grant.context_type if grant else "grant",
        context_id=grant.context_id if grant else grant_id[:64],
        variant=variant,
    )
    facts = facts_gather(user=user, request=request)
    asset = facts.asset
    decision = _decide(user=user, role=primary_role(user), request=request, facts=facts)
    # The grant's own limits come first (an unknown variant aside); the context is still decided, so an
    # expired grant's refusal names the order it was for.
    refusal = (
        _grant_refusal(grant=grant, request=request, now=facts.now)
        if decision.rule != "unknown_variant"
        else None
    )
    if refusal is not None:
        decision = replace(refusal, order_ref=decision.order_ref)
    if not decision.granted:
        _refuse(
            user=user,
            request=request,
            asset=asset,
            decision=decision,
            meta=meta,
            has_open_grants=facts.has_open_grants,
        )
    assert asset is not None and grant is not None
    return _deliver(
        user=user, request=request, asset=asset, decision=decision, meta=meta, now=facts.now, grant=grant
    )


def image_request_refuse(
    *, user: User, path: str, rule: str, meta: RequestMeta, refusal: GateError = GateError.IMAGE_NOT_FOUND
) -> NoReturn:
    """A request under /lab/photos/ that names no photo and variant the gate knows, or asks with another
    method than GET (refusal: IMAGE_METHOD_NOT_ALLOWED): recorded, then refused."""
    request = AccessRequest(
        asset_id="", purpose="", justification="", context_type="path", context_id=path[:64]
    )
    _refuse(
        user=user,
        request=request,
        asset=None,
        decision=Decision(False, rule, refusal=refusal),
        meta=meta,
        has_open_grants=False,
    )


def owner_image_access(*, user: User, asset: Asset, meta: RequestMeta) -> Delivery:
    """A customer downloading their own photo: recorded as owner access (`image.download`, with the SHA-256 of
    the original it sends), not as an employee view."""
    original = owner_original_read(user=user, asset=asset)
    return owner_delivery_record(
        user=user,
        asset=asset,
        meta=meta,
        action="image.download",
        data=original,
        content_type=_media_type(asset=asset, original=original),
    )


def owner_original_read(*, user: User, asset: Asset) -> bytes:
    """The owner's own original, through the gate's checks (theirs, ready, sealed, not purged), recorded
    nowhere yet: the caller records what it sends with owner_delivery_record before sending it (a proof is
    rendered from the original first, lab.gate.proofs), or owner_refusal_record if it sends nothing."""
    if asset.owner_id != user.pk:
        raise ImageNotFound(OrderError.ASSET_NOT_FOUND, "No such photo.")
    if asset.status != Asset.Status.READY:
        raise ImageGone(GateError.IMAGE_UNAVAILABLE, "This photo no longer exists.")
    _sealed_or_refused(asset)
    try:
        return vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
    except (KeyDestroyed, DecryptionFailed, FileNotFoundError) as error:
        # Purged (retention, erasure) after this request read the photo's row: gone, as on the staff path.
        raise ImageGone(GateError.IMAGE_UNAVAILABLE, "This photo no longer exists.", rule="purged") from error


def owner_delivery_record(
    *, user: User, asset: Asset, meta: RequestMeta, action: str, data: bytes, content_type: str
) -> Delivery:
    """Record the owner's access with the SHA-256 of exactly `data`, the bytes about to be sent; if the
    record cannot be written, nothing is sent (AuditUnavailable)."""
    digest = hashlib.sha256(data).hexdigest()
    record = _owner_record(
        user=user,
        asset=asset,
        meta=meta,
        action=action,
        outcome="granted",
        rule="owner",
        content_sha256=digest,
    )
    return Delivery(data=data, content_type=content_type, sha256=digest, audit_seq=record.seq)


def owner_refusal_record(*, user: User, asset: Asset, meta: RequestMeta, action: str, rule: str) -> None:
    """The owner's original was read but nothing is sent (a proof the rasterizer refused): recorded as
    denied, with the rule and no content hash, so the read is on the record and no delivery is."""
    _owner_record(
        user=user, asset=asset, meta=meta, action=action, outcome="denied", rule=rule, content_sha256=""
    )


def _owner_record(
    *, user: User, asset: Asset, meta: RequestMeta, action: str, outcome: str, rule: str, content_sha256: str
) -> AuditRecord:
    try:
        with transaction.atomic():
            return audit_append(
                Entry(
                    action=action,
                    actor_id=str(user.public_id),
                    actor_role="customer",
                    outcome=outcome,
                    rule=rule,
                    purpose=Purpose.OWNER,
                    asset_id=str(asset.pk),
                    content_sha256=content_sha256,
                    # Only the request id: the customer's address and user agent in the append-only log would
                    # outlive an erasure (as the erasure's and the export's own records).
                    meta=RequestMeta(request_id=meta.request_id),
                ),
                ends_transaction=True,
            )
    except DatabaseError as error:
        logger.error("audit write failed; owner access withheld actor=%s asset=%s", user.public_id, asset.pk)
        raise AuditUnavailable(
            GateError.AUDIT_UNAVAILABLE, "The access could not be recorded, so it is refused."
        ) from error
