"""The purge of a raster: a job's printed (or cancelled) raster deleted once past its retention, recorded as
`raster.purge`; the photo's original and key untouched."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from lab.audit.records import Entry, audit_append
from lab.customer_data.purged_files import blobs_of_the_photo, purged_files_delete_after_commit
from lab.customer_data.retention_rules import RULE_PRINTED_RASTER
from lab.orders.models import Asset
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus

logger = logging.getLogger(__name__)


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
            names = blobs_of_the_photo(
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
        purged_files_delete_after_commit(names, kind="raster", of=f"job={job.pk}")
    logger.info("raster purged job=%s", job_id)
    return True
