"""Retention: how long photos and rasters are kept, the purge that crypto-shreds a photo, and the sweep (which
also deletes ended sessions, orphan data keys, old sign-in events of no account and old mail files).

A purge destroys the data key and records `image.purge` in one transaction; the files go after commit (each
named by a row of that transaction until it is gone, for the sweep to finish a purge killed in between), and a
copy of them (a backup) stays unreadable because the only key that opened it is gone. Once an order's photos
are all purged, its customer is sent a signed privacy receipt (lab/customer_data/receipts.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any

import stripe
from django.conf import settings
from django.core.mail.backends.filebased import EmailBackend as FileEmailBackend
from django.db import DatabaseError, transaction
from django.db.models import Model, Q, QuerySet
from django.db.models.functions import Now
from django.dispatch import receiver
from django.utils import timezone
from django.utils.module_loading import import_string
from prometheus_client import Counter as MetricCounter

from lab.accounts.models import SecurityEvent
from lab.accounts.sessions import sessions_expired_delete
from lab.accounts.signin import EmailPeriod, email_digest
from lab.audit.records import Entry, audit_append
from lab.customer_data.errors import CustomerDataError
from lab.lib.errors import Conflict, DomainError, UpstreamError
from lab.lib.tasks import enqueue
from lab.orders.cancellation import order_cancel
from lab.orders.intake import guest_refused_under_age
from lab.orders.models import Asset, AssetUploadKey, Order, OrderItem
from lab.orders.payments import ONE_TRY, stripe_client
from lab.orders.states import OrderStatus
from lab.orders.stripe_events import payment_found_at_stripe_apply
from lab.privacy.models import BlobDeletion, DataKey
from lab.privacy.vault import data_key_destroy, vault_blob_authenticates, vault_blob_verify, vault_delete
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus

logger = logging.getLogger(__name__)

# A purge's file that could not be deleted after its commit (a disk error, permissions, a read-only mount):
# a raster left this way still decrypts under the photo's live key (raster_purge keeps the key), and its row
# is blanked, so no later purge names it again: only its BlobDeletion row does, tried again by each sweep.
# Before, only a line in the error log said so; this counts each failed try for an alert (README,
# Monitoring: printlab_purge_file_delete_failures_total).
PURGE_FILE_DELETE_FAILURES = MetricCounter(
    "printlab_purge_file_delete_failures",
    "Files of a purged photo or raster (retention, erasure) that could not be deleted after the purge "
    "committed; each is left on disk (a raster readable while its photo's key lives).",
    ["kind"],
)

RULE_SHIPPED = "shipped_order"
RULE_UNPAID = "unpaid_order"
RULE_CANCELLED = "cancelled_order"
RULE_NEVER_ORDERED = "never_ordered"
RULE_ERASURE = "erasure"
RULE_UNDER_AGE = "under_age"  # COPPA: the photos of a guest refused as under 13, purged with the refusal
RULE_PRINTED_RASTER = "printed_raster"

S = OrderStatus
# An order in one of these still needs its photos; neither retention nor erasure touches them.
PHOTO_NEEDED_STATUSES = frozenset({S.PAID, S.IN_PRODUCTION, S.ON_HOLD, S.READY_TO_PACK, S.PACKED})
# An unpaid order may still be paid (and then printed): retention first cancels it when it is stale.
HOLDING_STATUSES = PHOTO_NEEDED_STATUSES | {S.AWAITING_PAYMENT}
SHIPPED_STATUSES = frozenset({S.SHIPPED, S.DELIVERED})
# A photo not yet purged (what a purge may still take).
LIVE_ASSET_STATUSES = frozenset(set(Asset.Status) - {Asset.Status.PURGED})
UNPAID_PAYMENT_STATUSES = frozenset(
    {Order.PaymentStatus.NONE, Order.PaymentStatus.REQUIRES_PAYMENT, Order.PaymentStatus.FAILED}
)

# Defaults of the RETENTION_* settings (lab/settings.py); read with getattr so a partial settings
# module (a management shell, an older deployment) still applies the documented schedule.
DEFAULT_DAYS = {
    "RETENTION_SHIPPED_DAYS": 30,
    "RETENTION_RASTER_DAYS": 7,
    "RETENTION_UNPAID_DAYS": 7,
    "RETENTION_UNUSED_DAYS": 7,
}
DEFAULT_BATCH = 500
# A sweep starts no new batch of a rule after this long from its start (each rule's first batch always runs),
# well inside its task's soft time limit (840 s, workers/privacy_tasks.py), the batches under way and the
# sweep's other chores after them included; what is left is logged and taken up by the next sweep. Before, a
# sweep purged one batch per rule (RETENTION_BATCH, 500) and stopped: 12,000 a rule a day at the hourly
# interval, while bench/scale printed ~500,000 rasters a day, so photos and rasters outlived their promised
# retention for good and the disk filled.
SWEEP_TIME_BUDGET_SECONDS = 600.0
# A count of the gauge stops here: enough to say how far behind, cheap when far.
DUE_LATE_CAP = 10_000
# What a sweep reports, always in this order (zeros included), so an operator can compare runs.
SWEEP_COUNTS = (
    "orders_expired",
    RULE_SHIPPED,
    RULE_UNPAID,
    RULE_CANCELLED,
    RULE_NEVER_ORDERED,
    RULE_PRINTED_RASTER,
    "still_needed",
    "sessions_expired",
    "orphan_keys_destroyed",
    "unknown_account_events_deleted",
)
# Failed sign-ins that found no account (by the e-mail's SHA-256, with the client's address) are kept this
# long for an operator looking into a guessing attack, then deleted. The sign-in limits never read them (they
# count in the shared cache, over SIGNIN_WINDOW_SECONDS); an account's own events go with the account.
UNKNOWN_ACCOUNT_EVENTS_KEPT = timedelta(days=7)
# Demo mode's file mail backend (lab/settings.py) writes every e-mail, in plaintext, into EMAIL_FILE_PATH:
# addresses, carriers and tracking numbers, receipts' bearer links. The files are kept this long after their
# last message, then deleted: the privacy policy sets no period for them, so the shortest of the retention
# schedule (rasters, unpaid orders, photos never ordered: 7 days). Before, nothing ever deleted them.
MAIL_FILES_KEPT = timedelta(days=7)
# A purge's file still named by its BlobDeletion row this long after the purge: its after-commit delete never
# ran (the process killed after the COMMIT) or failed, and the sweep deletes it. Younger rows are left to the
# purge's own hooks, which run moments after its commit (a sweep deleting one too is harmless: both deletes
# are idempotent).
BLOB_DELETION_GRACE = timedelta(minutes=5)
# A data key no photo row names after this long belongs to an upload whose web process was killed between the
# key (committed on its own) and the photo's row: gunicorn ends a request after 60 s, so it never comes.
ORPHAN_KEY_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class RetentionPolicy:
    shipped_days: int
    raster_days: int
    unpaid_days: int
    unused_days: int
    batch: int

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        def days(name: str) -> int:
            return int(getattr(settings, name, DEFAULT_DAYS[name]))

        return cls(
            shipped_days=days("RETENTION_SHIPPED_DAYS"),
            raster_days=days("RETENTION_RASTER_DAYS"),
            unpaid_days=days("RETENTION_UNPAID_DAYS"),
            unused_days=days("RETENTION_UNUSED_DAYS"),
            batch=int(getattr(settings, "RETENTION_BATCH", DEFAULT_BATCH)),
        )


@dataclass(frozen=True)
class Cutoffs:
    """An order releases its photos once shipped before `shipped_before`, or cancelled and created before
    `unpaid_before`."""

    shipped_before: datetime
    unpaid_before: datetime

    @classmethod
    def at(cls, *, policy: RetentionPolicy, now: datetime) -> Cutoffs:
        return cls(
            shipped_before=now - timedelta(days=policy.shipped_days),
            unpaid_before=now - timedelta(days=policy.unpaid_days),
        )


class AssetStillNeeded(Conflict):
    """The photo belongs to an order that may still be printed; nothing was changed."""


def _orders_keeping(cutoffs: Cutoffs | None) -> QuerySet[Order]:
    """The orders that keep their photos: open ones, and under `cutoffs` (None: an erasure, where only open
    orders count) those shipped or cancelled too recently, and those with a job a printer may still hold. The
    one rule the purge decides by under its locks, and the sweep leaves their photos out of its batches (and
    the gauge out of what it calls late), so photos that cannot go yet never take the places of photos that
    can."""
    if cutoffs is None:
        return Order.objects.filter(status__in=HOLDING_STATUSES)
    return Order.objects.filter(
        Q(status__in=HOLDING_STATUSES)
        | Q(status__in=SHIPPED_STATUSES, shipped_at__gt=cutoffs.shipped_before)
        | Q(status__in=SHIPPED_STATUSES, shipped_at__isnull=True, updated_at__gt=cutoffs.shipped_before)
        | Q(status=S.CANCELLED, created_at__gt=cutoffs.unpaid_before)
        | ~Q(status__in=HOLDING_STATUSES | SHIPPED_STATUSES | {S.CANCELLED})
        # A cancelled job whose decrypted raster may still sit in its printer's spool (cancel_at_printer: the
        # printer was unreachable at the cancel) until the poll settles it. Before, the order's photo key was
        # destroyed and a "purged" receipt sent while that plain copy could still print; the erasure waits
        # for it (erasure.py: WITHDRAWING_FROM_PRINTER_REASON), and retention now does too.
        | Q(pk__in=PrintJob.objects.filter(cancel_at_printer=True).values("order_id"))
    )


def _orders_using_locked(asset: Asset) -> list[Order]:
    """Lock the orders that print this photo: a status change (paid, released) waits for the purge."""
    order_ids = OrderItem.objects.filter(asset=asset).values("order_id")
    return list(Order.objects.select_for_update().filter(pk__in=order_ids).order_by("-created_at", "-pk"))


def _delete_after_commit(names: Iterable[str], *, kind: str, of: str) -> None:
    """`of`: whose files they are, for the log (`asset=<id>`, `job=<id>`)."""
    for name in names:
        if name:
            # In the purge's transaction, a row naming the file until it is deleted: a process killed between
            # the COMMIT and these hooks (a deploy's restart during a sweep; or PostgreSQL applying a COMMIT
            # whose answer is lost, when Django runs none), left a file no row named, a raster decrypting
            # under its photo's live key, for good. The sweep now deletes what such rows name
            # (purged_files_delete).
            deletion = BlobDeletion.objects.create(name=name, kind=kind, of=of)
            # After commit: a rolled-back purge must leave the files (and the key) as they were. One hook per
            # file (there were two, a first try and a confirm a moment later, which found the same error): a
            # failure is counted and logged, and the row left for the next sweep. A named closure, not
            # functools.partial: Django's robust on_commit logs a failed hook by its __qualname__, which a
            # partial lacks, and that AttributeError escaped the commit, dropping the hooks after it and
            # crashing the sweep at that photo.
            transaction.on_commit(
                _file_delete_hook(deletion_id=deletion.pk, name=name, kind=kind, of=of), robust=True
            )


def _file_delete_hook(*, deletion_id: int, name: str, kind: str, of: str) -> Callable[[], None]:
    def file_delete() -> None:
        _purged_file_delete(deletion_id=deletion_id, name=name, kind=kind, of=of)

    return file_delete


def _purged_file_delete(*, deletion_id: int, name: str, kind: str, of: str) -> bool:
    """Delete a purged file (one already gone is nothing to do), then the row naming it; count and log a file
    that cannot be deleted (by ids and error type only: an OSError's text names the path), whose row stays
    for the next sweep to try again. Returns whether the file is gone."""
    try:
        vault_delete(name=name)
    except Exception as error:
        PURGE_FILE_DELETE_FAILURES.labels(kind=kind).inc()
        logger.error("purged file not deleted kind=%s %s error=%s", kind, of, type(error).__name__)
        return False
    try:
        BlobDeletion.objects.filter(pk=deletion_id).delete()
    except DatabaseError as error:  # the file is gone: the sweep deletes the row
        logger.warning(
            "purged file deleted, its row left kind=%s %s error=%s", kind, of, type(error).__name__
        )
    return True


def purged_files_delete(*, before: datetime, limit: int, until: float) -> int:
    """Delete the files that purges committed before `before` left named by their rows (BlobDeletion: the
    process killed before its after-commit deletes, or a delete failed), `limit` rows at a time, the next
    batch only while a batch came back full and the monotonic clock is before `until`. Returns how many were
    deleted; a file that still cannot be deleted is counted and logged, and its row kept."""
    deleted, last = 0, 0
    while True:
        rows = list(BlobDeletion.objects.filter(created_at__lte=before, pk__gt=last).order_by("pk")[:limit])
        for row in rows:
            deleted += _leftover_file_delete(row.pk)
        if len(rows) < limit or time.monotonic() >= until:
            break
        last = rows[-1].pk
    if deleted:
        logger.warning("files of purges killed after their commit deleted count=%d", deleted)
    return deleted


def _leftover_file_delete(deletion_id: int) -> bool:
    """Delete the file one BlobDeletion row names, and the row, under the row's lock. A rasterizing worker
    names its raster by such a row before writing it, and locks it in the transaction that names the file
    on its job and deletes the row (lab/production/rasterizing.py): a row it holds is skipped, and a worker
    that stalled past the grace finds its row gone, and its raster with it, and names nothing."""
    with transaction.atomic():
        row = BlobDeletion.objects.select_for_update(skip_locked=True).filter(pk=deletion_id).first()
        if row is None:
            return False  # deleted meanwhile, or held by the transaction that names its file
        if _still_named(row.name):
            # A purge blanks the column that named its file in the transaction that writes the row: a row
            # naming a file a photo or job still names was written outside the lab (the app's database role,
            # a DBA), to have the sweep delete a live customer's photo. Left, row and file, and logged at
            # every sweep by ids only.
            logger.error(
                "purged file row names a file still in use, left deletion=%s kind=%s %s",
                row.pk,
                row.kind,
                row.of,
            )
            return False
        return _purged_file_delete(deletion_id=row.pk, name=row.name, kind=row.kind, of=row.of)


def _still_named(name: str) -> bool:
    return Asset.objects.filter(blob_name=name).exists() or PrintJob.objects.filter(raster_blob=name).exists()


def _blobs_of_the_photo(
    asset: Asset,
    *,
    rasters: Iterable[tuple[int, str]],
    with_original: bool = True,
    is_unreadable_raised: bool = False,
) -> list[str]:
    """The files of this photo a purge deletes: the names its row (`with_original`) and its jobs' rows give,
    each checked first.

    A name comes from a column the database alone can change: a photo's row re-pointed at another customer's
    blob, or a job's raster at another photo's original, had the lab's own purge delete that customer's
    photo. Nothing is taken unless the photo row's seal holds (ASSET_SEALED_FIELDS: its key and file as the
    lab wrote them; otherwise its key may be another photo's); then its original, and a raster only when it
    authenticates under the photo's key as a raster (vault_blob_authenticates: the whole blob is read and
    decrypted, its header naming no key nor purpose; the purpose is bound as AAD, so the photo's own original
    does not pass). What is not taken is left on disk and logged by ids only.

    `is_unreadable_raised`: a raster that is there and cannot be read (an I/O error) raises its OSError
    rather than count as not this photo's (vault_blob_verify), for a purge that keeps the photo's key: its
    caller then keeps the job's column naming it, for a later sweep to try again."""
    if not asset.is_sealed:
        logger.error("purge deletes no file: the photo's row was changed outside the lab asset=%s", asset.pk)
        return []
    names = [asset.blob_name] if with_original else []
    authenticates = vault_blob_verify if is_unreadable_raised else vault_blob_authenticates
    for job_id, name in rasters:
        if authenticates(data_key=asset.data_key, name=name, purpose="raster"):
            names.append(name)
        else:
            logger.error("raster file kept: not this photo's raster asset=%s job=%s", asset.pk, job_id)
    return names


