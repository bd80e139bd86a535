"""Production services with real hot-folder printers: release, routing, raster, submit, poll, reconcile."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image

from lab.orders.transitions import order_transition
from lab.packing.models import PackingSlip
from lab.packing.services import packing_slip_render
from lab.production import rasterizing, reconcile, routing, submission, tracking
from lab.production.models import Batch, JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import process_pending
from tests.builders import WORKER, hotfolder_printer, paid_order
from tests.support.disk import files_capped_at

pytestmark = pytest.mark.django_db


def folder(settings, printer: Printer) -> Path:
    return Path(settings.HOTFOLDER_ROOT) / printer.target


def run_job(job: PrintJob) -> None:
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"


def test_release_creates_one_job_per_item_routed_least_loaded_and_batched(settings):
    small_a = hotfolder_printer("small-a", sizes=["4x6", "5x7"])
    small_b = hotfolder_printer("small-b", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 2), ("PRINT-4X6-LUSTRE", 1), ("PRINT-5X7-GLOSSY", 1)])

    assert routing.order_release(order_id=order.pk) == 3
    assert routing.order_release(order_id=order.pk) == 0  # a redelivered task does nothing

    order.refresh_from_db()
    assert order.status == "in_production"
    jobs = list(PrintJob.objects.order_by("pk"))
    assert [(j.status, j.copies) for j in jobs] == [("queued", 2), ("queued", 1), ("queued", 1)]
    assert [j.printer.name if j.printer else None for j in jobs] == ["small-a", "small-b", "small-a"]
    assert jobs[0].batch != jobs[2].batch  # different media, different batch
    assert Batch.objects.filter(printer=small_a).count() == 2
    assert Batch.objects.filter(printer=small_b).count() == 1


@pytest.mark.parametrize("items", [1, 6])
def test_release_routes_any_number_of_items_in_the_same_statements(django_assert_num_queries, items):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)] * items)

    # savepoint, order locked, no jobs yet, items, capable printers, their loads, batch (get, then savepoint,
    # insert and release), jobs (one insert), events (one insert), order transition (status and event),
    # savepoint released
    with django_assert_num_queries(15):
        assert routing.order_release(order_id=order.pk) == items

    jobs = list(PrintJob.objects.order_by("pk"))
    assert [job.status for job in jobs] == ["queued"] * items
    assert len({job.batch_id for job in jobs}) == 1
    assert list(JobEvent.objects.filter(job=jobs[-1]).values_list("kind", "from_status", "to_status")) == [
        ("created", "", "no_printer"),
        ("routed", "no_printer", "queued"),
    ]


def test_no_capable_printer_waits_then_routes_when_one_appears(settings):
    hotfolder_printer("small", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-11X14-MATTE", 1)])

    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    assert (job.status, job.printer) == ("no_printer", None)

    hotfolder_printer("wide", sizes=["11x14"], papers=["matte"])
    assert routing.jobs_route_waiting() == 1

    job.refresh_from_db()
    assert job.printer is not None
    assert (job.status, job.printer.name) == ("queued", "wide")


def test_full_path_raster_submit_poll_printed_ready_to_pack_and_slip(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6", "8x10"], dpi=300)
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 2), ("PRINT-8X10-GLOSSY", 1)], photo=(3000, 2000))
    routing.order_release(order_id=order.pk)
    jobs = list(PrintJob.objects.order_by("pk"))

    for job in jobs:
        run_job(job)
    tickets = sorted(folder(settings, printer).glob("*.json"))
    assert len(tickets) == 2
    assert tracking.printer_poll()["waiting"] == 2  # the device has not taken them yet
    process_pending(folder=folder(settings, printer), delay_seconds=0)
    tracking.printer_poll()

    sizes = []
    for ticket_path in sorted((folder(settings, printer) / "done").glob("*.json")):
        ticket = json.loads(ticket_path.read_text())
        data = (
            (folder(settings, printer) / "done" / ticket["file_name"]).read_bytes()
            if (folder(settings, printer) / "done" / ticket["file_name"]).exists()
            else None
        )
        sizes.append((ticket["media"], ticket["copies"], ticket["title"], data is not None))
    assert sorted(s[:3] for s in sizes) == sorted(
        [
            ("na_index-4x6_4x6in", 2, jobs[0].title),
            ("na_govt-letter_8x10in", 1, jobs[1].title),
        ]
    )
    order.refresh_from_db()
    assert order.status == "ready_to_pack"
    assert set(PrintJob.objects.values_list("status", flat=True)) == {"printed"}
    slip = packing_slip_render(order_id=order.pk)
    assert bytes(slip.pdf).startswith(b"%PDF") and PackingSlip.objects.count() == 1


def test_raster_has_the_product_size_at_printer_resolution(settings):
    hotfolder_printer("minilab", sizes=["5x7"], dpi=300)
    order = paid_order(lines=[("PRINT-5X7-LUSTRE", 1)], photo=(1200, 1800))
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()

    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)

    job.refresh_from_db()
    assert (job.status, job.raster_width_px, job.raster_height_px) == ("ready", 1500, 2100)
    from lab.privacy.vault import vault_read

    data = vault_read(data_key=job.item.asset.data_key, name=job.raster_blob, purpose="raster")
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (1500, 2100)
        assert not image.getexif()


def test_same_task_delivered_twice_submits_once(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()

    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "not_claimed"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert submission.print_job_submit(job_id=job.pk, worker="other:2") == "not_ready"

    assert len(list(folder(settings, printer).glob("*.json"))) == 1


def test_corrupt_original_fails_permanently_without_retry(settings):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    from lab.privacy.vault import vault_write

    asset = job.item.asset
    asset.blob_name = vault_write(
        data_key=asset.data_key, plaintext=b"\xff\xd8\xff garbage", purpose="original"
    )
    asset.save(update_fields=["blob_name"])

    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "failed"

    job.refresh_from_db()
    assert (job.status, job.failure_is_permanent) == ("failed", True)
    assert job.failure_code != ""
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "not_claimed"


def test_transient_printer_failure_goes_back_to_ready_with_backoff(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    folder(settings, printer).rmdir()  # the minilab's share is gone for a moment

    outcome = submission.print_job_submit(job_id=job.pk, worker=WORKER)

    job.refresh_from_db()
    assert outcome == "retry"
    assert (job.status, job.submit_attempts, job.failure_code) == ("ready", 1, "printer_unreachable")
    assert job.next_attempt_at is not None
    assert job.next_attempt_at > timezone.now()
    folder(settings, printer).mkdir()
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(list(folder(settings, printer).glob("*.json"))) == 1


def test_transient_failures_stop_after_the_attempt_cap(settings):
    settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS = 2
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    folder(settings, printer).rmdir()

    outcomes = [submission.print_job_submit(job_id=job.pk, worker=WORKER) for _ in range(3)]

    # The last attempt asks the printer for a copy of its first before it fails the job: a folder that is
    # gone cannot answer (it is not "nothing of ours there"), so a person decides (unknown), not a reroute.
    job.refresh_from_db()
    assert outcomes == ["retry", "unknown", "not_ready"]
    assert job.status == "unknown"


def test_paused_printer_holds_jobs_and_offline_printer_reroutes(settings):
    first = hotfolder_printer("first", sizes=["4x6"])
    hotfolder_printer("second", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    assert job.printer == first
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    (folder(settings, first) / "PAUSED").touch()

    tracking.printer_poll()
    first.refresh_from_db()
    assert first.state == "paused"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "waiting"

    (folder(settings, first) / "PAUSED").unlink()
    folder(settings, first).rmdir()  # the share disappears: offline
    tracking.printer_poll()

    job.refresh_from_db()
    first.refresh_from_db()
    assert first.state == "offline"
    assert (job.status, job.printer.name) == ("queued", "second")
    assert JobEvent.objects.filter(job=job, kind="rerouted").count() == 1


def test_reconciler_finds_a_job_submitted_before_a_crash_and_flags_unknown_ones(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    sent, lost = PrintJob.objects.order_by("pk")
    for job in (sent, lost):
        rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    # A worker claimed both, began sending each, sent the first to the printer, and died before saving
    # either. (A claim that never began to send is sent again instead: tests/production/test_send_fence.py.)
    HotFolderBackend(folder=folder(settings, printer)).submit(
        path=_raster_file(settings, sent), title=sent.title, media="na_index-4x6_4x6in", copies=1
    )
    stale = timezone.now() - timedelta(hours=1)
    PrintJob.objects.filter(pk__in=[sent.pk, lost.pk]).update(
        status="submitting", claimed_at=stale, sending_claim_at=stale
    )

    result = reconcile.production_reconcile()

    sent.refresh_from_db()
    lost.refresh_from_db()
    assert result == {"reconciled": 1, "unknown": 1}
    assert (sent.status, sent.backend_job_id != "") == ("submitted", True)
    assert lost.status == "unknown"  # never resubmitted automatically
    assert len(list(folder(settings, printer).glob("*.json"))) == 1


def _raster_file(settings, job: PrintJob) -> Path:
    from lab.privacy.vault import vault_read

    job.refresh_from_db()
    path = Path(settings.MEDIA_ROOT) / f"{job.pk}.jpg"
    path.write_bytes(vault_read(data_key=job.item.asset.data_key, name=job.raster_blob, purpose="raster"))
    return path


def test_expired_raster_lease_is_taken_over(settings):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    PrintJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RASTERIZING, claimed_at=timezone.now(), claimed_by="dead:1"
    )
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "not_claimed"
    PrintJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now() - timedelta(hours=1))

    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"


class WorkerKilled(BaseException):
    """The raster worker dies here (SIGKILL, the OOM killer): no handler of the lab's catches it."""


