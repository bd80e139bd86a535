"""A submit claim's send fence: a worker lost after its claim but before it handed the raster to the printer
sent nothing, so the reconciler sends the job again by itself instead of asking a person; a worker that wakes
after its claim was taken back sends nothing; a worker lost after it began to send still leaves the job
`unknown` when the printer holds no such job. On real hot-folder printers; the reconciler and the workers'
code paths are the lab's own, the workers' deaths are exceptions no handler catches (the real SIGKILL of a
real worker is tests/e2e/test_production_cups.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core import mail
from django.db import OperationalError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F
from django.db.models.functions import Now

from lab.privacy import vault
from lab.production import rasterizing, reconcile, submission, submit_reconcile, tracking
from lab.production.actions import batch_hold, batch_release, printer_pause, printer_resume
from lab.production.alerts import alerts_check
from lab.production.backends import backend_for, media_for
from lab.production.cancellation import order_cancel_in_production, printer_cancels_settle
from lab.production.holds import order_hold, order_release_hold
from lab.production.models import Alert, JobEvent, Printer, PrintJob
from lab.production.resolutions import job_resolve_unknown
from lab.production.states import JobStatus
from lab.staff.board import board_snapshot
from printers.base import JobState
from printers.errors import PRINTER_UNREACHABLE, TransientPrinterError
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import process_pending
from printers.registry import KIND_CUPS
from tests.builders import broker_tasks, hotfolder_printer, person, printer_folder, released_order
from tests.builders.production import claim_lease_runs_out
from tests.support.database_locks import until_sessions_wait_for_locks
from tests.support.migrations import leaf_migrations

pytestmark = pytest.mark.django_db
J = JobStatus
FIRST, SECOND = "test-worker:1", "test-worker:2"


class WorkerKilled(BaseException):
    """The worker process dies here: no handler of the lab's catches it (SIGKILL, the OOM killer)."""


@pytest.fixture(autouse=True)
def _empty_print_queue(settings):
    settings.PRODUCTION_HANDOFF_GRACE_SECONDS = 0
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("raster", "default", "print")


def _ready_job() -> PrintJob:
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=FIRST) == "ready"
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("print")  # its submit message: taken, say
    return job


def _received() -> list[Path]:
    """What the minilab's hot folder holds: every print the lab handed to it."""
    return sorted((Path(settings.HOTFOLDER_ROOT) / "minilab").rglob("*.jpg"))


def _submit_killed_at_raster_read(job: PrintJob, monkeypatch: pytest.MonkeyPatch, *, worker: str) -> None:
    def killed(**_: object) -> bytes:
        raise WorkerKilled

    monkeypatch.setattr(submission, "vault_read", killed)
    with pytest.raises(WorkerKilled):
        submission.print_job_submit(job_id=job.pk, worker=worker)
    monkeypatch.setattr(submission, "vault_read", vault.vault_read)


def _kinds(job: PrintJob) -> list[str]:
    return list(JobEvent.objects.filter(job=job).order_by("pk").values_list("kind", flat=True))


def test_a_worker_lost_after_its_claim_before_the_send_is_sent_again_by_the_reconciler_once(monkeypatch):
    job = _ready_job()
    _submit_killed_at_raster_read(job, monkeypatch, worker=FIRST)
    job.refresh_from_db()
    assert (job.status, job.sending_claim_at, _received()) == (J.SUBMITTING, None, [])

    claim_lease_runs_out(job)
    swept = reconcile.production_reconcile()

    job.refresh_from_db()
    assert swept.get("claims_taken_back") == 1 and "unknown" not in swept
    assert (job.status, job.claimed_by, job.claimed_at) == (J.READY, "", None)
    assert _kinds(job)[-2:] == ["claimed", "claim_expired_unsent"]
    assert ("production.print_job_submit", {"job_id": job.pk}) in broker_tasks("print")
    # the message's worker: a retry, which looks for an earlier attempt at the printer first, finds none
    assert submission.print_job_submit(job_id=job.pk, worker=SECOND) == "submitted"
    job.refresh_from_db()
    assert (job.status, job.submit_attempts, len(_received())) == (J.SUBMITTED, 2, 1)


