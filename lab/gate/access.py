"""The access gate: the only code path that hands customer image bytes to a person.

A request names the photo, a purpose from the privacy policy, a justification and the context it rests on;
the gate decides by role and by the current state of that context, records the decision (and the SHA-256 of
exactly what is delivered) in the audit chain in the same transaction, and fails closed.

Its parts: the decision rules (lab.gate.rules), grants (lab.gate.grants), refusals and their records
(lab.gate.refusals), the bytes of each variant (lab.gate.variants) and the owner's path (lab.gate.owner).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NoReturn

from django.db import DatabaseError, connection, transaction

from lab.accounts.models import User
from lab.accounts.roles import primary_role
from lab.audit.models import AccessGrant, AuditRecord, ReviewItem
from lab.audit.records import RequestMeta, audit_append
from lab.gate.anomalies import ALWAYS_REVIEWED
from lab.gate.errors import GateError
from lab.gate.facts import Facts, facts_gather, grant_of
from lab.gate.grants import grant_for, grant_refusal
from lab.gate.refusals import AuditUnavailable, ImageGone, access_entry, refuse
from lab.gate.rules import AccessRequest, Decision, request_decide
from lab.gate.variants import VARIANT_ACTIONS, TooLargeToReEncode, variant_render
from lab.orders.models import Asset
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.vault import vault_read

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    data: bytes
    content_type: str
    sha256: str
    audit_seq: int


def sealed_or_refused(asset: Asset) -> None:
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
    sealed_or_refused(asset)
    try:
        original = vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
        data, media_type = variant_render(
            asset=asset, original=original, variant=request.variant, viewer=f"{role}:{actor_id[:8]}", at=now
        )
    except (KeyDestroyed, DecryptionFailed, FileNotFoundError) as error:
        raise ImageGone(GateError.IMAGE_UNAVAILABLE, "This photo no longer exists.", rule="purged") from error
    except TooLargeToReEncode:
        # Recorded as any refusal; the person's grants stay: the task is still open and the preview fits.
        refuse(
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
                grant = grant_for(user=user, asset=asset, request=request, now=now, live=live)
            follows = _written_after_delivery(grant=grant, request=request)
            record = audit_append(
                access_entry(
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


def _granted_or_refused(
    *, user: User, request: AccessRequest, meta: RequestMeta
) -> tuple[Facts, Asset, Decision]:
    """Read the facts and decide; a refusal is recorded and raised here: callers go on only when granted."""
    facts = facts_gather(user=user, request=request)
    decision = request_decide(user=user, role=primary_role(user), request=request, facts=facts)
    asset = _photo_unless_refused(user=user, request=request, facts=facts, decision=decision, meta=meta)
    return facts, asset, decision


def _photo_unless_refused(
    *, user: User, request: AccessRequest, facts: Facts, decision: Decision, meta: RequestMeta
) -> Asset:
    """The photo of a granted decision; a refusal is recorded (ending the grants the facts found open on its
    scope) and raised."""
    if not decision.granted:
        refuse(
            user=user,
            request=request,
            asset=facts.asset,
            decision=decision,
            meta=meta,
            has_open_grants=facts.has_open_grants,
        )
    assert facts.asset is not None
    return facts.asset


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
        return grant_for(user=user, asset=asset, request=request, now=facts.now, live=facts.grant)


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
    decision = request_decide(user=user, role=primary_role(user), request=request, facts=facts)
    # The grant's own limits come first (an unknown variant aside); the context is still decided, so an
    # expired grant's refusal names the order it was for.
    refusal = (
        grant_refusal(grant=grant, request=request, now=facts.now)
        if decision.rule != "unknown_variant"
        else None
    )
    if refusal is not None:
        decision = replace(refusal, order_ref=decision.order_ref)
    asset = _photo_unless_refused(user=user, request=request, facts=facts, decision=decision, meta=meta)
    assert grant is not None
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
    refuse(
        user=user,
        request=request,
        asset=None,
        decision=Decision(False, rule, refusal=refusal),
        meta=meta,
        has_open_grants=False,
    )
