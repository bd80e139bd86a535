"""End to end through the production queue with real components: a Celery worker subprocess (embedded beat)
on Redis, a private cupsd and two ippeveprinter devices that keep what they receive; faults on top."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image

from lab.accounts.models import User
from lab.orders.models import Order
from lab.packing.models import PackingSlip
from lab.privacy.vault import vault_write
from lab.production.models import Batch, JobEvent, Printer, PrintJob, job_title
from tests.builders import PHOTO_300_DPI, UserFactory, order_pay, order_with_items, paid_order
from tests.e2e.conftest import LARGE_QUEUE, PHOTO_QUEUE, LabPrinters, png_bytes
from tests.support.celery_worker import CeleryWorker, wait_until
from tests.support.images import jpeg_bytes
from tests.support.ipp_gate import GateMode, IppGate
from workers.app import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

ORDER_DONE_SECONDS = 60.0


def order_status(order: Order) -> str:
    order.refresh_from_db()
    return order.status


def job_statuses(order: Order) -> list[tuple[int, str]]:
    return list(PrintJob.objects.filter(order=order).order_by("pk").values_list("pk", "status"))


def wait_for_order(
    order: Order, status: str, worker: CeleryWorker, *, timeout: float = ORDER_DONE_SECONDS
) -> None:
    wait_until(
        lambda: order_status(order) == status,
        timeout=timeout,
        interval=0.2,
        what=lambda: f"order {status}; jobs {job_statuses(order)}; worker log:\n{worker.log_tail()}",
    )


def titles(jobs: Iterable[PrintJob]) -> list[str]:
    return sorted(f"{job.title}.jpg" for job in jobs)


def event_count(job: PrintJob, kind: str) -> int:
    return JobEvent.objects.filter(job=job, kind=kind).count()


def test_paid_order_is_rasterized_printed_by_both_devices_at_product_size_and_ready_to_pack(
    lab_printers: LabPrinters, worker: CeleryWorker
) -> None:
    # given two CUPS printers (4x6/5x7 and 8x10 at 300 dpi) and a paid order for a landscape photo
    order = paid_order(
        lines=[("PRINT-4X6-LUSTRE", 2), ("PRINT-5X7-GLOSSY", 1), ("PRINT-8X10-MATTE", 1)], photo=PHOTO_300_DPI
    )

    # when the worker runs release, raster, submit and polling on its own
    wait_for_order(order, "ready_to_pack", worker)

    # then every job printed once on the printer holding its media, at the product's pixel size
    jobs = list(PrintJob.objects.filter(order=order).order_by("pk").select_related("printer"))
    four_by_six, five_by_seven, eight_by_ten = jobs
    assert [
        (job.status, job.printer and job.printer.name, job.copies, job.backend_state) for job in jobs
    ] == [
        ("printed", PHOTO_QUEUE, 2, "completed"),
        ("printed", PHOTO_QUEUE, 1, "completed"),
        ("printed", LARGE_QUEUE, 1, "completed"),
    ]
    assert lab_printers.received_titles(PHOTO_QUEUE) == titles([four_by_six, five_by_seven])
    assert lab_printers.received_titles(LARGE_QUEUE) == titles([eight_by_ten])
    sizes = {}
    for queue in (PHOTO_QUEUE, LARGE_QUEUE):
        for path in lab_printers.received(queue):
            with Image.open(io.BytesIO(path.read_bytes())) as image:
                sizes[path.name.partition("-")[2]] = (image.format, image.size)
    # The long side follows the landscape photo's long side.
    assert sizes == {
        f"{four_by_six.title}.jpg": ("JPEG", (1800, 1200)),
        f"{five_by_seven.title}.jpg": ("JPEG", (2100, 1500)),
        f"{eight_by_ten.title}.jpg": ("JPEG", (3000, 2400)),
    }
    assert [
        (job.raster_width_px, job.raster_height_px) for job in (four_by_six, five_by_seven, eight_by_ten)
    ] == [
        (1800, 1200),
        (2100, 1500),
        (3000, 2400),
    ]
    # and the packing slip is rendered by the worker too
    wait_until(lambda: PackingSlip.objects.filter(order=order).exists(), timeout=30, what="packing slip")

    # and the copies of the photos cupsd kept in its spool are erased by the worker's sweep
    documents = {f"d{int(job.backend_job_id):05d}-001" for job in jobs}
    assert documents <= set(lab_printers.cups.spooled_documents())
    app.send_task("production.printer_documents_discard")
    wait_until(
        lambda: not documents & set(lab_printers.cups.spooled_documents()),
        timeout=30,
        what=lambda: f"cupsd's spool without {documents}; worker log:\n{worker.log_tail()}",
    )


def test_a_device_s_count_holds_the_copies_cups_still_held_when_the_order_was_done_whatever_their_title(
    lab_printers: LabPrinters, worker: CeleryWorker, tmp_path: Path
) -> None:
    # given an order printed, its one copy received once
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    wait_for_order(order, "ready_to_pack", worker)
    (job,) = PrintJob.objects.filter(order=order)
    assert lab_printers.received_titles(PHOTO_QUEUE) == titles([job])

    # when CUPS takes two more copies of it, one under its title and one under a title it gave up (a person
    # sent it again), and starts sending them
    former_title = job_title(job.pk, "0badc0de")
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(jpeg_bytes(600, 400))
    lab_printers.cups.disable(PHOTO_QUEUE)
    try:
        for title in (job.title, former_title):
            lab_printers.cups.print_file(PHOTO_QUEUE, copy, title=title)
    finally:
        lab_printers.cups.enable(PHOTO_QUEUE)

    # then the device's count, once CUPS is done with them, holds all three
    assert lab_printers.received_titles(PHOTO_QUEUE) == sorted([*titles([job, job]), f"{former_title}.jpg"])


# A 54-megapixel PNG takes the rasterizer over a second here (PNG has no shrink-on-load, unlike JPEG, which
# pyvips turns into a 4x6 in under 0.1 s): wide enough a window to see `rasterizing` and kill the worker.
SLOW_PHOTO_PIXELS = (9000, 6000)


def job_status(job: PrintJob) -> str:
    job.refresh_from_db()
    return job.status


def wait_for_job(job: PrintJob, status: str, worker: CeleryWorker, *, timeout: float = 40.0) -> None:
    wait_until(
        lambda: job_status(job) == status,
        timeout=timeout,
        interval=0.05,
        what=lambda: f"job {job.pk} {status} (is {job.status}); worker log:\n{worker.log_tail()}",
    )


def released_jobs(order: Order, count: int, worker: CeleryWorker) -> list[PrintJob]:
    """The order's jobs, once the worker's order_release created them."""
    return list(
        wait_until(
            lambda: (
                (jobs := list(PrintJob.objects.filter(order=order).order_by("pk")))
                and len(jobs) == count
                and jobs
            ),
            timeout=30,
            what=lambda: f"{count} jobs for the order; log:\n{worker.log_tail()}",
        )
    )


def first_job_in(order: Order, status: str) -> PrintJob | None:
    return PrintJob.objects.filter(order=order, status=status).order_by("pk").first()


def printer_reached_through(printer: Printer, ipp_gate: IppGate) -> None:
    """Point the printer at the relay as the lab admin would: a saved destination is sealed (a write in the
    database alone would be refused: tests/production/test_printer_destination.py)."""
    printer.refresh_from_db()
    printer.cups_server = ipp_gate.server
    printer.save(update_fields=["cups_server"])


def technician() -> User:
    return UserFactory.create(roles=["technician"])


def test_worker_killed_mid_rasterize_restarts_and_every_job_prints_exactly_once(
    lab_printers: LabPrinters, worker: CeleryWorker
) -> None:
    # given a paid order for a big photo, one job per printer, and the first job being rasterized
    order = paid_order(
        lines=[("PRINT-5X7-LUSTRE", 1), ("PRINT-8X10-LUSTRE", 1)], photo=png_bytes(*SLOW_PHOTO_PIXELS)
    )
    victim = wait_until(
        lambda: first_job_in(order, "rasterizing"), timeout=30, interval=0.01, what="a job rasterizing"
    )

    # when the worker is SIGKILLed in the middle of it, and started again
    worker.kill()
    assert job_status(victim) == "rasterizing"  # it died holding the claim, with no raster saved
    assert victim.raster_blob == ""
    worker.start()

    # then the reconciler takes the expired claim over, and each job is printed exactly once
    wait_for_order(order, "ready_to_pack", worker)
    five_by_seven, eight_by_ten = PrintJob.objects.filter(order=order).order_by("pk")
    assert lab_printers.received_titles(PHOTO_QUEUE) == titles([five_by_seven])
    assert lab_printers.received_titles(LARGE_QUEUE) == titles([eight_by_ten])
    for job in (five_by_seven, eight_by_ten):
        assert (job.status, job.submit_attempts) == ("printed", 1)
        assert (event_count(job, "rasterized"), event_count(job, "submitted")) == (1, 1)
    victim.refresh_from_db()
    assert (victim.pk, victim.raster_width_px, victim.raster_height_px) in {
        (five_by_seven.pk, 2100, 1500),
        (eight_by_ten.pk, 3000, 2400),
    }


def blob_made_a_pipe(name: str) -> tuple[Path, bytes]:
    """Swap a stored blob for a named pipe of the same name: a worker that reads it blocks until the test
    writes to the pipe (or is killed there). Returns the path and the blob's bytes."""
    from lab.privacy.vault import _blob_path

    path = _blob_path(name)
    data = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    return path, data