def test_a_worker_that_wakes_after_its_claim_was_taken_back_sends_nothing(monkeypatch):
    job = _ready_job()
    outcomes: list[str] = []

    def stalled_past_its_lease(**kwargs: object) -> bytes:
        # The first worker stalls reading the raster (swapped out, SIGSTOPped) past its lease. Meanwhile the
        # reconciler takes the claim back and a second worker sends the job.
        monkeypatch.setattr(submission, "vault_read", vault.vault_read)
        claim_lease_runs_out(job)
        assert reconcile.production_reconcile().get("claims_taken_back") == 1
        outcomes.append(submission.print_job_submit(job_id=job.pk, worker=SECOND))
        return vault.vault_read(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(submission, "vault_read", stalled_past_its_lease)

    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "superseded"

    job.refresh_from_db()
    assert outcomes == ["submitted"]
    assert (job.status, len(_received())) == (J.SUBMITTED, 1)
    assert _kinds(job).count("submitted") == 1


def test_a_worker_lost_after_it_began_to_send_leaves_the_job_unknown_if_the_printer_has_none(monkeypatch):
    """The fence's other side (this held before the fence too): once the send began, the printer may have
    printed it and dropped it from its history, so nothing is sent again without a person."""
    job = _ready_job()

    def killed_while_sending(self: HotFolderBackend, **_: object) -> str:
        raise WorkerKilled

    monkeypatch.setattr(HotFolderBackend, "submit", killed_while_sending)
    with pytest.raises(WorkerKilled):
        submission.print_job_submit(job_id=job.pk, worker=FIRST)
    job.refresh_from_db()
    assert job.sending_claim_at is not None

    claim_lease_runs_out(job)
    swept = reconcile.production_reconcile()

    job.refresh_from_db()
    assert (swept.get("unknown"), job.status, _received()) == (1, J.UNKNOWN, [])
    assert broker_tasks("print") == []


# Not inside a test's transaction: the take-back opens a new connection, as a worker's does after the error.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fence_applied", [True, False], ids=["fence set, answer lost", "fence not set"])
def test_a_fence_the_database_fails_under_takes_the_claim_back_and_the_job_is_sent_once(
    monkeypatch, settings, fence_applied
):
    """PostgreSQL goes away as the worker sets its send fence: the UPDATE applied with its answer lost, or not
    applied at all. Either way the raster was not sent. Before, the error went up uncaught and the claim
    stayed: with the fence set, the reconciler found no copy at the printer once the lease ran out and called
    the job `unknown`, for a person; without it, the job waited the whole lease."""
    job = _ready_job()
    real_send_begin = submission._send_begin

    def database_gone(**kwargs: Any) -> bool:
        if fence_applied:
            assert real_send_begin(**kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(submission, "_send_begin", database_gone)
    with pytest.raises(OperationalError):
        submission.print_job_submit(job_id=job.pk, worker=FIRST)
    monkeypatch.setattr(submission, "_send_begin", real_send_begin)

    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.sending_claim_at, job.submit_attempts) == (J.READY, "", None, 0)
    assert _kinds(job)[-2:] == ["claimed", "claim_released"]
    assert ("production.print_job_submit", {"job_id": job.pk}) in broker_tasks("print")
    # however long its message waits, the reconciler finds nothing to call `unknown`
    settings.PRODUCTION_CLAIM_LEASE_SECONDS = 0
    assert "unknown" not in reconcile.production_reconcile()
    job.refresh_from_db()
    assert (job.status, _received()) == (J.READY, [])
    # and the message's worker sends it: one copy
    assert submission.print_job_submit(job_id=job.pk, worker=SECOND) == "submitted"
    job.refresh_from_db()
    assert (job.status, job.submit_attempts, len(_received())) == (J.SUBMITTED, 1, 1)


def test_a_cancel_that_lands_before_the_send_sends_nothing_and_is_settled_at_once(monkeypatch):
    job = _ready_job()

    def supervisor_cancels_as_the_worker_reads_the_raster(**kwargs: object) -> bytes:
        order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
        return vault.vault_read(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(submission, "vault_read", supervisor_cancels_as_the_worker_reads_the_raster)

    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "cancelled_before_send"

    job.refresh_from_db()
    # nothing reached the printer, and the cancel is settled now, not once the claim's lease has run out
    assert (job.status, job.cancel_at_printer, job.claimed_at, _received()) == (J.CANCELLED, False, None, [])
    assert _kinds(job)[-1] == "printer_cancelled"


@pytest.mark.parametrize("what", ["printer paused", "batch held", "order held"])
def test_a_pause_or_a_batch_hold_that_lands_after_the_claim_before_the_send_sends_nothing(monkeypatch, what):
    """A technician pauses the printer, holds the batch to change paper, or holds the order with a question
    for the customer, while a worker that already claimed a job reads its raster. Before, the pause and the
    holds were read only before the claim, and the copy went out onto the wrong paper (or printed an order
    waiting for the customer's answer: that hold was not read by the fence at all until a review found it)."""
    job = _ready_job()
    assert job.printer is not None and job.batch is not None

    def technician_acts_as_the_worker_reads_the_raster(**kwargs: object) -> bytes:
        technician = person("technician")
        if what == "printer paused":
            printer_pause(printer_id=job.printer_id, actor=technician)  # type: ignore[arg-type]
        elif what == "batch held":
            batch_hold(batch_id=job.batch_id, actor=technician)  # type: ignore[arg-type]
        else:
            order_hold(order_ref=job.order.ref, actor=technician, message="Which crop do you want?")
        return vault.vault_read(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(submission, "vault_read", technician_acts_as_the_worker_reads_the_raster)

    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "waiting"

    job.refresh_from_db()
    assert (job.status, job.claimed_at, job.submit_attempts, _received()) == (J.READY, None, 0, [])
    assert _kinds(job)[-1] == "claim_released"
    monkeypatch.setattr(submission, "vault_read", vault.vault_read)
    if what == "printer paused":
        printer_resume(printer_id=job.printer_id, actor=person("technician"))  # type: ignore[arg-type]
    elif what == "batch held":
        batch_release(batch_id=job.batch_id, actor=person("technician"))  # type: ignore[arg-type]
    else:
        order_release_hold(order_ref=job.order.ref, actor=person("technician"))
    assert submission.print_job_submit(job_id=job.pk, worker=SECOND) == "submitted"
    assert len(_received()) == 1


def test_a_submitted_job_the_printer_no_longer_knows_waits_for_a_person_not_failed(monkeypatch):
    """The printer dropped the job from its history before the poll read its outcome (a CUPS MaxJobs
    rollover, a device reset): it may well have printed. Before, the job was `failed` (`job_not_found`), whose
    only way on was another printer (a second print) and which nobody could call printed."""
    job = _ready_job()
    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "submitted"
    job.refresh_from_db()
    assert job.printer is not None
    for ticket in printer_folder(job.printer).rglob(f"{job.backend_job_id}*"):
        ticket.unlink()  # the device printed it and its history was cleared

    assert tracking.printer_poll().get("unknown") == 1

    job.refresh_from_db()
    assert (job.status, _kinds(job)[-1]) == (J.UNKNOWN, "job_lost")
    job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=True)
    job.refresh_from_db()
    assert job.status == J.PRINTED


def test_send_again_on_a_suspect_job_sends_a_new_copy_not_the_one_the_person_rejected():
    """A restart made the job `suspect`; the technician counts no good print and chooses "send again".
    Before, the resend counted as a retry, found the rejected copy at the printer by its title, adopted it,
    and the job was `suspect` again with nothing sent, however often the person chose it."""
    job = _ready_job()
    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "submitted"
    job.refresh_from_db()
    assert job.printer is not None
    folder = printer_folder(job.printer)
    first_copy = process_pending(folder=folder, delay_seconds=0)
    PrintJob.objects.filter(pk=job.pk).update(backend_restarted=True)  # cupsd restarted while it printed
    tracking.printer_poll()
    job.refresh_from_db()
    assert job.status == J.SUSPECT
    old_title = job.title

    job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)
    assert submission.print_job_submit(job_id=job.pk, worker=SECOND) == "submitted"
    second_copy = process_pending(folder=folder, delay_seconds=0)
    tracking.printer_poll()

    job.refresh_from_db()
    assert (job.status, len(first_copy), len(second_copy)) == (J.PRINTED, 1, 1)
    assert second_copy != first_copy and job.title != old_title
    assert _kinds(job).count("adopted") == 0


def _slow_send(
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: Callable[[], None],
    landed: Callable[[], object] = lambda: None,
) -> list[str]:
    """The first send stalls at the printer past its lease (a slow network, a stalled worker): `meanwhile`
    runs before it lands, `landed` after it landed and before its worker hears so. Returns the handles each
    send got, in the order they landed."""
    real_submit = HotFolderBackend.submit
    handles: list[str] = []
    stalled: list[bool] = []

    def submit(self: HotFolderBackend, **kwargs: object) -> str:
        first = not stalled
        if first:
            stalled.append(True)
            meanwhile()
        handles.append(real_submit(self, **kwargs))  # type: ignore[arg-type]
        handle = handles[-1]
        if first:
            landed()
        return handle

    monkeypatch.setattr(HotFolderBackend, "submit", submit)
    return handles


def _reconciled_unknown(job: PrintJob) -> None:
    # the lease ran out mid-send; the reconciler finds no copy at the printer yet, and the fence is set
    claim_lease_runs_out(job)
    assert reconcile.production_reconcile() == {"unknown": 1}


def test_a_send_that_lands_after_the_reconciler_called_the_job_unknown_makes_it_submitted(monkeypatch):
    job = _ready_job()
    handles = _slow_send(monkeypatch, lambda: _reconciled_unknown(job))

    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "late_send_landed"

    job.refresh_from_db()
    assert job.printer is not None
    assert (job.status, job.backend_job_id, len(handles)) == (J.SUBMITTED, handles[0], 1)
    assert _kinds(job)[-2:] == ["fate_unknown", "late_send_landed"]
    assert process_pending(folder=printer_folder(job.printer), delay_seconds=0) == handles  # printed once


def test_a_send_that_lands_after_a_person_sent_the_job_again_is_cancelled_at_the_printer(monkeypatch):
    job = _ready_job()
    outcomes: list[str] = []

    def unknown_then_a_person_sends_it_again() -> None:
        _reconciled_unknown(job)
        job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)
        outcomes.append(submission.print_job_submit(job_id=job.pk, worker=SECOND))

    handles = _slow_send(monkeypatch, unknown_then_a_person_sends_it_again)

    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "late_copy_cancelled"

    job.refresh_from_db()
    assert job.printer is not None
    resent, late = handles
    assert outcomes == ["submitted"]
    assert (job.status, job.backend_job_id) == (J.SUBMITTED, resent)
    assert backend_for(job.printer).job_state(late) is JobState.CANCELED
    assert process_pending(folder=printer_folder(job.printer), delay_seconds=0) == [resent]  # printed once
    assert _kinds(job)[-1] == "late_copy_cancelled"