def test_a_raster_that_kills_every_worker_fails_the_job_for_a_person_after_three_takeovers(
    settings, monkeypatch
):
    """A photo that crashes libvips, or runs a worker out of memory, kills each worker that takes it on.
    Before, the reconciler gave the expired claim to the next worker for ever: the job only ever looked
    `rasterizing`, and nobody was told."""
    from lab.production import raster

    settings.PRODUCTION_HANDOFF_GRACE_SECONDS = 0
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()

    def killed(**_: object) -> object:
        raise WorkerKilled

    monkeypatch.setattr(raster, "rasterize", killed)
    swept = []
    for worker in range(settings.PRODUCTION_MAX_RASTER_TAKEOVERS + 1):
        with pytest.raises(WorkerKilled):
            rasterizing.print_job_rasterize(job_id=job.pk, worker=f"worker:{worker}")
        PrintJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
        result = reconcile.production_reconcile()
        swept.append(next(key for key in ("rasterize_taken_over", "raster_given_up") if key in result))

    assert swept == ["rasterize_taken_over"] * 3 + ["raster_given_up"]
    job.refresh_from_db()
    assert (job.status, job.failure_code, job.claimed_by) == (JobStatus.FAILED, "raster_worker_lost", "")
    assert JobEvent.objects.filter(job=job, kind="lease_taken_over").count() == 3