def _its_own_key(asset: Asset) -> bool:
    """Whether no other photo's row names the key this one names: each photo has a key of its own, and a row
    re-pointed in the database at another photo's key had that photo shredded by the purge."""
    if Asset.objects.filter(data_key_id=asset.data_key_id).exclude(pk=asset.pk).exists():
        logger.error("purge destroys no key: another photo's row names it asset=%s", asset.pk)
        return False
    return True


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
        kept_by = _orders_keeping(cutoffs).filter(pk__in=[order.pk for order in orders])
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
        # Before the key goes: the rasters are checked with it (_blobs_of_the_photo).
        names = _blobs_of_the_photo(asset, rasters=jobs.values_list("pk", "raster_blob"))
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
        _delete_after_commit(names, kind="photo", of=f"asset={asset.pk}")
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


def raster_purge(*, job_id: int, cutoff: datetime) -> bool:
    """Delete the raster of a job printed (or cancelled) before `cutoff`; the original is untouched."""
    with transaction.atomic():
        job = (
            PrintJob.objects.select_for_update(of=("self",))
            .filter(pk=job_id, status__in=[JobStatus.PRINTED, JobStatus.CANCELLED])
            .exclude(raster_blob="")
            .select_related("order")
            .first()
        )
        if job is None or (job.printed_at or job.updated_at) > cutoff:
            return False
        asset = Asset.objects.select_related("data_key").get(pk=job.item.asset_id)
        try:
            names = _blobs_of_the_photo(
                asset, rasters=[(job.pk, job.raster_blob)], with_original=False, is_unreadable_raised=True
            )
        except OSError as error:
            # The store could not read it (EIO, a stale mount): whether it is this photo's raster is unknown,
            # and it still decrypts under the photo's live key. Before, the column was blanked all the same
            # and the file left with no row naming it, for good; now the job keeps naming it, the next sweep
            # tries again, and the gauge (retention_due_late) counts it late meanwhile. By ids and the
            # error's type only: its text names the path.
            logger.warning(
                "raster not purged: its file could not be read job=%s error=%s", job.pk, type(error).__name__
            )
            return False
        PrintJob.objects.filter(pk=job.pk).update(raster_blob="", updated_at=timezone.now())
        JobEvent.objects.create(job=job, kind="raster_purged", note=RULE_PRINTED_RASTER)
        audit_append(
            Entry(
                action="raster.purge",
                actor_id=None,
                actor_role="system",
                outcome="done",
                rule=RULE_PRINTED_RASTER,
                purpose="retention",
                asset_id=str(job.item.asset_id),
                order_ref=job.order.ref,
                context_type="print_job",
                context_id=str(job.pk),
            )
        )
        _delete_after_commit(names, kind="raster", of=f"job={job.pk}")
    logger.info("raster purged job=%s", job_id)
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