def test_a_late_send_on_a_job_unknown_again_after_a_person_sent_it_again_is_cancelled_not_adopted(
    monkeypatch,
):
    """The job is `unknown` when the late send lands, but for a newer send: a technician sent it again, that
    copy printed and the printer forgot it (`job_lost`). The late copy is the old claim's, a second one:
    adopting it (the fence compared to no claim) would print the job twice with nobody asked."""
    job = _ready_job()
    assert job.printer is not None
    folder = printer_folder(job.printer)

    def unknown_sent_again_printed_and_forgotten() -> None:
        _reconciled_unknown(job)
        job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)
        assert submission.print_job_submit(job_id=job.pk, worker=SECOND) == "submitted"
        resent = PrintJob.objects.get(pk=job.pk).backend_job_id
        assert process_pending(folder=folder, delay_seconds=0) == [resent]
        for ticket in folder.rglob(f"{resent}*"):
            ticket.unlink()  # its history cleared before the poll read its outcome
        assert tracking.printer_poll().get("unknown") == 1

    handles = _slow_send(monkeypatch, unknown_sent_again_printed_and_forgotten)

    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "late_copy_cancelled"

    job.refresh_from_db()
    resent, late = handles
    assert (job.status, job.backend_job_id) == (J.UNKNOWN, resent)  # still the person's to count
    assert backend_for(job.printer).job_state(late) is JobState.CANCELED
    assert process_pending(folder=folder, delay_seconds=0) == []  # the late copy never prints
    assert _kinds(job)[-2:] == ["job_lost", "late_copy_cancelled"]


