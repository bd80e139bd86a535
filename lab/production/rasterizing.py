"""Rasterizing: a claimed job's photo becomes the printer's raster (size, resolution, colour profile)."""

from __future__ import annotations

import errno
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q

from lab.audit.records import system_image_access
from lab.lib.backoff import backoff_delay
from lab.lib.clock import database_now
from lab.lib.tasks import enqueue
from lab.orders.models import Asset
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.models import BlobDeletion
from lab.privacy.vault import vault_blob_verify, vault_delete, vault_name_new, vault_read, vault_write
from lab.production import raster
from lab.production.jobs import (
    job_claim_take_back,
    job_fail,
    job_move,
    job_photo_changed_outside_the_lab,
    rasterize_enqueue,
    submit_enqueue,
)
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus

logger = logging.getLogger(__name__)
J = JobStatus

# The photo store could not read the photo or keep its raster (disk full, an I/O error): the job's code, and
# the kind of the event that gives the job back to the queue for a later attempt.
RASTER_STORE_UNWRITABLE = "raster_store_unwritable"
# Attempts one job makes against a store that keeps refusing before a person is asked. Spaced by the
# transient backoff (PRODUCTION_RETRY_BASE_SECONDS doubling up to PRODUCTION_RETRY_CAP_SECONDS; by default
# 5 s … 600 s), the last fails the job about an hour and a half after the first.
RASTER_STORE_ATTEMPTS = 16


def print_job_rasterize(*, job_id: int, worker: str) -> str:
    now = database_now()  # the lease is judged on the clock every host shares (lab/lib/clock.py)
    lease_expired = now - timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS)
    try:
        claimed = job_move(
            job_id=job_id,
            from_statuses={J.QUEUED},
            to_status=J.RASTERIZING,
            kind="claimed",
            note=worker,
            # Not before the wait of a job the store refused (`_store_refused`): that message comes on time,
            # an earlier one (the reconciler's) finds nothing to do.
            where=~Q(failure_code=RASTER_STORE_UNWRITABLE, next_attempt_at__gt=now),
            claimed_at=now,
            claimed_by=worker,
        ) or job_move(
            # A worker that died mid-raster: its claim is taken over once the lease has run out.
            job_id=job_id,
            from_statuses={J.RASTERIZING},
            to_status=J.RASTERIZING,
            kind="lease_taken_over",
            note=worker,
            where=Q(claimed_at__lt=lease_expired),
            claimed_at=now,
            claimed_by=worker,
        )
    except DatabaseError:
        # The claim's COMMIT may have been applied with its answer lost: take it back rather than leave the
        # job `rasterizing` until its lease runs out (ten minutes by default) with nobody working on it.
        if job_claim_take_back(
            job_id=job_id, claimed=J.RASTERIZING, back_to=J.QUEUED, worker=worker, claimed_at=now
        ):
            rasterize_enqueue(job_id)
        raise
    if not claimed:
        return "not_claimed"
    job = PrintJob.objects.select_related("printer", "order", "item__product", "item__asset__data_key").get(
        pk=job_id
    )
    printer, item = job.printer, job.item
    assert printer is not None
    asset = item.asset
    if job_photo_changed_outside_the_lab(job, from_status=J.RASTERIZING, kind="raster_failed"):
        return "failed"
    try:
        system_image_access(asset_id=str(asset.pk), job_id=job.pk, order_ref=job.order.ref)
        original = vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
        result = raster.rasterize(
            data=original,
            spec=raster.RasterSpec(
                width_in=float(item.product.width_in),
                height_in=float(item.product.height_in),
                dpi=printer.dpi,
                sizing="fit" if item.sizing == "fit" else "fill",
                output_format="tiff" if printer.output_format == "tiff" else "jpeg",
                output_icc=bytes(printer.icc_profile) if printer.icc_profile else None,
                placement=item.placement_options,
            ),
            orientation=asset.exif_orientation,  # the quote's (recorded at intake)
        )
    except (raster.RasterError, KeyDestroyed, DecryptionFailed, FileNotFoundError) as error:
        job_fail(
            job_id=job.pk,
            from_statuses={J.RASTERIZING},
            kind="raster_failed",
            code=getattr(error, "code", "asset_unreadable"),
            message=str(error),
        )
        return "failed"
    except OSError as error:
        if error.errno is None:
            raise  # not a system call's: no store fault
        return _store_refused(job_id=job.pk, worker=worker, claimed_at=now, error=error)
    # Named before it is written, in a commit of its own: until the move below names it on the job (and
    # deletes this row in the same transaction), a database error, a time limit or a kill in between left a
    # raster no row named, decrypting under the photo's live key, for good. The retention sweep deletes what
    # such a row still names after BLOB_DELETION_GRACE (purged_files_delete; never a file a row names).
    written = BlobDeletion.objects.create(
        name=vault_name_new(), kind=BlobDeletion.Kind.RASTER, of=f"job={job.pk}"
    )
    try:
        blob = vault_write(
            data_key=asset.data_key, plaintext=result.data, purpose="raster", name=written.name
        )
    except OSError as error:  # the store's disk is full or failing; vault_write kept no partial blob
        BlobDeletion.objects.filter(pk=written.pk).delete()
        return _store_refused(job_id=job.pk, worker=worker, claimed_at=now, error=error)
    old_blob = job.raster_blob
    with transaction.atomic():
        # Locked first, as the sweep locks it before deleting the file it names: a row still here (and now
        # held) is a file the sweep will not take. Gone, this worker stalled past BLOB_DELETION_GRACE and the
        # sweep took the row, deleting its file before or after the write landed (_swept_raster_give_back).
        is_kept = BlobDeletion.objects.select_for_update().filter(pk=written.pk).exists()
        moved = is_kept and job_move(
            job_id=job.pk,
            from_statuses={J.RASTERIZING},
            to_status=J.READY,
            kind="rasterized",
            note=f"{result.width_px}x{result.height_px} {result.engine}",
            raster_blob=blob,
            raster_sha256=hashlib.sha256(result.data).hexdigest(),
            raster_width_px=result.width_px,
            raster_height_px=result.height_px,
            raster_printer=printer,
            raster_engine=result.engine,
            # Only on this worker's own claim: a worker that stalled past its lease and woke after another
            # took the job over leaves it to the taker.
            where=Q(claimed_by=worker, claimed_at=now),
            claimed_at=None,
            claimed_by="",
            failure_code="",
            failure_message="",
            next_attempt_at=None,
        )
        if moved:
            BlobDeletion.objects.filter(pk=written.pk).delete()  # the job names it now
            _earlier_raster_forget(asset=asset, job_id=job.pk, name=old_blob)
    if not is_kept:
        return _swept_raster_give_back(job_id=job.pk, worker=worker, claimed_at=now, name=blob)
    if not moved:
        _unnamed_raster_delete(deletion_id=written.pk, name=blob, job_id=job.pk)
        return "superseded"  # someone else took it over, finished or cancelled it meanwhile
    submit_enqueue(job)
    return "ready"


