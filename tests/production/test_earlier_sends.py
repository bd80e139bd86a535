"""A job back in `ready` after a transient submit error may still have that send held at its printer (cupsd
took the document and went away before it answered): whatever moves or cancels the job must account for it.
Before, the poll moved such a job to another printer when the first went offline, and a reroute by a person
did the same: both printers printed it and the job ended `printed`; a cancel left the held send to print for
an order that was refunded. On real hot-folder printers, whose devices print what their inbox holds."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cups
import pytest

from lab.lib.errors import Conflict, UpstreamError
from lab.production import (
    actions,
    earlier_sends,
    jobs,
    rasterizing,
    reroutes,
    resolutions,
    routing,
    spool,
    submission,
    tracking,
    withdrawals,
)
from lab.production.backends import backend_for, copies_titled
from lab.production.cancellation import order_cancel_in_production
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.states import JobStatus
from printers import hotfolder
from printers.base import JobState, PrinterBackend
from printers.cups_backend import CupsBackend
from printers.cups_ipp import connect
from printers.errors import TransientPrinterError
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import pending_tickets, process_pending
from tests.builders import (
    WORKER,
    cups_printer,
    hotfolder_printer,
    job_on_the_first_of_two_minilabs,
    person,
    printer_folder,
    released_order,
)
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups

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

    reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

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
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

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
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)
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
    resolutions.job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)

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
        resolutions.job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)

    away.rename(folder)
    job.refresh_from_db()
    assert (job.status, job.title, job.submit_attempts) == (J.UNKNOWN, old_title, 2)
    assert len(pending_tickets(folder=folder)) == 1


def test_send_again_is_refused_when_the_waiting_copy_printed_meanwhile(unknown_with_a_held_send):
    job, first = unknown_with_a_held_send
    old_title = job.title
    process_pending(folder=printer_folder(first), delay_seconds=0)  # A printed it after the person looked

    with pytest.raises(Conflict, match="was printed by minilab from an earlier send") as refused:
        resolutions.job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)

    assert refused.value.code == "earlier_send_printed"
    job.refresh_from_db()
    assert (job.status, job.title) == (J.UNKNOWN, old_title)


def test_a_move_is_refused_when_a_retry_sent_the_job_again_while_the_held_send_was_withdrawn(
    held_send, monkeypatch
):
    job, first, second = held_send
    real_withdraw = withdrawals.earlier_sends_withdraw
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

    monkeypatch.setattr(reroutes, "earlier_sends_withdraw", withdraw_then_a_retry_sends_it)

    # when a person moves the job to B across that retry, then the move is refused (before: the job moved to
    # B, and A printed the retry's copy while B printed the job too)
    with pytest.raises(Conflict, match="changed meanwhile") as refused:
        reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)

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
    monkeypatch.setattr(reroutes, "earlier_sends_withdraw", real_withdraw)
    reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=second.pk)
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


# A send cupsd took and printed may then be forgotten by it before the retry looks (its history purged:
# PreserveJobHistory off or short, MaxJobs reached, the queue deleted and added again, a wiped spool). A retry
# whose earlier attempt may have reached the printer, and that finds nothing of it there, cannot tell "never
# arrived" from "printed and forgotten": the job is `unknown`, for a person who counts the prints. Only an
# attempt refused before anything of it could reach the printer (no connection to the server, a queue not
# accepting jobs) is sent again blindly. Against a real private cupsd.


def _ready_cups_job(cups_server: PrivateCups, queue: str) -> tuple[PrintJob, Printer]:
    printer = cups_printer(cups_server, queue, print_seconds=1)
    assert server_restarts_check(printer)  # the server's restarts watched from before the first send
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    return job, printer


def _forgotten_by_cupsd(backend: PrinterBackend, handle: str) -> None:
    """Wait until the copy has printed, then purge it from cupsd's history, as its own policy would."""
    wait_until(lambda: backend.job_info(handle).state is JobState.COMPLETED, timeout=30, what="the copy")
    assert backend.discard_document(handle)


def _reached_cupsd_then_went_away(
    monkeypatch: pytest.MonkeyPatch, *, then: Callable[[CupsBackend, str], None] | None = None
) -> list[str]:
    """CupsBackend.submit sends the job, then answers with a transient error (the answer to Send-Document
    lost, the connection reset as the document was confirmed). The handles it sent, in order."""
    real_submit = CupsBackend.submit
    sent: list[str] = []

    def reached_then_went_away(self: CupsBackend, **kwargs: Any) -> str:
        sent.append(real_submit(self, **kwargs))
        if then is not None:
            then(self, sent[-1])
        monkeypatch.setattr(CupsBackend, "submit", real_submit)
        raise TransientPrinterError(code="printer_unreachable", message="connection reset by peer")

    monkeypatch.setattr(CupsBackend, "submit", reached_then_went_away)
    return sent