def test_a_late_second_copy_the_printer_already_printed_leaves_the_job_suspect(monkeypatch):
    job = _ready_job()
    assert job.printer is not None
    folder = printer_folder(job.printer)

    def unknown_then_a_person_sends_it_again() -> None:
        _reconciled_unknown(job)
        job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)
        assert submission.print_job_submit(job_id=job.pk, worker=SECOND) == "submitted"

    # the minilab prints both before the late worker hears its send landed: its copy cannot be cancelled
    handles = _slow_send(
        monkeypatch,
        unknown_then_a_person_sends_it_again,
        lambda: process_pending(folder=folder, delay_seconds=0),
    )

    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "late_copy_not_cancelled"

    job.refresh_from_db()
    assert (job.status, job.backend_job_id, len(handles)) == (J.SUSPECT, handles[0], 2)
    assert _kinds(job)[-1] == "late_copy_not_cancelled"  # on the board: may have printed twice


def test_a_late_second_copy_after_the_resent_copy_printed_is_on_the_board_and_alerted(monkeypatch, settings):
    """The resent copy prints and the poll marks the job printed within a second, long before a worker stalled
    past its lease wakes: its late copy, which the printer would not cancel, finds the job `printed`, not
    `submitted`, so the job is not made `suspect`. Before, only the job's history said so: two prints at the
    printer and nothing on the board, in the alerts or the gauge."""
    settings.ALERT_QUEUE_DEPTH = 1000
    person("supervisor", email="sup@lab.example")
    job = _ready_job()
    assert job.printer is not None
    folder = printer_folder(job.printer)

    def unknown_then_a_person_sends_it_again_and_it_prints() -> None:
        _reconciled_unknown(job)
        job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)
        assert submission.print_job_submit(job_id=job.pk, worker=SECOND) == "submitted"
        assert len(process_pending(folder=folder, delay_seconds=0)) == 1
        tracking.printer_poll()
        assert PrintJob.objects.get(pk=job.pk).status == J.PRINTED

    # the minilab prints the late copy before its worker hears its send landed: it cannot be cancelled
    handles = _slow_send(
        monkeypatch,
        unknown_then_a_person_sends_it_again_and_it_prints,
        lambda: process_pending(folder=folder, delay_seconds=0),
    )

    assert submission.print_job_submit(job_id=job.pk, worker=FIRST) == "late_copy_not_cancelled"

    job.refresh_from_db()
    assert (job.status, len(handles)) == (J.PRINTED, 2)
    assert _kinds(job)[-1] == "late_copy_not_cancelled"
    # on the board as a copy that may have printed twice, and alerted to a supervisor by mail
    assert [listed.pk for listed in board_snapshot().printed_after_cancel] == [job.pk]
    mail.outbox.clear()
    alerts_check()
    (alert,) = Alert.objects.filter(link=f"/lab/jobs/{job.pk}/")
    assert alert.kind == "job_needs_person" and "may have printed twice" in alert.message
    assert [m.to for m in mail.outbox if job.order.ref in m.body] == [["sup@lab.example"]]