def _stored_files(settings) -> list[Path]:
    return sorted(path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file())


def test_a_raster_the_store_cannot_write_keeps_no_partial_blob_and_is_made_once_its_wait_ends(settings):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    blobs = _stored_files(settings)

    with files_capped_at(64_000):  # the store's disk fails the raster's write
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "store_refused"

    # the job is given back to the queue, to wait (not held by a claim until its lease ends)
    job.refresh_from_db()
    assert (job.status, job.raster_blob) == ("queued", "")
    assert _stored_files(settings) == blobs  # no partial raster left behind
    # once its wait is over, the raster is made
    PrintJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"


def test_only_a_supervisor_cancels_in_production_and_unprinted_jobs_are_cancelled(settings):
    from lab.orders.cancellation import order_cancel
    from lab.production.cancellation import order_cancel_in_production
    from tests.builders import person

    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    printed, _waiting = PrintJob.objects.order_by("pk")
    PrintJob.objects.filter(pk=printed.pk).update(status="printed")
    order.refresh_from_db()

    with pytest.raises(Exception, match="cannot be cancelled"):
        order_cancel(order=order, actor=None, actor_kind="customer")
    with pytest.raises(Exception, match="Only supervisors"):
        order_cancel_in_production(order_ref=order.ref, actor=person("technician"))
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))

    order.refresh_from_db()
    assert order.status == "cancelled"
    assert list(PrintJob.objects.order_by("pk").values_list("status", flat=True)) == ["printed", "cancelled"]