def test_a_retry_does_not_send_again_a_copy_cupsd_printed_and_forgot(monkeypatch):
    with PrivateCups() as cups_server:
        # given a job whose send reached cupsd though the submit answered with a transient error
        job, printer = _ready_cups_job(cups_server, "forgets_lab")
        sent = _reached_cupsd_then_went_away(monkeypatch)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        backend = backend_for(printer)

        # ... which printed, and which cupsd then forgot (purged from its history)
        _forgotten_by_cupsd(backend, sent[0])
        assert copies_titled(backend, job.title) == []

        # when the retry runs
        outcome = submission.print_job_submit(job_id=job.pk, worker=WORKER)

        # then it sends nothing (before, it found no earlier attempt, sent the job again, and the printer
        # printed it twice while the job ended `printed`): the job is `unknown`, on the board for a person
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("forgets_lab")) == 1
        job.refresh_from_db()
        assert (outcome, job.status, job.claimed_by) == ("unknown", J.UNKNOWN, "")
        assert job.events.filter(kind="earlier_send_unaccounted").exists()


def test_a_move_of_a_job_whose_send_cupsd_printed_and_forgot_is_refused(monkeypatch):
    with PrivateCups() as cups_server:
        # given a job back in `ready` whose send reached cupsd (the submit answered with a transient error),
        # printed and was forgotten by it; and another capable printer
        job, printer = _ready_cups_job(cups_server, "forgets_move_lab")
        other = cups_printer(cups_server, "other_lab", print_seconds=1)
        sent = _reached_cupsd_then_went_away(monkeypatch)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        _forgotten_by_cupsd(backend_for(printer), sent[0])

        # when a person moves it to the other printer, then it is refused and the job stays (before, nothing
        # was found to withdraw, the job moved, and the other printer printed it a second time)
        with pytest.raises(Conflict) as refused:
            reroutes.job_reroute_by_staff(job_id=job.pk, actor=person("technician"), printer_id=other.pk)
        assert refused.value.code == "earlier_send_printed"
        job.refresh_from_db()
        assert (job.status, job.printer_id) == (J.READY, printer.pk)


def test_a_retry_counts_the_empty_copy_the_spool_sweep_discarded(monkeypatch):
    with PrivateCups() as cups_server:
        # given a job whose first send made a job at cupsd without its document (cupsd stopped during
        # Send-Document), which was then cancelled (cupsd aborts it "no files" once back, the submit's own
        # check or a retry's look cancels it), the submit answering with a transient error
        job, printer = _ready_cups_job(cups_server, "swept_lab")
        real_submit = CupsBackend.submit

        def created_empty_then_went_away(self: CupsBackend, *, title: str, **kwargs: Any) -> str:
            monkeypatch.setattr(CupsBackend, "submit", real_submit)
            connection = connect(server=self.server)
            connection.cancelJob(connection.createJob(self.queue, title, {}))
            raise TransientPrinterError(code="printer_unreachable", message="connection reset by peer")

        monkeypatch.setattr(CupsBackend, "submit", created_empty_then_went_away)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        assert len(copies_titled(backend_for(printer), job.title)) == 1

        # ... and whose empty copy the spool sweep then discarded, as it discards every superseded attempt
        assert spool.printer_documents_discard().get("discarded") == 1
        assert copies_titled(backend_for(printer), job.title) == []

        # when the retry runs, then the discarded copy accounts for the first attempt: the job is sent and
        # prints once (before, the retry counted one attempt that may have reached cupsd and no copy of it,
        # and the job ended `unknown` though nothing had printed)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("swept_lab")) == 1
        # by the job's history, which says which copy the sweep discarded and that it held no document
        (discarded,) = job.events.filter(kind="printer_copy_discarded")
        assert discarded.printer_id == printer.pk and "held no document" in discarded.note


def test_a_copy_the_sweep_discarded_accounts_for_one_attempt_at_its_printer_since_the_last_reset():
    # given a job at a CUPS printer (a row only: nothing is asked of it) with two attempts that may have
    # reached it, and another printer
    job, first, second = job_on_the_first_of_two_minilabs()
    Printer.objects.filter(pk=first.pk).update(backend="cups")
    job = PrintJob.objects.select_related("printer").get(pk=job.pk)
    JobEvent.objects.bulk_create(
        [
            JobEvent(job=job, kind=earlier_sends.SUBMIT_RETRY),
            JobEvent(job=job, kind=earlier_sends.SUBMIT_RETRY),
        ]
    )

    def discarded(printer: Printer, handle: str) -> None:
        JobEvent.objects.create(
            job=job, printer=printer, kind=spool.PRINTER_COPY_DISCARDED, note=f"backend job {handle}: aborted"
        )

    # when the sweep discarded a copy of it elsewhere, then that accounts for nothing here
    discarded(second, "3")
    assert earlier_sends.sends_unaccounted(job=job, listed=()) == 2
    # when it discarded one here, then that one accounts for an attempt, and once only while the printer
    # still lists it (the sweep erased it after a retry's look)
    discarded(first, "7")
    assert earlier_sends.sends_unaccounted(job=job, listed=()) == 1
    assert earlier_sends.sends_unaccounted(job=job, listed=("7",)) == 1
    assert earlier_sends.sends_unaccounted(job=job, listed=("7", "8")) == 0
    # when the job's attempts count from 0 again, then the copies discarded before do not count
    JobEvent.objects.create(job=job, kind="rerouted")
    JobEvent.objects.create(job=job, kind=earlier_sends.SUBMIT_RETRY)
    assert earlier_sends.sends_unaccounted(job=job, listed=()) == 1


