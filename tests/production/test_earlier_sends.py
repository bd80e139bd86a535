"""A job back in `ready` after a transient submit error may still have that send held at its printer (cupsd
took the document and went away before it answered): whatever moves or cancels the job must account for it.
Before, the poll moved such a job to another printer when the first went offline, and a reroute by a person
did the same: both printers printed it and the job ended `printed`; a cancel left the held send to print for
an order that was refunded. On real hot-folder printers, whose devices print what their inbox holds."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from lab.lib.errors import Conflict, UpstreamError
from lab.production import actions, jobs, rasterizing, routing, submission, tracking
from lab.production.cancellation import order_cancel_in_production
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.errors import TransientPrinterError
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import pending_tickets, process_pending
from tests.builders import (
    WORKER,
    hotfolder_printer,
    job_on_the_first_of_two_minilabs,
    person,
    printer_folder,
    released_order,
)

pytestmark = pytest.mark.django_db
J = JobStatus


@pytest.fixture
def held_send(monkeypatch: pytest.MonkeyPatch) -> tuple[PrintJob, Printer, Printer]:
    """A job whose send reached printer A's inbox, though the submit answered with a transient error; and
    another capable printer B."""
    job, first, second = job_on_the_first_of_two_minilabs()
    real_submit = HotFolderBackend.submit

    def took_it_then_went_away(self: HotFolderBackend, **kwargs: object) -> str:
        real_submit(self, **kwargs)  # type: ignore[arg-type]
        raise TransientPrinterError(code="printer_unreachable", message="connection reset")

    monkeypatch.setattr(HotFolderBackend, "submit", took_it_then_went_away)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
    monkeypatch.setattr(HotFolderBackend, "submit", real_submit)
    job.refresh_from_db()
    assert (job.status, job.submit_attempts, len(pending_tickets(folder=printer_folder(first)))) == (
        J.READY,
        1,
        1,
    )
    return job, first, second


def test_the_poll_does_not_move_a_job_whose_send_its_offline_printer_may_hold(held_send):
    job, first, second = held_send
    Printer.objects.filter(pk=first.pk).update(state="offline")

    tracking._reroute_waiting_jobs(Printer.objects.get(pk=first.pk))  # what the poll does for A offline

    job.refresh_from_db()
    assert (job.status, job.printer_id) == (J.READY, first.pk)  # it waits for A
    Printer.objects.filter(pk=first.pk).update(state="online")
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "adopted"  # A's held send is it
    printed = process_pending(folder=printer_folder(first), delay_seconds=0)
    assert (len(printed), pending_tickets(folder=printer_folder(second))) == (1, [])


def test_a_person_who_moves_it_withdraws_the_held_send_first_and_it_prints_once(held_send):
    job, first, second = held_send

    actions.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

    job.refresh_from_db()
    assert (job.status, job.printer_id, job.submit_attempts) == (J.QUEUED, second.pk, 0)
    assert pending_tickets(folder=printer_folder(first)) == []  # A's held send was cancelled there
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(process_pending(folder=printer_folder(second), delay_seconds=0)) == 1
    assert process_pending(folder=printer_folder(first), delay_seconds=0) == []


def test_a_move_is_refused_when_the_old_printer_printed_the_held_send(held_send):
    job, first, second = held_send
    process_pending(folder=printer_folder(first), delay_seconds=0)  # A printed it before anyone looked

    with pytest.raises(Conflict, match="was printed by minilab from an earlier send"):
        actions.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

    job.refresh_from_db()
    assert (job.status, job.printer_id) == (J.READY, first.pk)
    assert pending_tickets(folder=printer_folder(second)) == []


@pytest.mark.parametrize("who", ["supervisor cancels the order", "technician cancels the job"])
def test_a_cancel_withdraws_the_held_send_from_the_printer(held_send, who):
    job, first, _ = held_send
    if who == "supervisor cancels the order":
        order_cancel_in_production(order_ref=job.order.ref, actor=person("supervisor"))
    else:
        # another job of the item (a reprint waiting for a printer), so the item keeps a print
        PrintJob.objects.create(order=job.order, item=job.item, copies=1, status=J.NO_PRINTER)
        actions.job_cancel(job_id=job.pk, actor=person("technician"))

    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == (J.CANCELLED, False)
    assert process_pending(folder=printer_folder(first), delay_seconds=0) == []  # nothing left to print


# --- A printer whose folder does not answer is not a printer with nothing of ours ---------------------------


def _unplugged(printer: Printer) -> tuple[Path, Path]:
    """The printer's hot folder goes away (its share unmounted, its NAS rebooting): renamed elsewhere."""
    folder = printer_folder(printer)
    away = folder.with_name(f"{folder.name}-unmounted")
    folder.rename(away)
    return folder, away


