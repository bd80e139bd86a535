"""A job rasterized again deletes the raster it named before only when that file is its photo's raster: the
name is a database column, and a job pointed at a customer's original had a re-rasterize delete that photo."""

from __future__ import annotations

import pytest

from lab.orders.models import Asset
from lab.privacy.vault import vault_read
from lab.production import rasterizing, routing
from lab.production.models import PrintJob
from tests.builders import WORKER, asset_for, blob_path, job_on_the_first_of_two_minilabs, new_customer
from tests.support.dba import dba

pytestmark = pytest.mark.django_db


def _rasterized_again(job: PrintJob, *, printer_id: int) -> PrintJob:
    """The job moved to another printer, and its raster made again there (the raster is the printer's)."""
    assert routing.job_reroute(job_id=job.pk, printer_id=printer_id)
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("pointed_at", ["another customer's photo", "its own photo's original"])
def test_a_rasterize_again_leaves_a_photo_that_the_jobs_raster_was_pointed_at(pointed_at):
    # Given a rasterized job whose raster a DBA pointed at an original
    job, _first, second = job_on_the_first_of_two_minilabs()
    victim: Asset = asset_for(new_customer()) if pointed_at == "another customer's photo" else job.item.asset
    own_raster = job.raster_blob
    dba("UPDATE production_printjob SET raster_blob = %s WHERE id = %s", victim.blob_name, job.pk)

    # When the job is rasterized again (moved to another printer)
    job = _rasterized_again(job, printer_id=second.pk)

    # Then the original is still there and still reads (before, the re-rasterize deleted it)
    assert vault_read(data_key=victim.data_key, name=victim.blob_name, purpose="original")[:2] == b"\xff\xd8"
    # and the job names its new raster, which reads as its photo's raster
    assert job.raster_blob not in ("", victim.blob_name, own_raster)
    assert vault_read(data_key=job.item.asset.data_key, name=job.raster_blob, purpose="raster")
    assert blob_path(own_raster).exists()  # (left: the row named another file; nothing names it now)


def test_a_rasterize_again_deletes_the_jobs_own_earlier_raster(django_capture_on_commit_callbacks):
    # Given a rasterized job nobody touched
    job, _first, second = job_on_the_first_of_two_minilabs()
    earlier = job.raster_blob
    assert blob_path(earlier).exists()

    # When it is rasterized again (the earlier raster goes once the move to `ready` is committed)
    with django_capture_on_commit_callbacks(execute=True):
        job = _rasterized_again(job, printer_id=second.pk)

    # Then its earlier raster is deleted, as ever, and the new one is there
    assert job.raster_blob != earlier
    assert not blob_path(earlier).exists()
    assert blob_path(job.raster_blob).exists()
