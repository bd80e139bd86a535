"""Every raster file is named by a row until it is deleted: the job that prints it, or a BlobDeletion row the
retention sweep deletes it by. A raster no row named (written and never recorded, or replaced and never
deleted) decrypted under its photo's live key past the raster retention, and nothing ever deleted it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from lab.customer_data import purged_files, retention
from lab.privacy.models import BlobDeletion
from lab.production import rasterizing, routing
from lab.production.jobs import job_move
from lab.production.models import PrintJob
from lab.production.states import JobStatus
from tests.builders import (
    WORKER,
    blob_path,
    blobs_no_row_names,
    hotfolder_printer,
    job_on_the_first_of_two_minilabs,
    released_order,
)

pytestmark = pytest.mark.django_db
J = JobStatus


def _later_sweep(django_capture_on_commit_callbacks) -> dict[str, int]:
    """A sweep past the grace a purge's own hooks get."""
    with django_capture_on_commit_callbacks(execute=True):
        return retention.retention_sweep(now=timezone.now() + purged_files.BLOB_DELETION_GRACE)


def test_a_raster_written_when_the_database_fails_its_job_s_move_is_deleted_by_a_later_sweep(
    monkeypatch, django_capture_on_commit_callbacks
):
    # given a job being rasterized, whose move to `ready` fails after its raster was written (PostgreSQL
    # restarting: no real fault of the database can be made here, so the move raises as it would)
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    moved = job_move

    def move_the_database_fails(**kwargs: object) -> bool:
        if kwargs.get("to_status") == J.READY:
            raise OperationalError("server closed the connection unexpectedly")
        return moved(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rasterizing, "job_move", move_the_database_fails)
    with pytest.raises(OperationalError):
        rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    monkeypatch.setattr(rasterizing, "job_move", moved)

    # then a row names the raster written (before: the file, and nothing naming it)
    assert blobs_no_row_names() == set()
    (written,) = BlobDeletion.objects.all()
    assert (written.kind, written.of, blob_path(written.name).exists()) == ("raster", f"job={job.pk}", True)

    # and when the job is made again after its lease, and a sweep runs past the grace
    PrintJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    swept = _later_sweep(django_capture_on_commit_callbacks)

    # then the first raster is gone, the one the job names stays, and no row is left but the job's
    assert swept["purged_files_deleted"] == 1
    assert not blob_path(written.name).exists()
    assert blob_path(job.raster_blob).exists()
    assert not BlobDeletion.objects.exists()
    assert blobs_no_row_names() == set()


def test_a_rasterize_again_killed_before_it_deletes_the_earlier_raster_has_it_deleted_by_a_later_sweep(
    django_capture_on_commit_callbacks,
):
    # given a job rasterized again on another printer, its process killed right after the move's commit
    # (its after-commit hooks never run)
    job, _first, second = job_on_the_first_of_two_minilabs()
    earlier = job.raster_blob
    assert routing.job_reroute(job_id=job.pk, printer_id=second.pk)
    with django_capture_on_commit_callbacks(execute=False):
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    assert job.raster_blob != earlier

    # then a row names the earlier raster (before: none did, and no sweep ever deleted it)
    assert blob_path(earlier).exists()
    assert blobs_no_row_names() == set()

    # and a sweep past the grace deletes it, and its row
    assert _later_sweep(django_capture_on_commit_callbacks)["purged_files_deleted"] == 1
    assert not blob_path(earlier).exists()
    assert blob_path(job.raster_blob).exists()
    assert not BlobDeletion.objects.exists()
    assert blobs_no_row_names() == set()


def test_a_rasterize_again_deletes_the_earlier_raster_and_its_row_after_its_commit(
    django_capture_on_commit_callbacks,
):
    # given a rasterized job moved to another printer
    job, _first, second = job_on_the_first_of_two_minilabs()
    earlier = job.raster_blob
    assert routing.job_reroute(job_id=job.pk, printer_id=second.pk)

    # when it is rasterized again, and its transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"

    # then the earlier raster and the row naming it are gone at once, the new raster stays
    job.refresh_from_db()
    assert not blob_path(earlier).exists()
    assert blob_path(job.raster_blob).exists()
    assert not BlobDeletion.objects.exists()
    assert blobs_no_row_names() == set()