def test_a_move_is_refused_while_the_old_printers_folder_is_gone_and_the_job_prints_once(held_send):
    job, first, second = held_send
    folder, away = _unplugged(first)

    # when a person moves the job to B while A's folder is gone, then it is refused and nothing changes
    # (before: A's missing folder read as "0 copies at minilab", the job moved, and once the share was back
    # A printed its held send and B the new one)
    with pytest.raises(UpstreamError, match="may still hold an earlier send"):
        actions.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)
    job.refresh_from_db()
    assert (job.status, job.printer_id, job.submit_attempts) == (J.READY, first.pk, 1)
    assert not JobEvent.objects.filter(job=job, kind="earlier_sends_withdrawn").exists()

    # when the folder is back and the job's retry comes, then it finds its held send: one print in all
    away.rename(folder)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "adopted"
    printed = process_pending(folder=printer_folder(first), delay_seconds=0)
    printed += process_pending(folder=printer_folder(second), delay_seconds=0)
    assert len(printed) == 1


def test_a_last_attempt_does_not_fail_a_job_whose_printers_folder_is_gone(held_send, settings):
    job, first, _ = held_send
    settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS = 2
    folder, away = _unplugged(first)

    # when the job's last attempt finds A's folder gone, then its fate is for a person (before: "nothing of
    # ours is there", `failed`, free to be sent anywhere while A holds the send)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "unknown"
    away.rename(folder)
    job.refresh_from_db()
    assert job.status == J.UNKNOWN


def test_a_submitted_job_is_not_lost_while_its_printers_folder_is_gone(held_send):
    job, first, _ = held_send
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "adopted"
    folder, away = _unplugged(first)

    # when the poll reads the job while A's folder is gone, then it waits (before: `unknown`, job_lost)
    assert tracking.printer_poll().get("unreachable") == 1
    job.refresh_from_db()
    assert job.status == J.SUBMITTED

    away.rename(folder)
    process_pending(folder=folder, delay_seconds=0)
    tracking.printer_poll()
    job.refresh_from_db()
    assert job.status == J.PRINTED


def _unsearchable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """What is in the folder can be neither listed nor searched (EACCES: the device re-owned it). The tests
    run as root, whom permissions do not stop, so the refusal is the filesystem calls'."""

    def guarded(real: Any, *, listing: bool) -> Any:
        def call(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
            target = Path(os.fsdecode(path)) if isinstance(path, str | bytes | os.PathLike) else Path(".")
            if target.is_relative_to(folder) and (listing or target != folder):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "stat", guarded(os.stat, listing=False))
    monkeypatch.setattr(os, "listdir", guarded(os.listdir, listing=True))
    monkeypatch.setattr(os, "scandir", guarded(os.scandir, listing=True))