# --- The sweep (beat task "privacy.retention_purge", `manage.py retention_purge`) -----------------


def _stale_unpaid_orders(before: datetime) -> QuerySet[Order]:
    return Order.objects.filter(status=S.AWAITING_PAYMENT, created_at__lte=before).exclude(
        payment_status=Order.PaymentStatus.SUCCEEDED  # money arrived: the webhook will move it on
    )


# A PaymentIntent in one of these may still be paid (its money on its way, or authorised and not captured):
# its order is left to a later sweep.
INTENT_PAYING = frozenset({"processing", "requires_capture"})


def _intent_read(order: Order) -> dict[str, Any] | None:
    """The order's PaymentIntent as Stripe has it now (the fields `payment_found_at_stripe_apply` reads, and
    its status), read once (ONE_TRY) outside any transaction; `{}` when Stripe has no such intent, None when
    Stripe did not answer (logged by ids and error type only)."""
    try:
        intent = stripe_client().v1.payment_intents.retrieve(order.payment_intent_id, options=ONE_TRY)
    except stripe.InvalidRequestError as error:
        if error.http_status == 404:
            return {}  # no such intent: no money can have moved through it
        logger.warning("unpaid order not read at stripe order=%s error=%s", order.ref, type(error).__name__)
        return None
    except (stripe.StripeError, UpstreamError) as error:
        logger.warning("unpaid order not read at stripe order=%s error=%s", order.ref, type(error).__name__)
        return None
    return {
        "id": intent.id,
        "status": str(intent.status),
        "amount": getattr(intent, "amount", None),
        # Stripe always answers it; localstripe (the tests' Stripe) does not, and `amount` is read then.
        "amount_received": getattr(intent, "amount_received", None),
        "currency": getattr(intent, "currency", None),
    }


