"""The access gate: the only code path that hands customer image bytes to a person.

A request names the photo, a purpose from the privacy policy, a justification and the context it rests on;
the gate decides by role and by the current state of that context, records the decision (and the SHA-256 of
exactly what is delivered) in the audit chain in the same transaction, and fails closed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from PIL import Image, ImageDraw, ImageOps

from lab.accounts.models import User
from lab.accounts.roles import Role, primary_role, user_roles
from lab.audit.models import AccessGrant, ClarificationCase, MaintenanceTicket, Purpose
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.lib.errors import DomainError
from lab.orders.models import Asset, Order
from lab.orders.states import OrderStatus
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.vault import vault_read
from lab.production.models import PrintJob
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
PREVIEW_PIXELS = 512
VARIANT_ACTIONS = {"preview": "image.view.preview", "full": "image.view.full", "download": "image.download"}


class AccessDenied(DomainError):
    status = 403


class AuditUnavailable(DomainError):
    status = 503


@dataclass(frozen=True)
class AccessRequest:
    asset_id: str
    purpose: str
    justification: str
    context_type: str  # print_job | order | maintenance_ticket | clarification_case
    context_id: str
    variant: str = "preview"  # preview | full | download


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


def _decide(*, user: User, role: str, request: AccessRequest, asset: Asset | None) -> Decision:
    """Role first, then whether the purpose fits the current state of the named context."""
    allowed = set().union(*(PURPOSES_BY_ROLE.get(r, frozenset()) for r in user_roles(user)))
    if role in (Role.AUDITOR, Role.ADMIN) and not (user_roles(user) & set(PURPOSES_BY_ROLE)):
        return Decision(False, "role_never_views_photos")
    if request.purpose not in allowed:
        return Decision(False, "purpose_not_allowed_for_role")
    if asset is None or asset.status != Asset.Status.READY:
        return Decision(False, "asset_unavailable")
    if request.variant != "preview" and request.purpose not in FULL_RESOLUTION_PURPOSES:
        return Decision(False, "full_resolution_not_needed_for_purpose")
    if request.variant != "preview" and len(request.justification.strip()) < MIN_JUSTIFICATION:
        return Decision(False, "justification_required_for_full_resolution")
    return _context_fits(request=request, asset=asset)


def _context_fits(*, request: AccessRequest, asset: Asset) -> Decision:
    purpose, kind, ident = request.purpose, request.context_type, request.context_id
    if purpose in (Purpose.PRINTING, Purpose.HANDLING):
        job = PrintJob.objects.filter(pk=_int(ident), item__asset=asset).select_related("order").first()
        if kind != "print_job" or job is None:
            return Decision(False, "context_not_found")
        if job.status not in ACTIVE_JOB_STATUSES | {JobStatus.FAILED, JobStatus.UNKNOWN}:
            return Decision(False, "print_job_not_active", job.order.ref)
        return Decision(True, "active_print_job", job.order.ref)
    if purpose == Purpose.PACKAGING:
        order = Order.objects.filter(ref=ident, items__asset=asset).first()
        if kind != "order" or order is None:
            return Decision(False, "context_not_found")
        if order.status not in (OrderStatus.READY_TO_PACK, OrderStatus.PACKED):
            return Decision(False, "order_not_being_packed", order.ref)
        return Decision(True, "order_being_packed", order.ref)
    if purpose == Purpose.MAINTENANCE:
        ticket = MaintenanceTicket.objects.filter(pk=_int(ident)).first()
        if kind != "maintenance_ticket" or ticket is None:
            return Decision(False, "context_not_found")
        job = (
            PrintJob.objects.filter(printer=ticket.printer, item__asset=asset).select_related("order").first()
        )
        if job is None:
            return Decision(False, "photo_not_on_ticket_printer")
        if not ticket.is_open:
            return Decision(False, "maintenance_ticket_closed", job.order.ref)
        return Decision(True, "open_maintenance_ticket", job.order.ref)
    if purpose == Purpose.ORDER_CLARIFICATION:
        case = (
            ClarificationCase.objects.filter(pk=_int(ident), order__items__asset=asset)
            .select_related("order")
            .first()
        )
        if kind != "clarification_case" or case is None:
            return Decision(False, "context_not_found")
        if not case.is_open or case.order.status != OrderStatus.ON_HOLD:
            return Decision(False, "clarification_not_open", case.order.ref)
        return Decision(True, "open_clarification_case", case.order.ref)
    return Decision(False, "unknown_purpose")


def _int(value: str) -> int:
    return int(value) if value.isdigit() else -1


def _grant_for(*, user: User, asset: Asset, request: AccessRequest) -> AccessGrant:
    """Reuse the person's live grant for this exact scope, or open a new short-lived one."""
    now = timezone.now()
    grant = (
        AccessGrant.objects.filter(
            actor=user,
            asset=asset,
            purpose=request.purpose,
            context_type=request.context_type,
            context_id=request.context_id,
            revoked_at__isnull=True,
            expires_at__gt=now,
        )
        .order_by("-created_at")
        .first()
    )
    if grant is None:
        grant = AccessGrant.objects.create(
            actor=user,
            asset=asset,
            purpose=request.purpose,
            context_type=request.context_type,
            context_id=request.context_id,
            justification=request.justification[:500],
            expires_at=now + timedelta(seconds=settings.AUDIT_GRANT_SECONDS),
        )
    return grant