def test_the_poll_goes_on_past_a_printer_whose_folder_cannot_be_read(monkeypatch):
    # given a job submitted to each of two minilabs, and the first one's folder then unsearchable
    first = hotfolder_printer("minilab", sizes=["4x6"])
    second = hotfolder_printer("minilab-2", sizes=["4x6"])
    submitted = []
    for printer, other in ((first, second), (second, first)):
        Printer.objects.filter(pk=other.pk).update(is_paused_by_lab=True)
        job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
        Printer.objects.filter(pk=other.pk).update(is_paused_by_lab=False)
        assert job.printer_id == printer.pk
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        submitted.append(job)
    assert len(process_pending(folder=printer_folder(second), delay_seconds=0)) == 1
    _unsearchable(monkeypatch, printer_folder(first))

    # when the poll runs, then it reads the second minilab's job (before: a bare PermissionError from the
    # first minilab ended every round, for every printer)
    counts = tracking.printer_poll()

    on_first, on_second = (PrintJob.objects.get(pk=job.pk) for job in submitted)
    assert (on_first.status, on_second.status) == (J.SUBMITTED, J.PRINTED)
    assert counts.get("printed") == 1 and counts.get("unknown") is None
    assert Printer.objects.get(pk=first.pk).state == "offline"


# --- "It did not print: send again" withdraws what still waits under the old title ------------------------


@pytest.fixture
def unknown_with_a_held_send(held_send, monkeypatch, settings) -> tuple[PrintJob, Printer]:
    """A job whose send waits in A's inbox, though nobody knows: its last attempt could not ask A."""
    job, first, _ = held_send
    settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS = 2
    with monkeypatch.context() as patched:

        def no_answer(self: HotFolderBackend, *, title_prefix: str) -> list[object]:
            raise TransientPrinterError(code="printer_unreachable", message="share not answering")

        patched.setattr(HotFolderBackend, "find_jobs", no_answer)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "unknown"
    assert len(pending_tickets(folder=printer_folder(first))) == 1
    return job, first


def test_send_again_withdraws_the_copy_still_waiting_under_the_old_title_and_it_prints_once(
    unknown_with_a_held_send,
):
    job, first = unknown_with_a_held_send
    old_title = job.title

    # when the technician, who found no print, chooses "it did not print: send again"
    actions.job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)

    # then the copy waiting under the old title is cancelled, and the new send is the only print (before: both
    # printed, and the job ended `printed` with nothing to say so)
    job.refresh_from_db()
    assert (job.status, pending_tickets(folder=printer_folder(first))) == (J.READY, [])
    assert job.title != old_title
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(process_pending(folder=printer_folder(first), delay_seconds=0)) == 1
    tracking.printer_poll()
    job.refresh_from_db()
    assert job.status == J.PRINTED


def test_send_again_is_refused_while_the_printer_does_not_answer_and_changes_nothing(
    unknown_with_a_held_send,
):
    job, first = unknown_with_a_held_send
    old_title = job.title
    folder, away = _unplugged(first)

    with pytest.raises(UpstreamError, match="may still hold an earlier send"):
        actions.job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)

    away.rename(folder)
    job.refresh_from_db()
    assert (job.status, job.title, job.submit_attempts) == (J.UNKNOWN, old_title, 2)
    assert len(pending_tickets(folder=folder)) == 1


def test_send_again_is_refused_when_the_waiting_copy_printed_meanwhile(unknown_with_a_held_send):
    job, first = unknown_with_a_held_send
    old_title = job.title
    process_pending(folder=printer_folder(first), delay_seconds=0)  # A printed it after the person looked

    with pytest.raises(Conflict, match="was printed by minilab from an earlier send") as refused:
        actions.job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)

    assert refused.value.code == "earlier_send_printed"
    job.refresh_from_db()
    assert (job.status, job.title) == (J.UNKNOWN, old_title)