@pytest.mark.parametrize(
    ("began_to_send", "outcome", "status"),
    [(False, "claims_taken_back", J.READY), (True, "reconcile_unreachable", J.SUBMITTING)],
)
def test_a_printer_that_does_not_answer_settles_only_the_claims_that_never_began_to_send(
    monkeypatch, began_to_send, outcome, status
):
    job = _ready_job()
    _submit_killed_at_raster_read(job, monkeypatch, worker=FIRST)
    # its printer is now a CUPS queue on a server that refuses connections (a closed loopback port)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    silent = Printer.objects.create(name="silent", backend=KIND_CUPS, target="photo", cups_server=closed)
    PrintJob.objects.filter(pk=job.pk).update(
        printer=silent, sending_claim_at=Now() if began_to_send else None
    )
    claim_lease_runs_out(job)

    assert reconcile.production_reconcile() == {outcome: 1}
    job.refresh_from_db()
    assert job.status == status


def test_a_worker_lost_before_the_send_at_every_attempt_fails_the_job_for_a_person(monkeypatch, settings):
    settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS = 2
    job = _ready_job()
    swept: list[dict[str, int]] = []
    for worker in (FIRST, SECOND):
        _submit_killed_at_raster_read(job, monkeypatch, worker=worker)
        claim_lease_runs_out(job)
        swept.append(reconcile.production_reconcile())

    job.refresh_from_db()
    assert [s.get("claims_taken_back", 0) for s in swept] == [1, 0] and swept[1].get("failed") == 1
    assert (job.status, job.failure_code, job.submit_attempts, _received()) == (
        J.FAILED,
        "worker_lost",
        2,
        [],
    )


