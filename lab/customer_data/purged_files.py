"""The files of a purge: which ones a photo's purge may take (checked), their deletion after its commit, each
named by a BlobDeletion row until it is gone, and the sweep's deletion of what a killed purge left."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.utils import timezone
from prometheus_client import Counter as MetricCounter

from lab.lib.clock import database_now
from lab.orders.models import Asset
from lab.privacy.models import BlobDeletion
from lab.privacy.vault import vault_blob_authenticates, vault_blob_present, vault_blob_verify, vault_delete
from lab.production.models import PrintJob

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


# A purge's file still named by its BlobDeletion row this long after the purge: its after-commit delete never
# ran (the process killed after the COMMIT) or failed, and the sweep deletes it. Younger rows are left to the
# purge's own hooks, which run moments after its commit (a sweep deleting one too is harmless: both deletes
# are idempotent).
BLOB_DELETION_GRACE = timedelta(minutes=5)


def purged_files_delete_after_commit(names: Iterable[str], *, kind: str, of: str) -> None:
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
    deleted; a file that still cannot be deleted is counted and logged, and its row kept.

    The rows' age is judged on the database's clock, which dates them (BlobDeletion.created_at), as
    orphan_keys_destroy judges keys: compared with `before` as this host's clock gave it, a sweep host
    running five minutes ahead deleted the raster a worker was writing right then (lab/production/
    rasterizing.py names it by such a row first). This host says only how long ago `before` was (a
    difference, which its clock's offset leaves alone); its clock is read first, so the database's, read
    after, is not behind it."""
    age = timezone.now() - before
    cutoff = database_now() - age
    deleted, last = 0, 0
    while True:
        rows = list(BlobDeletion.objects.filter(created_at__lte=cutoff, pk__gt=last).order_by("pk")[:limit])
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


def blobs_of_the_photo(
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
    does not pass). What is not taken is left on disk and logged by ids only; a raster file gone already (a
    purge a database restore undid) is no alarm.

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
        elif not vault_blob_present(name=name):
            # Deleted already: a purge a database restore undid (erasures_reapply), nothing to keep or alarm.
            logger.info("raster file gone already asset=%s job=%s", asset.pk, job_id)
        else:
            logger.error("raster file kept: not this photo's raster asset=%s job=%s", asset.pk, job_id)
    return names