@dataclass
class _StripeReads:
    """Within one expiry run (a sweep): once Stripe did not answer, it is not asked again. Before, each stale
    unpaid order was read in turn, ONE_TRY of up to STRIPE_TIMEOUT_SECONDS each: a stalled Stripe and 84
    orders ran the sweep into its task's time limit before any purge, every hour."""

    is_silent: bool = False
    orders_left: int = 0  # orders left to a later sweep unread, Stripe being silent


def _expiry_waits_for_stripe(order: Order, *, reads: _StripeReads) -> bool:
    """Whether the unpaid order is left to a later sweep: Stripe says its money may still come, or does not
    answer. One Stripe says was paid is paid now, and `order_cancel` then refuses it under the order's lock.

    The lab's own record is not enough: a customer who paid shortly before the deadline, whose
    payment_intent.succeeded came late (the endpoint down, Stripe's retries backing off), had the order
    cancelled, its photos purged and the payment refunded. A succeeded intent is applied now, under the
    order's lock, as its event would be (amount and currency compared: another amount is refunded, and the
    order still expires); one processing or awaiting capture, or Stripe not answering, leaves the order to
    the next sweep. The erasure guards its unpaid orders the same way (erasure.py `_paid_at_stripe`)."""
    if not order.payment_intent_id or order.payment_status not in UNPAID_PAYMENT_STATUSES:
        return False
    if reads.is_silent:
        reads.orders_left += 1
        return True
    intent = _intent_read(order)
    if intent is None:
        reads.is_silent = True
        logger.warning(
            "stripe silent: unpaid orders with an intent left to the next sweep order=%s", order.ref
        )
        return True
    status = intent.get("status")
    if status == "succeeded":
        payment_found_at_stripe_apply(order_id=order.pk, intent=intent)
        # Paid now, or its other amount refunded: `order_cancel` decides which under the lock.
        return False
    if status in INTENT_PAYING:
        logger.info("unpaid order not expired order=%s intent=%s", order.ref, status)
        return True
    return False