def test_a_fence_that_lands_before_the_take_back_wins_and_the_take_back_moves_nothing(monkeypatch):
    job = _ready_job()
    fenced: list[bool] = []

    def worker_sets_its_fence_as_the_sweep_reads(claimed: PrintJob) -> str:
        # The sweep read the claim unfenced; the worker, slow but alive, sets its fence before the take-back.
        claimed_at = PrintJob.objects.get(pk=claimed.pk).claimed_at
        assert claimed_at is not None
        fenced.append(submission._send_begin(job_id=claimed.pk, worker=FIRST, claimed_at=claimed_at))
        return real_reconcile(claimed)

    _submit_killed_at_raster_read(job, monkeypatch, worker=FIRST)
    claim_lease_runs_out(job)
    real_reconcile = submit_reconcile._claim_take_back_unsent
    monkeypatch.setattr(submit_reconcile, "_claim_take_back_unsent", worker_sets_its_fence_as_the_sweep_reads)

    swept = reconcile.production_reconcile()

    job.refresh_from_db()
    assert fenced == [True] and swept == {"claim_moved": 1}
    assert (job.status, job.claimed_by) == (J.SUBMITTING, FIRST)  # still the worker's, to send
    assert broker_tasks("print") == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["worker", "reconciler"])
def test_the_fence_and_the_take_back_racing_on_two_connections_exactly_one_wins(monkeypatch, first):
    job = _ready_job()
    _submit_killed_at_raster_read(job, monkeypatch, worker=FIRST)
    claim_lease_runs_out(job)
    claimed = PrintJob.objects.select_related("printer").get(pk=job.pk)
    claimed_at = claimed.claimed_at
    assert claimed_at is not None
    results: dict[str, object] = {}
    started = {name: threading.Event() for name in ("worker", "reconciler")}

    def worker() -> None:
        started["worker"].set()
        results["worker"] = submission._send_begin(job_id=job.pk, worker=FIRST, claimed_at=claimed_at)
        connection.close()

    def reconciler() -> None:
        started["reconciler"].set()
        results["reconciler"] = submit_reconcile.reconcile_submitting(claimed)
        connection.close()

    threads = {"worker": threading.Thread(target=worker), "reconciler": threading.Thread(target=reconciler)}
    with transaction.atomic():
        PrintJob.objects.select_for_update().get(pk=job.pk)  # both queue behind this row lock
        for name in (first, *({"worker", "reconciler"} - {first})):
            threads[name].start()
            started[name].wait()
            until_sessions_wait_for_locks(len([t for t in threads.values() if t.is_alive()]))
    for thread in threads.values():
        thread.join(timeout=30)

    job.refresh_from_db()
    if first == "worker":
        assert results == {"worker": True, "reconciler": "claim_moved"}
        assert (job.status, job.sending_claim_at is not None) == (J.SUBMITTING, True)
    else:
        assert results == {"worker": False, "reconciler": "claims_taken_back"}
        assert (job.status, job.sending_claim_at) == (J.READY, None)


