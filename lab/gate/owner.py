"""The owner's path through the gate: a customer reading their own original (a download, or a proof rendered
from it), recorded as owner access with the SHA-256 of exactly what is sent, or as denied if nothing is."""

from __future__ import annotations

import hashlib
import logging

from django.db import DatabaseError, transaction

from lab.accounts.models import User
from lab.audit.models import AuditRecord, Purpose
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.gate.access import Delivery, sealed_or_refused
from lab.gate.errors import GateError
from lab.gate.refusals import AuditUnavailable, ImageGone, ImageNotFound
from lab.gate.variants import media_type_of
from lab.orders.errors import OrderError
from lab.orders.models import Asset
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.vault import vault_read

# The gate's one logger, named as before its modules were split: log routing and alerts key on the name.
logger = logging.getLogger("lab.gate.access")


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
        content_type=media_type_of(asset=asset, original=original),
    )


def owner_original_read(*, user: User, asset: Asset) -> bytes:
    """The owner's own original, through the gate's checks (theirs, ready, sealed, not purged), recorded
    nowhere yet: the caller records what it sends with owner_delivery_record before sending it (a proof is
    rendered from the original first, lab.gate.proofs), or owner_refusal_record if it sends nothing."""
    if asset.owner_id != user.pk:
        raise ImageNotFound(OrderError.ASSET_NOT_FOUND, "No such photo.")
    if asset.status != Asset.Status.READY:
        raise ImageGone(GateError.IMAGE_UNAVAILABLE, "This photo no longer exists.")
    sealed_or_refused(asset)
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