def _order_expired(order_id: int, *, reads: _StripeReads) -> bool:
    """Cancel the order if it is still unpaid, at Stripe too (`_expiry_waits_for_stripe`), decided under its
    lock (`only_unpaid`): the sweep read its id before, and the order may have been paid since."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None or _expiry_waits_for_stripe(order, reads=reads):
        return False
    try:
        order_cancel(order=order, actor=None, actor_kind="system", only_unpaid=True)
    except DomainError as error:  # paid or cancelled meanwhile
        logger.info("unpaid order not expired order=%s code=%s", order.ref, error.code)
        return False
    return True


def orders_expire_unpaid(*, before: datetime, limit: int) -> int:
    """Cancel orders left unpaid since before `before` (at most `limit`, oldest first): their photos are about
    to go, and a cancelled PaymentIntent cannot be paid later for prints we could no longer make."""
    stale = _stale_unpaid_orders(before).order_by("created_at").values_list("pk", flat=True)[:limit]
    reads = _StripeReads()
    return sum(_order_expired(order_id, reads=reads) for order_id in list(stale))


def _asset_purge_counted(asset_id: uuid.UUID, *, rule: str, cutoffs: Cutoffs) -> str:
    try:
        return rule if asset_purge(asset_id=asset_id, rule=rule, cutoffs=cutoffs) else "already_purged"
    except AssetStillNeeded:
        return "still_needed"


def _after(order: tuple[str, ...], row: tuple[object, ...]) -> Q:
    """The rows after `row` in `order` (its fields, the last one unique): a keyset, (a, b) > (x, y)."""
    later = Q(**{f"{order[-1]}__gt": row[-1]})
    for name, value in zip(reversed(order[:-1]), reversed(row[:-1]), strict=True):
        later = Q(**{f"{name}__gt": value}) | (Q(**{name: value}) & later)
    return later


@dataclass
class _RuleRun:
    """One rule's work in a sweep, done a batch (RETENTION_BATCH) at a time in a fixed order, each batch read
    after the last row of the one before: a row refused (kept by an order meanwhile, purged by another run)
    is tried once a sweep, and never comes back to hold up the rows behind it."""

    name: str  # what the sweep's counts call it
    rows: QuerySet[Model]  # ordered by `order`
    order: tuple[str, ...]  # the last field unique (the primary key), and handed to `handle`
    handle: Callable[[Any], str | None]  # one row's key: the count it adds to, None for none
    batch: int
    # Whether a batch stops between rows once its time is spent (after one row at least): a row that may wait
    # on the outside world (the expiry's Stripe read) would otherwise run a batch far past its share.
    is_timed_by_row: bool = False
    batches: int = 0
    drained: bool = False
    last: tuple[object, ...] | None = field(default=None)

    def _rest(self) -> QuerySet[Model]:
        return self.rows if self.last is None else self.rows.filter(_after(self.order, self.last))

    def batch_run(self, counts: Counter[str], *, until: float) -> None:
        page: list[tuple[object, ...]] = list(self._rest().values_list(*self.order)[: self.batch])
        done = 0
        for row in page:
            if done and self.is_timed_by_row and time.monotonic() >= until:
                break
            if (counted := self.handle(row[-1])) is not None:
                counts[counted] += 1
            done += 1
        self.batches += 1
        self.drained = done == len(page) and len(page) < self.batch
        if done:
            self.last = page[done - 1]

    def left(self) -> int:
        """How many rows this sweep did not get to (counted only when asked: after the budget ran out)."""
        return 0 if self.drained else self._rest().count()


def _runs_drain(runs: list[_RuleRun], counts: Counter[str], *, started: float) -> None:
    """Each rule in turn, in the order given (as before: a photo due under two rules is purged under the
    first), a batch at a time until it is drained or its share of SWEEP_TIME_BUDGET_SECONDS from `started` is
    spent: what is left of the budget, divided among it and the rules after it, so no rule's backlog takes
    the others' time, and a rule drained early leaves its time to the next. Each rule's first batch runs
    whatever the time (a sweep does at least what it did before), but for a rule timed by row (the expiry):
    its first row."""
    deadline = started + SWEEP_TIME_BUDGET_SECONDS
    for index, run in enumerate(runs):
        now = time.monotonic()
        share_ends = now + max(deadline - now, 0.0) / (len(runs) - index)
        run.batch_run(counts, until=share_ends)
        while not run.drained and time.monotonic() < share_ends:
            run.batch_run(counts, until=share_ends)


def orphan_keys_destroy(*, grace: timedelta, limit: int) -> int:
    """Destroy the data keys made more than `grace` ago that no photo row names: an upload commits its key on
    its own, writes the encrypted photo, then the photo's row, and a web process killed in between (SIGKILL,
    the OOM killer, a host lost) left a live key and a readable blob that no purge or erasure could reach.

    A key's age is judged on the database's clock, which dates it (DataKey.created_at): judged on this host's,
    a retention worker whose clock ran two hours ahead of the web host's destroyed the key of an upload still
    in progress, and the photo stored under it a moment later was lost.

    The keys are locked (skipping any an upload holds) and checked against the photo rows in a later
    statement, which sees every row committed before the locks were taken."""
    with transaction.atomic():
        candidates = list(
            DataKey.objects.select_for_update(skip_locked=True)
            .filter(destroyed_at__isnull=True, created_at__lt=Now() - grace)
            .exclude(pk__in=Asset.objects.filter(data_key__isnull=False).values("data_key_id"))
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        named = set(Asset.objects.filter(data_key_id__in=candidates).values_list("data_key_id", flat=True))
        orphans = [pk for pk in candidates if pk not in named]
        destroyed = DataKey.objects.filter(pk__in=orphans).update(wrapped_key=None, destroyed_at=Now())
    if destroyed:
        logger.warning("orphan data keys destroyed count=%d", destroyed)
    return destroyed


def unknown_account_events_delete(*, before: datetime) -> int:
    """Delete the sign-in events of no account recorded before `before` (UNKNOWN_ACCOUNT_EVENTS_KEPT)."""
    deleted, _ = SecurityEvent.objects.filter(user=None, created_at__lt=before).delete()
    return deleted


# --- Mail files (demo mode's file mail backend) -------------------------------------------------------
# Django's file backend (django.core.mail.backends.filebased) writes each message of a send, one after another
# into one file, each followed by a line of 79 dashes. A body may hold such a line too: a separator is one
# followed by the end of the file or a header line (every message starts with its Content-Type header).
_MAIL_SEPARATOR = re.compile(rb"\n-{79}\n(?=\Z|[!-9;-~]+:)")
# The headers that name a message's recipients (the file backend writes no Bcc, an other backend may).
_RECIPIENT_HEADERS = ("To", "Cc", "Bcc")
# A file changed under us (the backend appending a message) is read again this many times at most.
_MAIL_REWRITE_ATTEMPTS = 3
# A Date header names its second (email.utils.formatdate): the message was written within the second after.
_MAIL_DATE_PRECISION = timedelta(seconds=1)


def _mail_dir() -> Path | None:
    """Where the file backend writes (EMAIL_FILE_PATH), while it is the backend (demo mode); None otherwise,
    or when nothing is there. Another backend's processes may share the folder (the test command's, where
    the end-to-end tests' demo processes write): theirs to keep. A host that ran the file backend before its
    switch deletes what it left once (README: EMAIL_BACKEND)."""
    try:
        backend = import_string(settings.EMAIL_BACKEND)
    except ImportError:
        return None
    if not (isinstance(backend, type) and issubclass(backend, FileEmailBackend)):
        return None
    path = getattr(settings, "EMAIL_FILE_PATH", None)
    if not path:
        return None
    directory = Path(path)
    return directory if directory.is_dir() else None


def _mail_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.is_file() and not path.is_symlink())


def mail_files_expire(*, before: datetime) -> int:
    """Delete the mail files last written before `before` (MAIL_FILES_KEPT); a file still being written has a
    fresh modification time and stays. Returns how many were deleted."""
    directory = _mail_dir()
    if directory is None:
        return 0
    deleted = 0
    for path in _mail_files(directory):
        try:
            if path.stat().st_mtime < before.timestamp():
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            continue  # deleted meanwhile (an erasure, another sweep)
    if deleted:
        logger.info("mail files expired count=%d", deleted)
    return deleted


def _address_digest(address: str) -> str:
    """The digest of an address as a mail file writes it (email_digest: the lab's own form, the one an
    `email_changed` event records), a local part Django wrote as an encoded word decoded first; its domain is
    in IDNA already, as the lab's own form has it."""
    local, at, domain = address.strip().rpartition("@")
    if "=?" in local:
        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            local = str(make_header(decode_header(local)))
    return email_digest(f"{local}{at}{domain}")


