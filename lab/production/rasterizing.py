"""Rasterizing: a claimed job's photo becomes the printer's raster (size, resolution, colour profile)."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q

from lab.audit.records import system_image_access
from lab.lib.clock import database_now
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.vault import vault_delete, vault_read, vault_write
from lab.production import raster
from lab.production.jobs import (
    job_claim_take_back,
    job_fail,
    job_move,
    job_photo_changed_outside_the_lab,
    rasterize_enqueue,
    submit_enqueue,
)
from lab.production.models import PrintJob
from lab.production.states import JobStatus

logger = logging.getLogger(__name__)
J = JobStatus


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
    blob = vault_write(data_key=asset.data_key, plaintext=result.data, purpose="raster")
    old_blob = job.raster_blob
    moved = job_move(
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
        # Only on this worker's own claim: a worker that stalled past its lease and woke after another took
        # the job over leaves it to the taker.
        where=Q(claimed_by=worker, claimed_at=now),
        claimed_at=None,
        claimed_by="",
    )
    if not moved:
        vault_delete(name=blob)  # someone else took it over, finished or cancelled it meanwhile
        return "superseded"
    if old_blob:
        vault_delete(name=old_blob)
    submit_enqueue(job)
    return "ready"
