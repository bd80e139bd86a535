"""A disk that refuses writes (full, failing) under the photo store or the print host's /tmp: no worker was
lost and the photo is not at fault, so the job is given back under its own claim, tried again after the
transient backoff and printed once when there is room; a store that stays full ends in front of a person
with that reason. Real writes fail with a real OSError (tests/support/disk.py), on real hot-folder
printers."""

from __future__ import annotations

import errno
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from lab.privacy import vault
from lab.production import earlier_sends, rasterizing, reconcile, submission
from lab.production.jobs import print_queue
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.hotfolder_device import process_pending
from tests.builders import WORKER, broker_tasks, hotfolder_printer, printer_folder, released_order
from tests.support.disk import files_capped_at

pytestmark = pytest.mark.django_db
J = JobStatus
# Smaller than any raster of a 4x6 print, larger than anything else these steps write.
FULL = 16_000


@pytest.fixture(autouse=True)
def _empty_queues():
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("raster", "default", "print")


def _one_queued_job() -> tuple[PrintJob, Printer]:
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    return PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)])), printer


def _stored_files() -> list[Path]:
    return sorted(path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file())


def _wait_over(job: PrintJob) -> None:
    """The backoff's wait and the reconciler's grace both over, as after a while on the clock."""
    PrintJob.objects.filter(pk=job.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1),
        updated_at=timezone.now() - timedelta(hours=1),
    )


def test_a_full_photo_store_gives_the_raster_back_each_time_and_it_prints_once_when_there_is_room(settings):
    job, printer = _one_queued_job()
    blobs = _stored_files()
    attempts = settings.PRODUCTION_MAX_RASTER_TAKEOVERS + 2  # more than the takeovers that fail a job

    for attempt in range(1, attempts + 1):
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("raster")
        with files_capped_at(FULL):  # the store's disk fails the raster's write, as a full disk does
            assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "store_refused"
        job.refresh_from_db()
        # given back now, under its own claim: not left `rasterizing` for its lease to run out
        assert (job.status, job.claimed_by, job.raster_blob) == (J.QUEUED, "", "")
        assert job.failure_code == rasterizing.RASTER_STORE_UNWRITABLE
        assert job.next_attempt_at is not None and job.next_attempt_at > timezone.now()
        assert _stored_files() == blobs  # no partial raster left behind
        event = JobEvent.objects.filter(job=job).latest("pk")
        assert (event.kind, event.from_status, event.to_status) == (
            rasterizing.RASTER_STORE_UNWRITABLE,
            J.RASTERIZING,
            J.QUEUED,
        )
        assert event.note.startswith("EFBIG;") and "/" not in event.note  # the errno's name, no path
        assert broker_tasks("raster") == [("production.print_job_rasterize", {"job_id": job.pk})]
        # A message before the wait is over (the reconciler's, a duplicate) does nothing.
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "not_claimed"
        # the claim's lease runs out and the reconciler sweeps: nothing of it counts as a lost worker
        PrintJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
        _wait_over(job)
        swept = reconcile.production_reconcile()
        assert "raster_given_up" not in swept and "rasterize_taken_over" not in swept, (attempt, swept)

    job.refresh_from_db()
    assert job.status == J.QUEUED
    assert not JobEvent.objects.filter(job=job, kind="lease_taken_over").exists()
    assert JobEvent.objects.filter(job=job, kind=rasterizing.RASTER_STORE_UNWRITABLE).count() == attempts

    # the store has room again: made and printed, once
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    assert (job.failure_code, job.next_attempt_at) == ("", None)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    folder = printer_folder(printer)
    assert len(list(folder.glob("*.json"))) == 1
    process_pending(folder=folder, delay_seconds=0)
    assert len(list((folder / "done").glob("*.json"))) == 1


def test_a_photo_store_that_stays_full_fails_the_job_for_a_person_with_its_own_reason(settings):
    job, _printer = _one_queued_job()

    attempts = 16  # about an hour and a half of backoff at the default settings
    outcomes = []
    for _ in range(attempts):
        with files_capped_at(FULL):
            outcomes.append(rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER))
        _wait_over(job)
        reconcile.production_reconcile()

    assert outcomes == ["store_refused"] * (attempts - 1) + ["failed"]
    assert attempts == rasterizing.RASTER_STORE_ATTEMPTS
    job.refresh_from_db()
    assert (job.status, job.failure_code, job.failure_is_permanent, job.claimed_by) == (
        J.FAILED,
        rasterizing.RASTER_STORE_UNWRITABLE,
        False,
        "",
    )
    assert "EFBIG" in job.failure_message
    assert not JobEvent.objects.filter(job=job, kind="lease_taken_over").exists()


def test_a_raster_copy_the_print_host_cannot_write_is_taken_back_and_sent_once_later(settings):
    job, printer = _one_queued_job()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    folder = printer_folder(printer)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(print_queue(printer))

    with files_capped_at(FULL):  # the print host's /tmp is full: the raster's copy fails midway
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"

    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.sending_claim_at) == (J.READY, "", None)
    assert job.failure_code == submission.PRINT_FOLDER_UNWRITABLE
    assert job.next_attempt_at is not None and job.next_attempt_at > timezone.now()
    event = JobEvent.objects.filter(job=job).latest("pk")
    assert event.kind == earlier_sends.SUBMIT_RETRY_UNSENT
    assert not list(folder.glob("*.json"))  # nothing reached the printer
    assert broker_tasks(print_queue(printer)) == [("production.print_job_submit", {"job_id": job.pk})]

    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(list(folder.glob("*.json"))) == 1
    process_pending(folder=folder, delay_seconds=0)
    assert len(list((folder / "done").glob("*.json"))) == 1


def test_a_raster_the_store_cannot_read_at_the_send_is_taken_back_and_sent_once_later(settings):
    job, printer = _one_queued_job()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    blob = vault._blob_path(job.raster_blob)
    kept = blob.read_bytes()
    blob.unlink()
    blob.mkdir()  # read() fails with a real OSError (EISDIR) that is no FileNotFoundError, as EIO would

    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"

    job.refresh_from_db()
    assert (job.status, job.failure_code) == (J.READY, submission.RASTER_STORE_UNREADABLE)
    assert job.failure_message.startswith(f"{errno.errorcode[errno.EISDIR]}:")
    folder = printer_folder(printer)
    assert not list(folder.glob("*.json"))

    blob.rmdir()
    blob.write_bytes(kept)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    process_pending(folder=folder, delay_seconds=0)
    assert len(list((folder / "done").glob("*.json"))) == 1


def test_a_print_host_that_stays_full_fails_the_job_after_the_attempts_with_its_own_reason(settings):
    settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS = 2
    job, printer = _one_queued_job()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"

    outcomes = []
    for _ in range(2):
        with files_capped_at(FULL):
            outcomes.append(submission.print_job_submit(job_id=job.pk, worker=WORKER))

    assert outcomes == ["retry", "failed"]
    job.refresh_from_db()
    assert (job.status, job.failure_code, job.failure_is_permanent) == (
        J.FAILED,
        submission.PRINT_FOLDER_UNWRITABLE,
        False,
    )
    assert not list(printer_folder(printer).glob("*.json"))