def pipe_made_a_blob_again(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def test_worker_killed_after_its_claim_before_sending_is_sent_again_by_the_reconciler_once(
    lab_printers: LabPrinters, worker: CeleryWorker
) -> None:
    from lab.production.holds import order_hold, order_release_hold

    # given an 8x10 order whose photo the worker blocks reading (its blob a named pipe) while it rasterizes,
    # and the order put on hold meanwhile, so that its job waits `ready` once the raster is made
    order = order_with_items(lines=[("PRINT-8X10-GLOSSY", 1)], photo=PHOTO_300_DPI)
    asset = order.items.get().asset
    original, photo = blob_made_a_pipe(asset.blob_name)
    order_pay(order)
    (job,) = released_jobs(order, 1, worker)
    wait_for_job(job, "rasterizing", worker)
    order_hold(order_ref=order.ref, actor=technician(), message="Which crop do you want?")
    with original.open("wb") as pipe:
        pipe.write(photo)
    pipe_made_a_blob_again(original, photo)
    wait_for_job(job, "ready", worker)
    worker.wait_rounds(poll=2)
    assert job_status(job) == "ready"
    # and its raster's blob a named pipe too
    job.refresh_from_db()
    raster_path, raster = blob_made_a_pipe(job.raster_blob)

    # when the hold is released, the worker claims the job and is SIGKILLed as it reads the raster: after its
    # claim, before anything went to the printer
    order_release_hold(order_ref=order.ref, actor=technician())
    wait_for_job(job, "submitting", worker)
    worker.kill()
    pipe_made_a_blob_again(raster_path, raster)
    assert lab_printers.received_titles(LARGE_QUEUE) == []
    worker.start()

    # then, once the claim's lease runs out, the reconciler sends it again by itself, and it prints once
    wait_for_order(order, "ready_to_pack", worker)
    job.refresh_from_db()
    assert lab_printers.received_titles(LARGE_QUEUE) == titles([job])
    assert (job.status, job.submit_attempts) == ("printed", 2)
    kinds = list(JobEvent.objects.filter(job=job).order_by("pk").values_list("kind", flat=True))
    assert kinds.count("claim_expired_unsent") == 1 and "fate_unknown" not in kinds
    assert kinds.count("submitted") == 1


def test_worker_killed_mid_submit_before_cups_heard_of_it_is_unknown_until_a_technician_resends_it(
    lab_printers: LabPrinters, worker: CeleryWorker, ipp_gate: IppGate
) -> None:
    from lab.production.resolutions import job_resolve_unknown

    # given the 8x10 printer reached through a relay that will hold the next Create-Job request
    printer_reached_through(lab_printers.large, ipp_gate)
    ipp_gate.arm(GateMode.HOLD_CREATE_JOB)
    order = paid_order(lines=[("PRINT-4X6-GLOSSY", 1), ("PRINT-8X10-GLOSSY", 1)], photo=PHOTO_300_DPI)
    four_by_six, eight_by_ten = released_jobs(order, 2, worker)

    # when the worker is SIGKILLed while it waits for CUPS to answer the submit, and the request is lost
    assert ipp_gate.tripped.wait(timeout=30), worker.log_tail()
    wait_for_job(eight_by_ten, "submitting", worker)
    worker.kill()
    ipp_gate.release()
    worker.start()

    # then the reconciler finds no job with our title at the printer and never resubmits by itself
    wait_for_job(eight_by_ten, "unknown", worker)
    worker.wait_rounds(poll=3, reconcile=1)
    assert job_status(eight_by_ten) == "unknown"
    assert lab_printers.received_titles(LARGE_QUEUE) == []

    # when a technician checks the printer's received files, does not find it, and sends it again
    assert f"{eight_by_ten.title}.jpg" not in lab_printers.received_titles(LARGE_QUEUE)
    job_resolve_unknown(job_id=eight_by_ten.pk, actor=technician(), was_printed=False)

    # then it is printed exactly once, and so is the other job
    wait_for_order(order, "ready_to_pack", worker)
    eight_by_ten.refresh_from_db()  # sent again under a new title: nothing of the lost send can pass for it
    assert lab_printers.received_titles(LARGE_QUEUE) == titles([eight_by_ten])
    assert lab_printers.received_titles(PHOTO_QUEUE) == titles([four_by_six])
    assert (eight_by_ten.status, eight_by_ten.submit_attempts) == ("printed", 1)
    assert [
        e.kind
        for e in JobEvent.objects.filter(job=eight_by_ten, kind__in=["fate_unknown", "resolved_not_printed"])
    ] == ["fate_unknown", "resolved_not_printed"]


def test_cupsd_stopped_between_create_job_and_its_document_sends_the_job_again_once(
    lab_printers: LabPrinters, worker: CeleryWorker, ipp_gate: IppGate
) -> None:
    # given the 8x10 printer behind a relay that holds the next Send-Document: CUPS has created the job
    printer_reached_through(lab_printers.large, ipp_gate)
    ipp_gate.arm(GateMode.HOLD_SEND_DOCUMENT)
    order = paid_order(lines=[("PRINT-8X10-LUSTRE", 1)], photo=PHOTO_300_DPI)
    (job,) = released_jobs(order, 1, worker)
    assert ipp_gate.tripped.wait(timeout=30), worker.log_tail()

    # when cupsd stops before the document arrives, the submit's connection breaks, and cupsd comes back
    lab_printers.cups.stop_cupsd()
    try:
        ipp_gate.pause()  # the held connection dropped, and the port refusing, as cupsd's own
        # a transient error: retried with backoff (as often as cupsd stays away), never `unknown`, never
        # failed (cupsd answers HTTP 400 to the request it was reading as it shuts down: not our fault)
        wait_until(
            lambda: event_count(job, "submit_retry") or event_count(job, "submit_failed"),
            timeout=40,
            what="the broken submit to be retried",
        )
        notes = list(JobEvent.objects.filter(job=job).values_list("kind", "note"))
        assert event_count(job, "submit_failed") == 0, notes
    finally:
        lab_printers.cups.start_cupsd()  # the session's cupsd serves the tests after this one
        ipp_gate.resume()

    # then the retry finds the empty job, cancels it, sends the raster again, and the device prints it once
    wait_for_order(order, "ready_to_pack", worker)
    job.refresh_from_db()
    assert job.status == "printed" and job.submit_attempts >= 2
    assert lab_printers.received_titles(LARGE_QUEUE) == titles([job])
    assert event_count(job, "empty_attempt_cancelled") == 1
    assert event_count(job, "fate_unknown") == event_count(job, "submit_failed") == 0


def test_worker_killed_mid_submit_after_cups_took_the_job_is_reconciled_by_title_and_prints_once(
    lab_printers: LabPrinters, worker: CeleryWorker, ipp_gate: IppGate
) -> None:
    # given the 8x10 printer behind a relay that will swallow CUPS' answer to the next Send-Document
    printer_reached_through(lab_printers.large, ipp_gate)
    ipp_gate.arm(GateMode.SWALLOW_SEND_DOCUMENT_REPLY)
    order = paid_order(lines=[("PRINT-8X10-LUSTRE", 1)], photo=PHOTO_300_DPI)
    (job,) = released_jobs(order, 1, worker)

    # when the document reached the device but the worker is SIGKILLed before it heard back from CUPS
    assert ipp_gate.tripped.wait(timeout=30), worker.log_tail()
    wait_until(lambda: lab_printers.received(LARGE_QUEUE), timeout=20, what="the device to receive the job")
    assert job_status(job) == "submitting"
    worker.kill()
    ipp_gate.release()
    worker.start()

    # then the reconciler finds the job at CUPS by its title, and it is printed once, never resent
    wait_for_order(order, "ready_to_pack", worker)
    job.refresh_from_db()
    assert (job.status, job.submit_attempts) == ("printed", 1)
    assert event_count(job, "reconciled") == 1
    assert lab_printers.received_titles(LARGE_QUEUE) == titles([job])


def test_the_same_tasks_delivered_twice_print_the_job_once(
    lab_printers: LabPrinters, worker: CeleryWorker
) -> None:
    from lab.production.actions import batch_release

    # given a job rasterized and waiting in a held batch
    held = Batch.objects.create(printer=lab_printers.photo, size="4x6", paper="lustre", is_held=True)
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 3)], photo=PHOTO_300_DPI)
    (job,) = released_jobs(order, 1, worker)
    wait_for_job(job, "ready", worker)

    # when every production task for it is delivered twice, and the batch is released
    sent = [
        app.send_task(name, kwargs=kwargs, queue=queue)
        for _ in range(2)
        for name, kwargs, queue in (
            ("production.order_release", {"order_id": order.pk}, "default"),
            ("production.print_job_rasterize", {"job_id": job.pk}, "raster"),
        )
    ]
    batch_release(batch_id=held.pk, actor=technician())
    sent += [
        app.send_task("production.print_job_submit", kwargs={"job_id": job.pk}, queue="print")
        for _ in range(2)
    ]

    # then each duplicate ran and did nothing: one job, rasterized once, submitted once, printed once
    wait_until(
        lambda: all(f"[{result.id}] succeeded" in worker.log_text() for result in sent),
        timeout=30,
        interval=0.2,
        what=lambda: f"the duplicate tasks to run; log:\n{worker.log_tail()}",
    )
    wait_for_order(order, "ready_to_pack", worker)
    job.refresh_from_db()
    assert PrintJob.objects.filter(order=order).count() == 1
    assert (job.status, job.copies, job.submit_attempts) == ("printed", 3, 1)
    assert [event_count(job, kind) for kind in ("rasterized", "submitted", "printed")] == [1, 1, 1]
    claims = JobEvent.objects.filter(job=job, kind="claimed").values_list("from_status", "to_status")
    assert sorted(claims) == [("queued", "rasterizing"), ("ready", "submitting")]  # one claim per step
    assert lab_printers.received_titles(PHOTO_QUEUE) == titles([job])


