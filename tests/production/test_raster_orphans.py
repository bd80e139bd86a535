"""Every raster file is named by a row until it is deleted: the job that prints it, or a BlobDeletion row the
retention sweep deletes it by. A raster no row named (written and never recorded, or replaced and never
deleted) decrypted under its photo's live key past the raster retention, and nothing ever deleted it."""

from __future__ import annotations

import errno
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError
from django.db.models.functions import Now
from django.utils import timezone

from lab.customer_data import purged_files, retention
from lab.privacy.models import BlobDeletion
from lab.privacy.vault import vault_write
from lab.production import rasterizing, routing
from lab.production.jobs import job_move
from lab.production.models import JobEvent, PrintJob
from lab.production.rasterizing import RASTER_STORE_UNWRITABLE
from lab.production.states import JobStatus
from tests.builders import (
    WORKER,
    blob_path,
    blobs_no_row_names,
    hotfolder_printer,
    job_on_the_first_of_two_minilabs,
    released_order,
)
from tests.support.clock import host_clock_off

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


def _stalled_past_the_grace(name: str) -> None:
    """The write of this raster stalled past the grace (a hung NFS mount, a paused VM): its row is that old
    on the database's clock, which dates it."""
    BlobDeletion.objects.filter(name=name).update(
        created_at=Now() - purged_files.BLOB_DELETION_GRACE - timedelta(minutes=1)
    )


def test_a_raster_whose_row_the_sweep_took_during_a_stalled_write_is_deleted_and_the_job_made_again(
    monkeypatch,
):
    # given a job being rasterized whose write stalls past the grace, and a sweep that runs meanwhile: it
    # deletes the file its row names (not there yet), then the row; the file lands after
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    real_write = vault_write
    written: list[str] = []

    def write_stalled_past_a_sweep(**kwargs: Any) -> str:
        _stalled_past_the_grace(kwargs["name"])
        retention.retention_sweep()  # no file yet: it deletes nothing there, then the row
        assert not BlobDeletion.objects.filter(name=kwargs["name"]).exists()
        written.append(real_write(**kwargs))
        return written[-1]

    monkeypatch.setattr(rasterizing, "vault_write", write_stalled_past_a_sweep)

    # when the worker finds its row gone
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "store_refused"

    # then the file that landed is deleted (before: left, named by no row, decrypting under the photo's live
    # key), and the job is back in the queue with no claim, as for a store that refused the raster: after the
    # backoff, counted against RASTER_STORE_ATTEMPTS (before: `rasterizing` under this worker until its lease
    # ran out, counted as a lost worker)
    assert not blob_path(written[0]).exists()
    assert blobs_no_row_names() == set()
    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.claimed_at, job.failure_code) == (
        J.QUEUED,
        "",
        None,
        RASTER_STORE_UNWRITABLE,
    )
    assert job.next_attempt_at is not None
    assert not JobEvent.objects.filter(job=job, kind="lease_taken_over").exists()

    # and it is made again, to `ready`, once its backoff is over
    monkeypatch.setattr(rasterizing, "vault_write", real_write)
    PrintJob.objects.filter(pk=job.pk).update(next_attempt_at=Now() - timedelta(seconds=1))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    assert (job.status, blob_path(job.raster_blob).exists(), blobs_no_row_names()) == (J.READY, True, set())
    assert not BlobDeletion.objects.exists()


def test_a_store_whose_writes_always_stall_past_a_sweep_fails_the_job_for_a_person(monkeypatch):
    # given a store whose every raster write stalls past the grace, a sweep taking the row each time
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    real_write = vault_write

    def write_stalled_past_a_sweep(**kwargs: Any) -> str:
        _stalled_past_the_grace(kwargs["name"])
        retention.retention_sweep()
        return real_write(**kwargs)

    monkeypatch.setattr(rasterizing, "vault_write", write_stalled_past_a_sweep)
    monkeypatch.setattr(rasterizing, "RASTER_STORE_ATTEMPTS", 3)

    # when its raster is tried again each time its backoff is over
    outcomes = []
    for _ in range(3):
        PrintJob.objects.filter(pk=job.pk).update(next_attempt_at=Now() - timedelta(seconds=1))
        outcomes.append(rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER))

    # then it is `failed` for a person after the store's attempts, as for a store that refuses the raster
    # (before: given back to the queue at once, every time, with no count: round the queue for good)
    assert outcomes == ["store_refused", "store_refused", "failed"]
    job.refresh_from_db()
    assert (job.status, job.failure_code) == (J.FAILED, RASTER_STORE_UNWRITABLE)
    assert blobs_no_row_names() == set()


def test_a_swept_raster_that_cannot_be_deleted_is_named_by_a_new_row_for_the_sweep(monkeypatch):
    # given a stalled write whose row a sweep took, and a store that then refuses the delete
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    real_write = vault_write
    written: list[str] = []

    def write_stalled_past_a_sweep(**kwargs: Any) -> str:
        _stalled_past_the_grace(kwargs["name"])
        retention.retention_sweep()
        written.append(real_write(**kwargs))
        return written[-1]

    def delete_refused(*, name: str) -> None:
        raise OSError(errno.EIO, "Input/output error", name)

    monkeypatch.setattr(rasterizing, "vault_write", write_stalled_past_a_sweep)
    monkeypatch.setattr(rasterizing, "vault_delete", delete_refused)

    # when the worker finds its row gone
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "store_refused"

    # then a row names the file it could not delete, and the job is back in the queue with no claim
    assert blob_path(written[0]).exists()
    assert blobs_no_row_names() == set()
    assert list(BlobDeletion.objects.values_list("name", "kind", "of")) == [
        (written[0], "raster", f"job={job.pk}")
    ]
    job.refresh_from_db()
    assert (job.status, job.claimed_by) == (J.QUEUED, "")


def test_a_sweep_on_a_host_whose_clock_runs_ahead_leaves_a_raster_being_made(monkeypatch):
    # given a job being rasterized, and a sweep, right after its file is written, on a host whose clock runs
    # ten minutes ahead of the database's (which dates the raster's row)
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    real_write = vault_write

    def write_then_a_sweep_on_a_host_ahead(**kwargs: Any) -> str:
        name = real_write(**kwargs)
        with host_clock_off(timedelta(minutes=10), monkeypatch):
            assert "purged_files_deleted" not in retention.retention_sweep()  # reported only when any
        return name

    monkeypatch.setattr(rasterizing, "vault_write", write_then_a_sweep_on_a_host_ahead)

    # when the worker names its raster on the job
    result = rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)

    # then the sweep left it (before: it judged the row five minutes old on its own clock and deleted the
    # raster, and the job stayed `rasterizing` under this worker until its lease ran out): the job is ready
    job.refresh_from_db()
    assert (result, job.status, job.claimed_by) == ("ready", J.READY, "")
    assert blob_path(job.raster_blob).exists()
    assert (blobs_no_row_names(), BlobDeletion.objects.exists()) == (set(), False)
