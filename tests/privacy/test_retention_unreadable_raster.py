"""A printed job's raster that cannot be read when its retention comes (an I/O error of the store) is not
forgotten: the job keeps naming it, and a later sweep purges it once it reads. Before, the purge blanked the
job's column and deleted nothing, and the raster stayed on disk, named by no row, readable under the photo's
live key for as long as the photo lived."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lab.customer_data import purged_files, raster_purge, retention, retention_rules
from lab.privacy.models import BlobDeletion
from lab.production.models import PrintJob
from tests.builders import blob_path, blobs_no_row_names, minilab, paid_order, print_order

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)
COUNTS_ZERO = dict.fromkeys(retention.SWEEP_COUNTS, 0)


def test_a_raster_the_store_cannot_read_at_its_purge_is_kept_named_and_purged_by_a_later_sweep(
    django_capture_on_commit_callbacks, caplog
):
    # given a job printed 8 days ago whose raster cannot be read (a folder in its place: read() fails with a
    # real OSError, EISDIR, that is no missing file, as EIO would)
    minilab()
    job = PrintJob.objects.get(order=print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])))
    raster = job.raster_blob
    PrintJob.objects.filter(pk=job.pk).update(printed_at=timezone.now() - 8 * DAY)
    path = blob_path(raster)
    kept = path.read_bytes()
    path.unlink()
    path.mkdir()

    # when the sweep runs past the grace
    with (
        caplog.at_level("WARNING", logger=raster_purge.logger.name),
        django_capture_on_commit_callbacks(execute=True),
    ):
        unread = retention.retention_sweep(now=timezone.now() + purged_files.BLOB_DELETION_GRACE)

    # then the raster is not counted purged and the job still names it (before: blanked, and the file left
    # with no row naming it), logged by ids and the error's type only
    assert unread == COUNTS_ZERO
    job.refresh_from_db()
    assert job.raster_blob == raster
    assert not BlobDeletion.objects.exists()
    assert blobs_no_row_names() == set()
    lines = [record.getMessage() for record in caplog.records if "could not be read" in record.getMessage()]
    assert lines == [f"raster not purged: its file could not be read job={job.pk} error=IsADirectoryError"]

    # and once the file reads again, the next sweep purges it
    path.rmdir()
    path.write_bytes(kept)
    with django_capture_on_commit_callbacks(execute=True):
        purged = retention.retention_sweep(now=timezone.now() + purged_files.BLOB_DELETION_GRACE)
    assert purged == {**COUNTS_ZERO, retention_rules.RULE_PRINTED_RASTER: 1}
    job.refresh_from_db()
    assert job.raster_blob == ""
    assert not path.exists()
    assert not BlobDeletion.objects.exists()
    assert blobs_no_row_names() == set()
