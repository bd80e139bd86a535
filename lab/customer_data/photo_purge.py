"""The purge of a photo: its data key destroyed and `image.purge` recorded in one transaction, its files
after commit, a privacy receipt owed once an order's photos are all gone; and a refused under-13 guest's."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from lab.audit.records import Entry, audit_append
from lab.customer_data.errors import CustomerDataError
from lab.customer_data.purged_files import blobs_of_the_photo, purged_files_delete_after_commit
from lab.customer_data.retention_rules import RULE_ERASURE, RULE_UNDER_AGE, Cutoffs, orders_keeping
from lab.lib.errors import Conflict
from lab.lib.tasks import enqueue
from lab.orders.intake import guest_refused_under_age
from lab.orders.models import Asset, AssetUploadKey, Order, OrderItem
from lab.privacy.vault import data_key_destroy
from lab.production.models import PrintJob

logger = logging.getLogger(__name__)


class AssetStillNeeded(Conflict):
    """The photo belongs to an order that may still be printed; nothing was changed."""


def _orders_using_locked(asset: Asset) -> list[Order]:
    """Lock the orders that print this photo: a status change (paid, released) waits for the purge."""
    order_ids = OrderItem.objects.filter(asset=asset).values("order_id")
    return list(Order.objects.select_for_update().filter(pk__in=order_ids).order_by("-created_at", "-pk"))


def _its_own_key(asset: Asset) -> bool:
    """Whether no other photo's row names the key this one names: each photo has a key of its own, and a row
    re-pointed in the database at another photo's key had that photo shredded by the purge."""
    if Asset.objects.filter(data_key_id=asset.data_key_id).exclude(pk=asset.pk).exists():
        logger.error("purge destroys no key: another photo's row names it asset=%s", asset.pk)
        return False
    return True


# A purge destroys the data key and records `image.purge` in one transaction; the files go after commit
# (each named by a row of that transaction until it is gone, for the sweep to finish a purge killed in
# between), and a copy of them (a backup) stays unreadable because the only key that opened it is gone.
# Once an order's photos are all purged, its customer is sent a signed privacy receipt (receipts.py).
def asset_purge(
    *,
    asset_id: uuid.UUID | str,
    rule: str,
    cutoffs: Cutoffs | None,
    purpose: str = "retention",
    unbound_only: bool = False,
) -> bool:
    """Destroy a photo for good: its data key, its original and every raster made from it.

    Returns False when it was purged already, or (`unbound_only`) when, under its lock, an account owns it
    or an order holds or prints it: then nothing is changed. Raises AssetStillNeeded (and changes nothing)
    when an order using it still needs it under `cutoffs` (None: only open orders count, as for an erasure).
    """
    with transaction.atomic():
        # Only the asset row: data_key is nullable, and PostgreSQL cannot lock the null side of an outer join.
        asset = Asset.objects.select_for_update(of=("self",)).select_related("data_key").get(pk=asset_id)
        if asset.status == Asset.Status.PURGED:
            return False
        orders = _orders_using_locked(asset)
        if unbound_only and (asset.owner_id is not None or asset.guest_order_id is not None or orders):
            return False
        kept_by = orders_keeping(cutoffs).filter(pk__in=[order.pk for order in orders])
        keeping = set(kept_by.values_list("pk", flat=True))
        blocking = [order for order in orders if order.pk in keeping]
        if blocking:
            raise AssetStillNeeded(
                CustomerDataError.ASSET_STILL_NEEDED,
                "An order still needs this photo.",
                asset=str(asset.pk),
                orders=[order.ref for order in blocking],
            )
        jobs = PrintJob.objects.filter(item__asset=asset).exclude(raster_blob="")
        # Before the key goes: the rasters are checked with it (blobs_of_the_photo).
        names = blobs_of_the_photo(asset, rasters=jobs.values_list("pk", "raster_blob"))
        if asset.data_key is not None and _its_own_key(asset):
            data_key_destroy(data_key=asset.data_key)
        now = timezone.now()
        # The ICC profile's description is text from the customer's file (it can name them), like the URL.
        Asset.objects.filter(pk=asset.pk).update(
            status=Asset.Status.PURGED,
            purged_at=now,
            blob_name="",
            source_url="",
            failure_message="",
            icc_description="",
        )
        jobs.update(raster_blob="", updated_at=now)
        # Its upload's Idempotency-Key goes with it (hashes only, but nothing of a purged photo is kept): a
        # retry of that key stores the photo afresh.
        AssetUploadKey.objects.filter(asset_id=asset.pk).delete()
        audit_append(
            Entry(
                action="image.purge",
                actor_id=None,
                actor_role="system",
                outcome="done",
                rule=rule,
                purpose=purpose,
                asset_id=str(asset.pk),
                order_ref=orders[0].ref if orders else None,
            )
        )
        purged_files_delete_after_commit(names, kind="photo", of=f"asset={asset.pk}")
        if rule != RULE_ERASURE:
            # Each order whose photos are now all gone owes its customer a privacy receipt (an erasure issues
            # its own); by name, as the receipts build on this module, and redone by the receipts sweep.
            for order in orders:
                if not order.is_anonymized:
                    transaction.on_commit(
                        partial(enqueue, "privacy.receipt_issue", order_id=order.pk, reason="purged")
                    )
    logger.info("asset purged asset=%s rule=%s", asset.pk, rule)
    return True


@receiver(guest_refused_under_age, sender=Order, dispatch_uid="customer_data.under_age_photos_purge")
def under_age_photos_purge(*, asset_ids: Iterable[str], **_: object) -> int:
    """COPPA: purge the photos a guest refused as under 13 named in the refused request, now (each in its own
    transaction), instead of a week later by the never-ordered rule. Only unbound guest uploads: a photo an
    account owns or an order holds is someone else's, and naming its id must not destroy it (checked again
    under the photo's lock, against a request binding it meanwhile). Returns how many were purged."""
    ids: list[uuid.UUID] = []
    for value in asset_ids:
        try:
            ids.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    unbound = Asset.objects.filter(pk__in=ids, owner__isnull=True, guest_order__isnull=True).exclude(
        status=Asset.Status.PURGED
    )
    purged = 0
    for asset_id in list(unbound.order_by("pk").values_list("pk", flat=True)):
        purged += asset_purge(
            asset_id=asset_id, rule=RULE_UNDER_AGE, cutoffs=None, purpose="coppa", unbound_only=True
        )
    return purged