def test_a_last_attempt_whose_copy_cupsd_forgot_is_unknown_not_failed(monkeypatch, settings):
    # given one attempt allowed, and a send that reached cupsd, printed and was forgotten by it before the
    # submit answered with a transient error
    settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS = 1
    with PrivateCups() as cups_server:
        job, _ = _ready_cups_job(cups_server, "forgets_last_lab")
        _reached_cupsd_then_went_away(monkeypatch, then=_forgotten_by_cupsd)

        # when the attempt ends, then the job is `unknown`, not `failed` (a failure reads as "nothing of it
        # at the printer": a reroute or a send again printed a second copy)
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "unknown"
        job.refresh_from_db()
        assert job.status == J.UNKNOWN
        assert len(cups_server.received_files("forgets_last_lab")) == 1


def test_a_send_refused_before_it_reached_cupsd_is_sent_again_and_prints_once():
    with PrivateCups() as cups_server:
        # given a job whose first send found the print server down: the connection refused
        job, _ = _ready_cups_job(cups_server, "refused_lab")
        cups_server.stop_cupsd()
        try:
            assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        finally:
            cups_server.start_cupsd()
        job.refresh_from_db()
        assert (job.status, job.submit_attempts) == (J.READY, 1)
        assert job.events.filter(kind="submit_retry_unsent").count() == 1

        # when the retry runs once the server is back, then it sends the job, and the printer prints it once
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("refused_lab")) == 1


def test_a_send_to_a_cups_queue_not_accepting_jobs_is_sent_again_and_prints_once():
    with PrivateCups() as cups_server:
        # given a job whose first send the queue refused (rejecting jobs: cupsreject)
        job, _ = _ready_cups_job(cups_server, "rejecting_lab")
        cups_server.reject("rejecting_lab")
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        job.refresh_from_db()
        assert (job.status, job.failure_code) == (J.READY, "printer_not_accepting_jobs")
        assert job.events.filter(kind="submit_retry_unsent").count() == 1

        # when the retry runs once it accepts jobs again, then the printer prints it once
        cups_server.accept("rejecting_lab")
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
        assert cups_server.wait_jobs_over(lambda title: title == job.title) == []
        assert len(cups_server.received_files("rejecting_lab")) == 1


def test_a_hot_folder_send_stopped_before_its_ticket_is_sent_again_and_prints_once(monkeypatch):
    # given a hot-folder send whose ticket could not be written (a full disk): nothing of it is in the folder,
    # and the folder keeps every ticket it ever took, so a look that finds none is an answer
    job, first, _ = job_on_the_first_of_two_minilabs()
    real_write = hotfolder._atomic_write

    def disk_full(**kwargs: Any) -> None:
        monkeypatch.setattr(hotfolder, "_atomic_write", real_write)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hotfolder, "_atomic_write", disk_full)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"

    # when the retry runs, then it sends the job, and the device prints it once
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert len(process_pending(folder=printer_folder(first), delay_seconds=0)) == 1


@pytest.mark.parametrize(
    ("cause", "before_sending"),
    [
        ((0x0404, "Too many active jobs."), True),  # a full cupsd refused Create-Job: no job made
        ((0x0404, "Job #7 is finished and cannot be altered."), False),  # Send-Document's answer
        ((0x0500, "No such file or directory"), False),  # the connection dropped, anywhere in the send
    ],
)
def test_only_an_answer_that_made_no_job_counts_as_nothing_sent(cause, before_sending, tmp_path, monkeypatch):
    # given a print server that answers the submit's printFile with this IPP error
    class Answering:
        def printFile(self, *arguments: object) -> int:
            raise cups.IPPError(*cause)

        def getPrinterAttributes(self, *arguments: object, **options: object) -> dict[str, object]:
            return {"printer-name": "minilab"}  # the queue exists

    monkeypatch.setattr("printers.cups_backend.connect", lambda *, server: Answering())
    raster = tmp_path / "raster.jpg"
    raster.write_bytes(b"\xff\xd8\xff\xd9")

    # when the backend submits, then its error says nothing was sent only for a refused Create-Job
    with pytest.raises(TransientPrinterError) as raised:
        CupsBackend(queue="minilab", server="127.0.0.1:631").submit(path=raster, title="lab-job-1-x")
    assert earlier_sends.raised_before_sending(raised.value) is before_sending


def test_a_print_server_that_refuses_the_connection_sent_nothing(monkeypatch):
    # given no print server listening where the backend connects
    def refused(*, host: str, port: int) -> None:
        raise RuntimeError("failed to connect to server")

    monkeypatch.setattr(cups, "Connection", refused)

    # when the backend connects, then its error says nothing was sent
    with pytest.raises(TransientPrinterError) as raised:
        CupsBackend(queue="minilab", server="127.0.0.1:9").job_info("7")
    assert raised.value.nothing_sent