def _mail_messages(data: bytes) -> list[bytes]:
    """The messages of a mail file, each with its separator line; a last one without (still being written,
    or not the backend's) as it is."""
    messages, start = [], 0
    for separator in _MAIL_SEPARATOR.finditer(data):
        messages.append(data[start : separator.end()])
        start = separator.end()
    if start < len(data):
        messages.append(data[start:])
    return messages


@dataclass(frozen=True)
class _Recipients:
    """Whose messages an erasure deletes: every one to a current address (`digests`), and one to an earlier
    address only if it was written while the account had it (`earlier`, each digest's periods)."""

    digests: frozenset[str]
    earlier: Mapping[str, Sequence[EmailPeriod]]


def _written(headers: Message) -> datetime | None:
    """When the message was written, by its Date header (a date with no zone, `-0000`, taken as UTC); None
    when it has none that can be read."""
    try:
        written = parsedate_to_datetime(str(headers.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return written if written.tzinfo is not None else written.replace(tzinfo=UTC)


def _written_within(written: datetime, period: EmailPeriod) -> bool:
    """Whether a message dated `written` may have been written within `period`: its Date names the second it
    was written in, so one dated the second a period starts or ends counts as in it (the account's, to erase).
    A message written right after a change is seconds away from it: it takes the new holder of the address
    registering and being mailed within that second to make theirs look like the account's."""
    return (period.since is None or period.since < written + _MAIL_DATE_PRECISION) and written <= period.until


def _addressed_to(message: bytes, recipients: _Recipients) -> bool:
    headers = BytesParser().parsebytes(message, headersonly=True)
    values = [str(value) for name in _RECIPIENT_HEADERS for value in headers.get_all(name, [])]
    digests = {_address_digest(address) for _, address in getaddresses(values) if address}
    if digests & recipients.digests:
        return True
    periods = [period for digest in digests for period in recipients.earlier.get(digest, ())]
    if not periods:
        return False
    # A message to an earlier address with no date to read is kept: it may be the next holder's, and the
    # retention sweep deletes its file within MAIL_FILES_KEPT anyway.
    written = _written(headers)
    return written is not None and any(_written_within(written, period) for period in periods)


def _mail_file_rewrite(path: Path, recipients: _Recipients) -> int:
    """Drop the messages addressed to `recipients` from one file (the file deleted when none is left);
    returns how many were dropped. The file is replaced whole, and only if the backend did not append to it
    meanwhile."""
    for _attempt in range(_MAIL_REWRITE_ATTEMPTS):
        try:
            seen = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        messages = _mail_messages(data)
        kept = [message for message in messages if not _addressed_to(message, recipients)]
        dropped = len(messages) - len(kept)
        if not dropped:
            return 0
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".erasure-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(b"".join(kept))
            now = path.stat()
            if (now.st_size, now.st_mtime_ns) != (seen.st_size, seen.st_mtime_ns):
                continue  # a message was appended meanwhile: read the file again
            if kept:
                os.replace(temporary, path)
            else:
                path.unlink()
            return dropped
        except FileNotFoundError:
            return 0
        finally:
            Path(temporary).unlink(missing_ok=True)
    logger.warning("mail file kept changing; erased customer's messages left for the retention sweep")
    return 0


def mail_files_erase(
    *, email: str, earlier_email_digests: Mapping[str, Sequence[EmailPeriod]] | None = None
) -> int:
    """Delete every message of the mail files addressed to `email`, and each one addressed to an address the
    customer had before and written while they had it (`earlier_email_digests`: each address's digest and
    periods, account_earlier_email_periods, read before the erasure deleted the `email_changed` events that
    record them), after the erasure's commit: the file backend's copies of what the lab sent the customer,
    their shipping address, carrier and tracking number among it. Recipients are compared by digest: the
    earlier addresses are known by theirs only. Other recipients' messages stay, those written to an earlier
    address after the customer gave it up too (its next holder's: before, an erasure deleted them, every
    message to every address the account ever had). Returns how many messages were deleted."""
    directory = _mail_dir()
    recipients = _Recipients(
        digests=frozenset([email_digest(email)] if email.strip() else []), earlier=earlier_email_digests or {}
    )
    if directory is None or not (recipients.digests or recipients.earlier):
        return 0
    erased = sum(_mail_file_rewrite(path, recipients) for path in _mail_files(directory))
    if erased:
        logger.info("mail file messages erased count=%d", erased)
    return erased


@dataclass(frozen=True)
class _Due:
    name: str  # the rule, as the sweep's counts name it
    rows: QuerySet[Model]  # what it covers at the time given, ordered by `order`
    order: tuple[str, ...]


def _due(*, policy: RetentionPolicy, now: datetime) -> list[_Due]:
    """What each retention rule covers at `now`, in the order the sweep applies them: the sweep's work, and
    (at `now` one sweep's lag back) what the gauge says it should have done already (retention_due_late)."""
    cutoffs = Cutoffs.at(policy=policy, now=now)
    unused_before = now - timedelta(days=policy.unused_days)
    # First, so the photos of the orders it cancels are due under RULE_UNPAID in this sweep.
    expiring = _Due(
        "orders_expired",
        _stale_unpaid_orders(cutoffs.unpaid_before).order_by("created_at", "pk"),
        ("created_at", "pk"),
    )
    # Candidates skip photos an order still keeps (open, shipped or cancelled too recently): each batch is
    # then photos that can go; asset_purge decides again under lock. Before, a batch of photos due by one
    # order but kept by another was refused at every run and held up every photo after it. Live photos by
    # their status (not "all but purged"): the (status, created_at) index then reads only photos not yet
    # purged, which retention keeps few, not every photo the lab ever had.
    candidates = Asset.objects.filter(status__in=LIVE_ASSET_STATUSES).exclude(
        items__order__in=_orders_keeping(cutoffs)
    )
    rules: list[tuple[str, Q]] = [
        (
            RULE_SHIPPED,
            Q(items__order__status__in=SHIPPED_STATUSES)
            & (
                Q(items__order__shipped_at__lte=cutoffs.shipped_before)
                # Shipped before shipped_at was recorded: the last change of the order stands in for it.
                | Q(
                    items__order__shipped_at__isnull=True,
                    items__order__updated_at__lte=cutoffs.shipped_before,
                )
            ),
        ),
        (
            RULE_UNPAID,
            Q(
                items__order__status=S.CANCELLED,
                items__order__payment_status__in=UNPAID_PAYMENT_STATUSES,
                items__order__created_at__lte=cutoffs.unpaid_before,
            ),
        ),
        (
            RULE_CANCELLED,
            Q(items__order__status=S.CANCELLED, items__order__created_at__lte=cutoffs.unpaid_before),
        ),
        (RULE_NEVER_ORDERED, Q(items__isnull=True, created_at__lte=unused_before)),
    ]
    photos = [
        _Due(rule, candidates.filter(condition).distinct().order_by("created_at", "pk"), ("created_at", "pk"))
        for rule, condition in rules
    ]
    raster_cutoff = now - timedelta(days=policy.raster_days)
    rasters = _Due(
        RULE_PRINTED_RASTER,
        PrintJob.objects.exclude(raster_blob="")
        .filter(
            Q(status=JobStatus.PRINTED, printed_at__lte=raster_cutoff)
            | Q(status=JobStatus.CANCELLED, updated_at__lte=raster_cutoff)
        )
        .order_by("pk"),
        ("pk",),
    )
    return [expiring, *photos, rasters]


def retention_schedule_lag() -> timedelta:
    """How long after it falls due an item must be gone: one sweep interval (RETENTION_SWEEP_SECONDS) for the
    next sweep to start, and its time budget for it to get there."""
    interval = float(getattr(settings, "RETENTION_SWEEP_SECONDS", 3600))
    return timedelta(seconds=interval + SWEEP_TIME_BUDGET_SECONDS)


def retention_due_late(*, now: datetime | None = None, cap: int = DUE_LATE_CAP) -> dict[str, int]:
    """For each rule of the sweep (and the expiry of unpaid orders): how many items fell due under it more
    than retention_schedule_lag() ago and are still here, at most `cap` each (the /metrics gauge
    printlab_retention_due_past_schedule). Above 0, the sweep is not keeping the schedule the README and the
    privacy policy promise: dead, failing, or behind.

    Read at every scrape, so bounded: each count stops at `cap`, the photo rules read only photos not yet
    purged (the Asset status index), the expiry only unpaid orders (the Order status index)."""
    policy = RetentionPolicy.from_settings()
    late = (now or timezone.now()) - retention_schedule_lag()
    return {due.name: due.rows.order_by()[:cap].count() for due in _due(policy=policy, now=late)}


def retention_sweep(*, now: datetime | None = None, policy: RetentionPolicy | None = None) -> dict[str, int]:
    """Apply every retention rule, each a batch (RETENTION_BATCH) at a time until nothing it covers is left or
    SWEEP_TIME_BUDGET_SECONDS is spent; returns how many photos/rasters each rule purged, and `work_left`
    (only when there is any) how many the budget left for the next sweep (logged by rule)."""
    started = time.monotonic()
    policy = policy or RetentionPolicy.from_settings()
    now = now or timezone.now()
    cutoffs = Cutoffs.at(policy=policy, now=now)
    counts: Counter[str] = Counter(dict.fromkeys(SWEEP_COUNTS, 0))
    due = _due(policy=policy, now=now)
    # First, in its share of the budget (one among the rules): the files of purges killed after their commit.
    if purged_files_deleted := purged_files_delete(
        before=now - BLOB_DELETION_GRACE,
        limit=policy.batch,
        until=started + SWEEP_TIME_BUDGET_SECONDS / (len(due) + 1),
    ):
        counts["purged_files_deleted"] = purged_files_deleted
    raster_cutoff = now - timedelta(days=policy.raster_days)
    reads = _StripeReads()
    handles: dict[str, Callable[[Any], str | None]] = {
        "orders_expired": lambda pk: "orders_expired" if _order_expired(pk, reads=reads) else None,
        **{
            rule: partial(_asset_purge_counted, rule=rule, cutoffs=cutoffs)
            for rule in (RULE_SHIPPED, RULE_UNPAID, RULE_CANCELLED, RULE_NEVER_ORDERED)
        },
        RULE_PRINTED_RASTER: lambda pk: (
            RULE_PRINTED_RASTER if raster_purge(job_id=pk, cutoff=raster_cutoff) else None
        ),
    }
    expiring, *runs = [
        _RuleRun(
            name=rule.name,
            rows=rule.rows,
            order=rule.order,
            handle=handles[rule.name],
            batch=policy.batch,
            is_timed_by_row=rule.name == "orders_expired",
        )
        for rule in due
    ]
    _runs_drain([expiring, *runs], counts, started=started)
    if reads.orders_left:
        counts["orders_left_stripe_silent"] = reads.orders_left
    left = {run.name: run.left() for run in [expiring, *runs]}
    if work_left := sum(left.values()):
        # For the next sweep; visible here (and in the counts) as long as retention runs behind its schedule.
        logger.warning(
            "retention sweep out of time after %.0f s, left for the next sweep: %s (done: %s)",
            time.monotonic() - started,
            " ".join(f"{name}={count}" for name, count in left.items() if count),
            " ".join(f"{run.name}={counts[run.name]}" for run in [expiring, *runs]),
        )
        counts["work_left"] = work_left
    counts["sessions_expired"] = sessions_expired_delete()
    # Keys of killed uploads are few; the next batch only while a batch came back full and time is left.
    destroyed = orphan_keys_destroy(grace=ORPHAN_KEY_GRACE, limit=policy.batch)
    counts["orphan_keys_destroyed"] = destroyed
    while destroyed == policy.batch and time.monotonic() - started <= SWEEP_TIME_BUDGET_SECONDS:
        destroyed = orphan_keys_destroy(grace=ORPHAN_KEY_GRACE, limit=policy.batch)
        counts["orphan_keys_destroyed"] += destroyed
    counts["unknown_account_events_deleted"] = unknown_account_events_delete(
        before=now - UNKNOWN_ACCOUNT_EVENTS_KEPT
    )
    # Reported when there were any (demo mode's mail files, work left), after the counts every run reports.
    if mail_files_deleted := mail_files_expire(before=now - MAIL_FILES_KEPT):
        counts["mail_files_deleted"] = mail_files_deleted
    result = {key: counts[key] for key in (*SWEEP_COUNTS, *sorted(set(counts) - set(SWEEP_COUNTS)))}
    logger.info("retention sweep %s", " ".join(f"{key}={value}" for key, value in result.items()))
    return result