def test_jobs_of_an_order_on_hold_are_not_sent_until_the_hold_is_released(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    order.refresh_from_db()
    order_transition(order=order, to_status="on_hold", note="which crop?")

    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "waiting"
    order_transition(order=order, to_status="in_production", note="customer answered")
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(list(folder(settings, printer).glob("*.json"))) == 1


def test_a_job_stopped_at_the_printer_is_cancelled_there_and_failed_here(settings):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    run_job(job)
    job.refresh_from_db()
    # The hot folder's device moves a ticket it cannot take to error/ (CUPS "aborted"); a CUPS-stopped job is
    # the same situation for us: fail it where a technician sees it.
    ticket = folder(settings, printer) / f"{job.backend_job_id}.json"
    (folder(settings, printer) / "error").mkdir()
    ticket.rename(folder(settings, printer) / "error" / ticket.name)

    tracking.printer_poll()

    job.refresh_from_db()
    assert (job.status, job.failure_code, job.failure_is_permanent) == ("failed", "printer_aborted", False)


# --- A failed job is sent again on the only printer that holds its media ------------------------------------


@pytest.mark.parametrize("named", [True, False], ids=["its printer named", "least loaded"])
def test_a_failed_job_on_the_only_printer_with_its_media_is_sent_again_there_and_prints_once(settings, named):
    from lab.production import jobs, reroutes
    from printers.hotfolder_device import pending_tickets
    from tests.builders import person

    # given a minilab, the only printer with 4x6 media, that holds a job's send and never starts it: the job
    # failed for a person (printer_held_job), its send still waiting in the inbox
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    run_job(job)
    assert jobs.job_fail(
        job_id=job.pk,
        from_statuses={JobStatus.SUBMITTED},
        kind="backend_failed",
        code="printer_held_job",
        message="held at the printer",
        is_permanent=False,
    )

    # when the technician sends it again on its printer (before: refused, same_printer or no_capable_printer,
    # and the paid order stayed in production until a supervisor cancelled and refunded it)
    reroutes.job_reroute_by_staff(
        job_id=job.pk, actor=person("technician"), printer_id=printer.pk if named else None
    )

    # then the send still waiting is withdrawn, the job is sent anew there, and it prints once
    job.refresh_from_db()
    assert (job.status, job.printer_id, job.submit_attempts, job.failure_code) == (
        "queued",
        printer.pk,
        0,
        "",
    )
    assert pending_tickets(folder=folder(settings, printer)) == []
    assert JobEvent.objects.get(job=job, kind="rerouted").note == "sent again on printer=minilab"
    run_job(job)
    assert len(process_pending(folder=folder(settings, printer), delay_seconds=0)) == 1
    tracking.printer_poll()
    job.refresh_from_db()
    order.refresh_from_db()
    assert (job.status, order.status) == ("printed", "ready_to_pack")


def test_a_job_failed_on_a_printer_changed_outside_the_lab_is_sent_again_only_once_the_admin_saved_it(
    settings,
):
    from lab.lib.errors import DomainError
    from lab.production import reroutes
    from tests.builders import floor_state, person
    from tests.support.dba import dba

    # given the only 4x6 printer pointed elsewhere in the database, and its job failed for it
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    elsewhere = Path(settings.HOTFOLDER_ROOT) / "read-by-someone-else"
    elsewhere.mkdir()
    dba("UPDATE production_printer SET target = %s WHERE id = %s", elsewhere.name, printer.pk)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "failed"
    technician = person("technician")
    before = floor_state()

    # when a technician sends it again before the printer was accepted, then it is refused with the reason,
    # named or not, and nothing changes (no silent send that fails again)
    for printer_id in (printer.pk, None):
        with pytest.raises(DomainError, match="changed outside the lab") as refused:
            reroutes.job_reroute_by_staff(job_id=job.pk, actor=technician, printer_id=printer_id)
        assert refused.value.code == "no_capable_printer"
    assert floor_state() == before

    # when the lab admin has saved the printer (back to its folder) and the job is sent again, then it prints
    # there once, and nothing reached the other folder
    saved = Printer.objects.get(pk=printer.pk)
    saved.target = "minilab"
    saved.save(update_fields=["target"])
    saved.destination_accept()
    reroutes.job_reroute_by_staff(job_id=job.pk, actor=technician, printer_id=printer.pk)
    run_job(job)
    assert len(process_pending(folder=folder(settings, printer), delay_seconds=0)) == 1
    assert [path for path in elsewhere.rglob("*") if path.is_file()] == []


def test_a_job_that_is_not_failed_is_not_sent_again_on_its_own_printer():
    from lab.lib.errors import DomainError
    from lab.production import reroutes
    from tests.builders import person

    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()

    with pytest.raises(DomainError, match="already on that printer"):
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=printer.pk)
    with pytest.raises(DomainError, match="No other online printer holds 4x6 media"):
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"))


def test_a_failed_job_is_not_sent_again_on_its_printer_while_that_one_is_paused():
    from lab.lib.errors import DomainError
    from lab.production import actions, jobs, reroutes
    from tests.builders import floor_state, person

    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    jobs.job_fail(
        job_id=job.pk,
        from_statuses={JobStatus.QUEUED},
        kind="raster_failed",
        code="raster_failed",
        message="x",
    )
    technician = person("technician")
    actions.printer_pause(printer_id=printer.pk, actor=technician)
    before = floor_state()

    with pytest.raises(DomainError, match="minilab is paused: send job"):
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=technician, printer_id=printer.pk)
    with pytest.raises(DomainError, match="No online printer holds 4x6 media, minilab included"):
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=technician)
    assert floor_state() == before