def test_printer_disabled_in_cups_keeps_its_jobs_waiting_and_prints_them_once_when_enabled(
    lab_printers: LabPrinters, worker: CeleryWorker
) -> None:
    # given an order with a 4x6 for the photo printer and an 8x10 for the other, the 4x6 being rasterized
    order = paid_order(
        lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-8X10-LUSTRE", 1)], photo=png_bytes(*SLOW_PHOTO_PIXELS)
    )
    four_by_six, eight_by_ten = released_jobs(order, 2, worker)
    wait_for_job(four_by_six, "rasterizing", worker)

    # when the photo queue is disabled in CUPS (cupsdisable) meanwhile
    lab_printers.cups.disable(PHOTO_QUEUE, reason="paper change")

    # then the other printer's job prints, the photo printer shows paused and its job waits, nothing is lost
    wait_for_job(eight_by_ten, "printed", worker)
    wait_until(
        lambda: Printer.objects.get(pk=lab_printers.photo.pk).state == "paused", timeout=20, what="paused"
    )
    worker.wait_rounds(poll=3, reconcile=1)
    # Ready (the worker saw the pause first) or submitted (CUPS took it and holds it): both wait.
    assert job_status(four_by_six) in {"ready", "submitted"}
    assert order_status(order) == "in_production"
    assert lab_printers.received(PHOTO_QUEUE) == []

    # when the queue is enabled again, then the job prints exactly once and the order is complete
    lab_printers.cups.enable(PHOTO_QUEUE)
    wait_for_order(order, "ready_to_pack", worker)
    assert lab_printers.received_titles(PHOTO_QUEUE) == titles([four_by_six])
    assert lab_printers.received_titles(LARGE_QUEUE) == titles([eight_by_ten])
    four_by_six.refresh_from_db()
    assert (four_by_six.status, four_by_six.submit_attempts) == ("printed", 1)