def _revoke_closed_grants(*, user: User, asset_id: str, request: AccessRequest, rule: str) -> None:
    """The task a grant rests on has closed: its grants end now, not when they expire."""
    AccessGrant.objects.filter(
        actor=user,
        asset_id=asset_id,
        purpose=request.purpose,
        context_type=request.context_type,
        context_id=request.context_id,
        revoked_at__isnull=True,
    ).update(revoked_at=timezone.now(), revoked_reason=rule)


def _render(*, original: bytes, variant: str, viewer: str) -> tuple[bytes, str]:
    if variant != "preview":
        with Image.open(io.BytesIO(original)) as probe:
            media_type = Image.MIME.get(probe.format or "", "application/octet-stream")
        return original, media_type
    with Image.open(io.BytesIO(original)) as image:
        image.draft("RGB", (PREVIEW_PIXELS, PREVIEW_PIXELS))
        preview = ImageOps.exif_transpose(image).convert("RGB")
    preview.thumbnail((PREVIEW_PIXELS, PREVIEW_PIXELS))
    draw = ImageDraw.Draw(preview)
    stamp = f"{viewer} {timezone.now():%Y-%m-%d %H:%M}Z"
    for y in range(10, preview.height, 80):
        draw.text((10, y), stamp, fill=(255, 255, 255))
        draw.text((11, y + 1), stamp, fill=(0, 0, 0))
    out = io.BytesIO()
    preview.save(out, "JPEG", quality=80)
    return out.getvalue(), "image/jpeg"


def image_access(*, user: User, request: AccessRequest, meta: RequestMeta) -> Delivery:
    """Decide, render, record, deliver — or record the refusal and raise AccessDenied."""
    role = primary_role(user)
    actor_id = str(user.public_id)
    asset = (
        Asset.objects.select_related("data_key").filter(pk=request.asset_id).first()
        if _uuid(request.asset_id)
        else None
    )
    decision = _decide(user=user, role=role, request=request, asset=asset)

    def entry(action: str, outcome: str, content_sha256: str = "") -> Entry:
        return Entry(
            action=action,
            actor_id=actor_id,
            actor_role=role,
            outcome=outcome,
            rule=decision.rule,
            purpose=request.purpose,
            justification=request.justification,
            asset_id=request.asset_id if asset else None,
            order_ref=decision.order_ref,
            context_type=request.context_type,
            context_id=request.context_id,
            content_sha256=content_sha256,
            meta=meta,
        )

    if not decision.granted:
        with transaction.atomic():
            if asset is not None:
                _revoke_closed_grants(
                    user=user, asset_id=request.asset_id, request=request, rule=decision.rule
                )
            audit_append(entry("image.access.denied", "denied"))
        logger.info(
            "image access denied actor=%s asset=%s rule=%s", actor_id, request.asset_id, decision.rule
        )
        raise AccessDenied(
            "image_access_denied", "This photo cannot be shown for that purpose now.", rule=decision.rule
        )
    assert asset is not None
    try:
        original = vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
        data, media_type = _render(
            original=original, variant=request.variant, viewer=f"{role}:{actor_id[:8]}"
        )
    except (KeyDestroyed, DecryptionFailed, FileNotFoundError) as error:
        raise AccessDenied("image_unavailable", "This photo no longer exists.", rule="purged") from error
    digest = hashlib.sha256(data).hexdigest()
    try:
        with transaction.atomic():
            grant = _grant_for(user=user, asset=asset, request=request)
            record = audit_append(entry(VARIANT_ACTIONS[request.variant], "granted", digest))
    except DatabaseError as error:
        # Fail closed: no record, no bytes.
        logger.error("audit write failed; image withheld actor=%s asset=%s", actor_id, request.asset_id)
        raise AuditUnavailable(
            "audit_unavailable", "The access could not be recorded, so it is refused."
        ) from error
    logger.info("image delivered actor=%s asset=%s grant=%s seq=%s", actor_id, asset.pk, grant.pk, record.seq)
    return Delivery(data=data, content_type=media_type, sha256=digest, audit_seq=record.seq)


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def owner_image_access(*, user: User, asset: Asset, meta: RequestMeta) -> Delivery:
    """A customer fetching their own photo: recorded as owner access, not as an employee view."""
    if asset.owner_id != user.pk:
        raise AccessDenied("asset_not_found", "No such photo.", status=404)
    if asset.status != Asset.Status.READY:
        raise AccessDenied("image_unavailable", "This photo no longer exists.", status=410)
    original = vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
    digest = hashlib.sha256(original).hexdigest()
    try:
        with transaction.atomic():
            record = audit_append(
                Entry(
                    action="image.download",
                    actor_id=str(user.public_id),
                    actor_role="customer",
                    outcome="granted",
                    rule="owner",
                    purpose=Purpose.OWNER,
                    asset_id=str(asset.pk),
                    content_sha256=digest,
                    meta=meta,
                )
            )
    except DatabaseError as error:
        raise AuditUnavailable(
            "audit_unavailable", "The access could not be recorded, so it is refused."
        ) from error
    with Image.open(io.BytesIO(original)) as probe:
        media_type = Image.MIME.get(probe.format or "", "application/octet-stream")
    return Delivery(data=original, content_type=media_type, sha256=digest, audit_seq=record.seq)


def system_image_access(*, asset: Asset, job_id: int, order_ref: str) -> None:
    """A worker reads a photo for production: recorded as system access with purpose `production`."""
    audit_append(
        Entry(
            action="image.read.system",
            actor_id=None,
            actor_role="system",
            outcome="done",
            rule="production_pipeline",
            purpose=Purpose.PRODUCTION,
            asset_id=str(asset.pk),
            order_ref=order_ref,
            context_type="print_job",
            context_id=str(job_id),
        )
    )