def _swept_raster_give_back(*, job_id: int, worker: str, claimed_at: datetime, name: str) -> str:
    """The retention sweep took this raster's row while its write stalled past BLOB_DELETION_GRACE (a hung
    NFS mount, a paused VM): it deleted a file not there yet, then the row, and the write landed after. The
    file is deleted here: its name is a fresh uuid only this worker knows, so no photo or job can name it.
    Before, it was left, named by no row, decrypting under the photo's live key for good; one that cannot be
    deleted now gets a new row, for the sweep. Then the job goes back as for a store that refused the raster
    (_store_refused: ETIMEDOUT, the transient backoff, `failed` for a person after RASTER_STORE_ATTEMPTS):
    before, it stayed `rasterizing` until its lease ran out, counted as a lost worker; given back at once with
    no count, a store whose writes always stall sent it round the queue for good."""
    try:
        vault_delete(name=name)
    except OSError as error:
        BlobDeletion.objects.create(name=name, kind=BlobDeletion.Kind.RASTER, of=f"job={job_id}")
        logger.error(
            "swept raster not deleted, left to the retention sweep job=%s error=%s",
            job_id,
            type(error).__name__,
        )
    stalled = OSError(errno.ETIMEDOUT, "the raster's write stalled past the deletion grace")
    return _store_refused(job_id=job_id, worker=worker, claimed_at=claimed_at, error=stalled)


def _unnamed_raster_delete(*, deletion_id: int, name: str, job_id: int) -> None:
    """Delete a raster no job names, then the row naming it; one that cannot be deleted keeps its row, for
    the retention sweep."""
    try:
        vault_delete(name=name)
    except OSError as error:
        logger.error(
            "raster not deleted, left to the retention sweep job=%s error=%s", job_id, type(error).__name__
        )
        return
    BlobDeletion.objects.filter(pk=deletion_id).delete()


def _earlier_raster_forget(*, asset: Asset, job_id: int, name: str) -> None:
    """In the transaction that names the job's new raster: a row naming the raster it named before, and its
    delete after the commit. Before, the file was deleted after the commit with no row naming it: a kill in
    between left it decrypting under the photo's live key, and no sweep ever found it. Now the retention
    sweep deletes what such a row still names after BLOB_DELETION_GRACE (a file a photo or job names stays:
    lab/customer_data/purged_files.py _still_named)."""
    if not name:
        return  # the job had no raster yet
    earlier = BlobDeletion.objects.create(name=name, kind=BlobDeletion.Kind.RASTER, of=f"job={job_id}")
    # Robust, and a named closure (not a lambda or functools.partial): Django logs a failed hook by its
    # __qualname__, and the row is left for the sweep.
    transaction.on_commit(
        _earlier_raster_delete_hook(asset=asset, job_id=job_id, deletion_id=earlier.pk, name=name),
        robust=True,
    )