def test_printer_device_killed_keeps_jobs_in_cups_and_they_print_once_when_it_is_back(
    lab_printers: LabPrinters, worker: CeleryWorker
) -> None:
    # given the 8x10 printer's device (ippeveprinter) SIGKILLed
    lab_printers.kill_device(LARGE_QUEUE)

    # when an order with two 8x10 jobs is paid
    order = paid_order(lines=[("PRINT-8X10-LUSTRE", 1), ("PRINT-8X10-GLOSSY", 2)], photo=PHOTO_300_DPI)
    jobs = released_jobs(order, 2, worker)

    # then the printer shows offline, and the jobs wait: nothing failed, nothing received
    wait_until(
        lambda: Printer.objects.get(pk=lab_printers.large.pk).state == "offline",
        timeout=30,
        what=lambda: f"large offline; jobs {job_statuses(order)}; log:\n{worker.log_tail()}",
    )
    worker.wait_rounds(poll=2, reconcile=1)
    assert {status for _, status in job_statuses(order)} <= {"ready", "submitted"}
    assert lab_printers.received(LARGE_QUEUE) == []

    # when the device is back, then both print exactly once
    lab_printers.restart_device(LARGE_QUEUE)
    wait_for_order(order, "ready_to_pack", worker)
    assert lab_printers.received_titles(LARGE_QUEUE) == titles(jobs)
    assert [job_status(job) for job in jobs] == ["printed", "printed"]
    assert (
        JobEvent.objects.filter(job__order=order, kind__in=["submit_failed", "backend_failed"]).count() == 0
    )
    wait_until(
        lambda: Printer.objects.get(pk=lab_printers.large.pk).state == "online", timeout=20, what="online"
    )