def _claimed_by_a_worker_of_the_version_before(job: PrintJob) -> None:
    """The claim a worker of the version before the fence makes: its UPDATE names no fence column."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE production_printjob SET status = 'submitting', claimed_at = statement_timestamp(), "
            "claimed_by = %s, submit_attempts = submit_attempts + 1 WHERE id = %s AND status = 'ready'",
            ["old-worker:1", job.pk],
        )
        assert cursor.rowcount == 1


@pytest.mark.parametrize("history", ["fresh", "an earlier claim taken back"])
def test_a_claim_of_a_worker_of_the_version_before_is_never_sent_again_by_the_reconciler(
    monkeypatch, tmp_path, history
):
    """An upgrade with a worker of the version before still running: its claim leaves the fence unset, which
    must not read as "sent nothing" (the reconciler would send the job again, and that worker, only stalled,
    sends its copy too). Before `fence_armed_at` both cases were taken back and printed twice."""
    job = _ready_job()
    if history != "fresh":  # the fence unset by a claim of this version, lost before it sent
        _submit_killed_at_raster_read(job, monkeypatch, worker=FIRST)
        claim_lease_runs_out(job)
        assert reconcile.production_reconcile() == {"claims_taken_back": 1}
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("print")  # its message: the old worker's now
    _claimed_by_a_worker_of_the_version_before(job)
    job.refresh_from_db()
    assert job.sending_claim_at is None

    claim_lease_runs_out(job)  # the old worker stalls past its lease, the raster not yet sent
    assert reconcile.production_reconcile() == {"unknown": 1}
    assert broker_tasks("print") == []

    job.refresh_from_db()
    assert job.printer is not None
    raster = tmp_path / f"{job.title}.jpg"
    raster.write_bytes(
        vault.vault_read(data_key=job.item.asset.data_key, name=job.raster_blob, purpose="raster")
    )
    backend_for(job.printer).submit(
        path=raster, title=job.title, media=media_for("4x6"), copies=1, attributes={}
    )
    # the old worker wakes and sends: the one copy the printer gets; the job waits for a person, as it did
    # before the fence with workers of that version
    assert (job.status, len(_received())) == (J.UNKNOWN, 1)


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_counts_a_claim_in_flight_as_sent_never_as_one_to_send_again() -> None:
    """Migration production/0013: a job a worker of the version before is sending carries no fence; the
    upgrade sets it, so the reconciler asks the printer (and a person) as before, never sends it again."""
    job = _ready_job()
    in_flight = PrintJob.objects.get(pk=job.pk)
    executor = MigrationExecutor(connection)
    latest = leaf_migrations("production")
    executor.migrate([("production", "0012_printjob_title_token")])
    with connection.cursor() as cursor:  # a worker of the version before claims the job
        cursor.execute(
            "UPDATE production_printjob SET status = 'submitting', claimed_at = now(), claimed_by = %s "
            "WHERE id = %s",
            [FIRST, in_flight.pk],
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(latest)

    in_flight.refresh_from_db()
    assert in_flight.sending_claim_at is not None and in_flight.sending_claim_at == in_flight.claimed_at
    claim_lease_runs_out(in_flight)
    assert reconcile.production_reconcile().get("unknown") == 1


@pytest.mark.parametrize("printer_answers", [True, False], ids=["printer answers", "printer silent"])
def test_the_last_attempt_s_error_after_its_send_got_through_is_no_dead_end(
    monkeypatch, settings, printer_answers
):
    """The last attempt allowed hands the copy to the printer, then meets a transient error (cupsd stopping
    as the document is confirmed). Before, the job was `failed`: the copy printed, but a `failed` job has no
    way to `printed`, its reroute and cancel were refused while that copy was at the printer, and once the
    printer dropped it from its history a reroute printed a second one. Now the printer is asked for the
    title: the copy is adopted; a printer that cannot be asked leaves the job `unknown` for a person."""
    settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS = 1
    job = _ready_job()
    sent = HotFolderBackend.submit
    look = HotFolderBackend.find_jobs

    def send_then_lose_the_answer(self: HotFolderBackend, **kwargs: Any) -> str:
        sent(self, **kwargs)
        if not printer_answers:
            monkeypatch.setattr(HotFolderBackend, "find_jobs", silent_printer)
        raise TransientPrinterError(code=PRINTER_UNREACHABLE, message="connection dropped after the document")

    def silent_printer(self: HotFolderBackend, **kwargs: Any) -> list[Any]:
        raise TransientPrinterError(code=PRINTER_UNREACHABLE, message="no answer")

    monkeypatch.setattr(HotFolderBackend, "submit", send_then_lose_the_answer)

    outcome = submission.print_job_submit(job_id=job.pk, worker=FIRST)

    monkeypatch.setattr(HotFolderBackend, "find_jobs", look)
    job.refresh_from_db()
    assert len(_received()) == 1  # the copy reached the printer, once
    if printer_answers:
        assert (outcome, job.status, _kinds(job)[-1]) == ("adopted", J.SUBMITTED, "adopted")
        assert job.backend_job_id
    else:
        assert (outcome, job.status, _kinds(job)[-1]) == ("unknown", J.UNKNOWN, "submit_outcome_unknown")
        job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=True)
        job.refresh_from_db()
        assert job.status == J.PRINTED


def _cancelled_after_its_lease(job: PrintJob) -> None:
    # cancelled while its worker sends; the claim's lease runs out before the send lands and the poll, no
    # longer waiting for the worker, finds no copy at the printer by its title and settles the cancel
    order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
    lease = timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS + 1)
    PrintJob.objects.filter(pk=job.pk).update(claimed_at=F("claimed_at") - lease)
    assert printer_cancels_settle(order_id=job.order_id)["cancelled_at_printer"] == 1


@pytest.mark.parametrize(
    "cancelled", ["after the reconciler called it unknown", "while sending, its lease then run out"]
)
@pytest.mark.parametrize("printer", ["printed it first", "does not answer the cancel"])
def test_a_late_send_on_a_cancelled_job_is_cancelled_at_the_printer_or_on_record(
    monkeypatch, cancelled, printer
):
    """A worker's send stalls past its lease; meanwhile the supervisor cancels the order (refund decided) and
    the cancel is settled at the printer, which holds no copy yet. Then the send lands. Before, the worker
    tried one cancel, and when the printer refused it (printed already) or did not answer, it returned
    `cancel_pending` counting on a `cancel_at_printer` flag the settle had cleared: nobody looked again and
    the copy printed for a cancelled, refunded order with no event and nothing on the board."""
    job = _ready_job()
    assert job.printer is not None
    folder = printer_folder(job.printer)
    real_cancel = HotFolderBackend.cancel

    def meanwhile() -> None:
        if cancelled.startswith("after the reconciler"):
            _reconciled_unknown(job)
            order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
        else:
            _cancelled_after_its_lease(job)
        settled = PrintJob.objects.get(pk=job.pk)
        assert (settled.status, settled.cancel_at_printer) == (J.CANCELLED, False)

    def silent(self: HotFolderBackend, handle: str) -> None:
        raise TransientPrinterError(code=PRINTER_UNREACHABLE, message="no answer")

    def landed() -> object:
        if printer == "printed it first":
            return process_pending(folder=folder, delay_seconds=0)
        monkeypatch.setattr(HotFolderBackend, "cancel", silent)
        return None

    handles = _slow_send(monkeypatch, meanwhile, landed)

    outcome = submission.print_job_submit(job_id=job.pk, worker=FIRST)

    job.refresh_from_db()
    assert (job.status, job.backend_job_id, len(handles)) == (J.CANCELLED, handles[0], 1)
    if printer == "printed it first":
        # it cannot be taken back: the job's history says it printed, at once
        assert (outcome, job.cancel_at_printer) == ("late_copy_not_cancelled", False)
        assert _kinds(job)[-1] == "late_copy_not_cancelled"
        note = JobEvent.objects.filter(job=job).order_by("pk").last()
        assert note is not None and "already printed before the cancel reached the printer" in note.note
        return
    # the flag stays up for the poll, which cancels the copy once the printer answers, and says so
    assert (outcome, job.cancel_at_printer) == ("cancel_pending", True)
    monkeypatch.setattr(HotFolderBackend, "cancel", real_cancel)
    assert printer_cancels_settle()["cancelled_at_printer"] == 1
    job.refresh_from_db()
    assert (job.cancel_at_printer, _kinds(job)[-1]) == (False, "printer_cancelled")
    assert backend_for(job.printer).job_state(handles[0]) is JobState.CANCELED
    assert process_pending(folder=folder, delay_seconds=0) == []  # never printed