def _earlier_raster_delete_hook(
    *, asset: Asset, job_id: int, deletion_id: int, name: str
) -> Callable[[], None]:
    def earlier_raster_delete() -> None:
        _earlier_raster_delete(asset=asset, job_id=job_id, deletion_id=deletion_id, name=name)

    return earlier_raster_delete


def _earlier_raster_delete(*, asset: Asset, job_id: int, deletion_id: int, name: str) -> None:
    """Delete the raster the job named before this one, only when it is this photo's raster, then the row
    naming it.

    The name comes from a column the database alone can change: a job's raster pointed at another customer's
    original (or at its own photo's) had a re-rasterize delete that photo. A raster is deleted only when it
    authenticates under the photo's key as a raster (vault_blob_verify: name and purpose are bound as AAD, so
    no original passes); anything else is left on disk, its row deleted, and logged by ids only. One that
    cannot be read or deleted (an I/O error) keeps its row, for the retention sweep."""
    try:
        if vault_blob_verify(data_key=asset.data_key, name=name, purpose="raster"):
            vault_delete(name=name)
        else:
            logger.error(
                "earlier raster file kept: not this photo's raster asset=%s job=%s", asset.pk, job_id
            )
    except OSError as error:
        logger.error(
            "earlier raster not deleted, left to the retention sweep asset=%s job=%s error=%s",
            asset.pk,
            job_id,
            type(error).__name__,
        )
        return
    BlobDeletion.objects.filter(pk=deletion_id).delete()


def _store_refused(*, job_id: int, worker: str, claimed_at: datetime, error: OSError) -> str:
    """The photo store refused this raster (ENOSPC, EIO, …): no worker was lost and the photo is not at
    fault, so the job goes back to the queue under this worker's own claim, for an attempt after the
    transient backoff, instead of being left `rasterizing` for its lease to run out (the reconciler took
    each such claim for a lost worker, and after PRODUCTION_MAX_RASTER_TAKEOVERS failed the job
    `raster_worker_lost`). After RASTER_STORE_ATTEMPTS refusals in a row the job is `failed`, with this
    reason, for a person. The event names only the errno's name: the error's text holds the store's path."""
    name = errno.errorcode.get(error.errno or 0, type(error).__name__)
    attempts = _store_refusals(job_id) + 1
    if attempts >= RASTER_STORE_ATTEMPTS:
        failed = job_fail(
            job_id=job_id,
            from_statuses={J.RASTERIZING},
            kind="raster_failed",
            code=RASTER_STORE_UNWRITABLE,
            message=f"The photo store refused this raster {attempts} times ({name}); nothing was printed.",
            is_permanent=False,
            note=f"{RASTER_STORE_UNWRITABLE}: {name}, {attempts} attempts",
            where=Q(claimed_by=worker, claimed_at=claimed_at),
            claimed_at=None,
            claimed_by="",
            next_attempt_at=None,
        )
        logger.error("raster store refused the raster, job failed job=%s errno=%s", job_id, name)
        return "failed" if failed else "superseded"
    delay = backoff_delay(
        attempt=attempts,
        first=timedelta(seconds=settings.PRODUCTION_RETRY_BASE_SECONDS),
        cap=timedelta(seconds=settings.PRODUCTION_RETRY_CAP_SECONDS),
    )
    given_back = job_move(
        job_id=job_id,
        from_statuses={J.RASTERIZING},
        to_status=J.QUEUED,
        kind=RASTER_STORE_UNWRITABLE,
        note=f"{name}; attempt {attempts} of {RASTER_STORE_ATTEMPTS}, again in {delay.total_seconds():.0f}s",
        where=Q(claimed_by=worker, claimed_at=claimed_at),
        claimed_at=None,
        claimed_by="",
        failure_code=RASTER_STORE_UNWRITABLE,
        failure_message=f"The photo store refused the raster ({name}).",
        next_attempt_at=claimed_at + delay,
    )
    if not given_back:
        return "superseded"  # taken over, cancelled or moved meanwhile: left to whoever holds it
    logger.warning("raster store refused the raster, job queued again job=%s errno=%s", job_id, name)
    enqueue("production.print_job_rasterize", job_id=job_id, queue="raster", countdown=delay.total_seconds())
    return "store_refused"


def _store_refusals(job_id: int) -> int:
    """The store's refusals of this job's raster in a row: since it last entered the queue other than back
    from its own raster claim (released, rerouted, or a person's retry start the count again)."""
    events = JobEvent.objects.filter(job_id=job_id)
    entered = (
        events.filter(to_status=J.QUEUED)
        .exclude(from_status=J.RASTERIZING)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    return events.filter(kind=RASTER_STORE_UNWRITABLE, pk__gt=entered or 0).count()