def test_corrupt_photo_fails_rasterizing_permanently_with_a_reason_and_is_not_retried(
    lab_printers: LabPrinters, worker: CeleryWorker
) -> None:
    # given an order whose stored photo is corrupt (bytes that start like a JPEG and are not one)
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], photo=PHOTO_300_DPI)
    asset = order.items.get().asset
    asset.blob_name = vault_write(
        data_key=asset.data_key, plaintext=b"\xff\xd8\xff broken", purpose="original"
    )
    asset.save(update_fields=["blob_name"])

    # when it is paid
    order_pay(order)
    job = wait_until(lambda: first_job_in(order, "failed"), timeout=30, what="a failed job")

    # then the job failed permanently with a reason, once, and stays failed through poll/reconcile rounds
    worker.wait_rounds(poll=3, reconcile=1)
    job.refresh_from_db()
    assert (job.status, job.failure_is_permanent) == ("failed", True)
    assert job.failure_code != "" and job.failure_message != ""
    assert event_count(job, "raster_failed") == 1
    assert (
        JobEvent.objects.filter(job=job, to_status="rasterizing").count() == 1
    )  # claimed once, never retried
    assert order_status(order) == "in_production"
    assert lab_printers.received(PHOTO_QUEUE) == []


def test_corrupt_raster_fails_submit_permanently_with_a_reason_and_is_not_retried(
    lab_printers: LabPrinters, worker: CeleryWorker
) -> None:
    from lab.production.actions import batch_release

    # given a job rasterized into a held batch, whose stored raster is then damaged on disk
    held = Batch.objects.create(printer=lab_printers.large, size="8x10", paper="matte", is_held=True)
    order = paid_order(lines=[("PRINT-8X10-MATTE", 1)], photo=PHOTO_300_DPI)
    (job,) = released_jobs(order, 1, worker)
    wait_for_job(job, "ready", worker)
    blob = Path(settings.MEDIA_ROOT) / "blobs" / job.raster_blob[:2] / job.raster_blob
    damaged = bytearray(blob.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    blob.write_bytes(bytes(damaged))

    # when the batch is released
    batch_release(batch_id=held.pk, actor=technician())

    # then the submit fails permanently with a reason, nothing reaches the printer, and it is not retried
    wait_for_job(job, "failed", worker)
    worker.wait_rounds(poll=3, reconcile=1)
    job.refresh_from_db()
    assert (job.status, job.failure_is_permanent, job.failure_code) == ("failed", True, "raster_unreadable")
    assert job.failure_message != ""
    assert job.submit_attempts == 1
    assert event_count(job, "submit_failed") == 1
    assert lab_printers.received(LARGE_QUEUE) == []