def test_a_move_is_refused_when_a_retry_sent_the_job_again_while_the_held_send_was_withdrawn(
    held_send, monkeypatch
):
    job, first, second = held_send
    real_withdraw = actions._earlier_sends_withdraw
    real_submit = HotFolderBackend.submit

    def withdraw_then_a_retry_sends_it(job: PrintJob, **kwargs: Any) -> bool:
        withdrawn = real_withdraw(job, **kwargs)  # A's held send is cancelled (slow printer calls)
        # meanwhile the job's retry claims it and sends a new copy to A, whose submit answers with an error
        with monkeypatch.context() as patched:

            def took_it_then_went_away(self: HotFolderBackend, **submit: Any) -> str:
                real_submit(self, **submit)
                raise TransientPrinterError(code="printer_unreachable", message="connection reset")

            patched.setattr(HotFolderBackend, "submit", took_it_then_went_away)
            assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        return withdrawn

    monkeypatch.setattr(actions, "_earlier_sends_withdraw", withdraw_then_a_retry_sends_it)

    # when a person moves the job to B across that retry, then the move is refused (before: the job moved to
    # B, and A printed the retry's copy while B printed the job too)
    with pytest.raises(Conflict, match="changed meanwhile") as refused:
        actions.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

    assert refused.value.code == "job_changed"
    job.refresh_from_db()
    assert (job.status, job.printer_id, job.submit_attempts) == (J.READY, first.pk, 2)
    assert (
        len(pending_tickets(folder=printer_folder(first))),
        pending_tickets(folder=printer_folder(second)),
    ) == (
        1,
        [],
    )

    # and a second move, with nothing in between, withdraws the retry's copy: the job prints once, at B
    monkeypatch.setattr(actions, "_earlier_sends_withdraw", real_withdraw)
    actions.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    printed = process_pending(folder=printer_folder(first), delay_seconds=0)
    printed += process_pending(folder=printer_folder(second), delay_seconds=0)
    assert len(printed) == 1
    job.refresh_from_db()
    assert job.printer_id == second.pk


# --- A submit task read at one printer, the job moved to another before it claimed ------------------------


def test_a_submit_read_at_the_old_printer_does_not_claim_the_job_moved_to_another(monkeypatch):
    """A submit task reads the job at A; before it claims, the poll finds A offline and moves the job to B,
    where it is rasterized again (`ready` at B). Before, the claim checked only the order, so the task claimed
    the job at B and sent it to A, the printer it had read; A took the copy and answered with a transient
    error, and the retry at B found no earlier attempt at B and sent a second copy: both printed."""
    job, first, second = job_on_the_first_of_two_minilabs()
    real_check = jobs.job_photo_changed_outside_the_lab
    real_submit = HotFolderBackend.submit

    def moved_to_b_before_the_claim(read: PrintJob, **kwargs: Any) -> bool:
        monkeypatch.setattr(submission, "job_photo_changed_outside_the_lab", real_check)
        Printer.objects.filter(pk=first.pk).update(state="offline")
        assert routing.job_reroute(job_id=read.pk, note=f"printer {first.name} is offline")
        assert rasterizing.print_job_rasterize(job_id=read.pk, worker=WORKER) == "ready"
        return real_check(read, **kwargs)

    def a_takes_it_then_goes_away(self: HotFolderBackend, **kwargs: Any) -> str:
        handle = real_submit(self, **kwargs)
        if self.folder.resolve() == printer_folder(first).resolve():
            raise TransientPrinterError(code="printer_unreachable", message="connection reset")
        return handle

    monkeypatch.setattr(submission, "job_photo_changed_outside_the_lab", moved_to_b_before_the_claim)
    monkeypatch.setattr(HotFolderBackend, "submit", a_takes_it_then_goes_away)

    # when the stalled task goes on, then it claims nothing: the job is no longer at the printer it read
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "not_claimed"
    job.refresh_from_db()
    assert (job.status, job.printer_id, job.raster_printer_id, job.submit_attempts) == (
        J.READY,
        second.pk,
        second.pk,
        0,
    )

    # and the task the move sent sends it to B: one copy, at the printer the job is at, which it follows
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    printed_at_a = process_pending(folder=printer_folder(first), delay_seconds=0)
    printed_at_b = process_pending(folder=printer_folder(second), delay_seconds=0)
    assert (len(printed_at_a), len(printed_at_b)) == (0, 1)
    tracking.printer_poll()
    job.refresh_from_db()
    assert (job.status, job.printer_id, job.backend_job_id) == (J.PRINTED, second.pk, printed_at_b[0])
