"""A printer server that does not answer costs a tracking round one call, not one per printer and per job.

A stalled cupsd holds every libcups call for about a minute (pycups has no shorter timeout); the poll runs on
the `default` queue, so one call per printer and per job held releases and e-mail behind it for as many
minutes. The calls the lab makes to the server are counted: with cupsd stopped (it refuses at once, so these
tests are quick) and, once, with cupsd stalled for real (SIGSTOP: that round takes libcups' minute).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db.models import F

from lab.orders.states import OrderStatus
from lab.production import jobs, rasterizing, reconcile, spool, submission, submit_reconcile
from lab.production.listener import EventSource, SourceListener
from lab.production.models import Printer, PrintJob
from lab.production.silence import SilentServers
from lab.production.states import JobStatus, PrinterState
from lab.production.tracking import jobs_track, order_check_printed, printer_poll
from printers import cups_backend
from printers.base import EventBatch, EventFeed
from printers.errors import PRINTER_UNREACHABLE, ServerSilentError, TransientPrinterError
from printers.hotfolder_device import process_pending
from printers.registry import KIND_CUPS
from tests.builders.production import (
    WORKER,
    broker_tasks,
    hotfolder_printer,
    job_walk,
    printer_folder,
    released_order,
)
from tests.support.cups import PrivateCups
from workers import tasks

pytestmark = pytest.mark.django_db
J = JobStatus
MEDIA = ["na_index-4x6_4x6in"]


@pytest.fixture
def three_printers_cups() -> Iterator[PrivateCups]:
    """A private cupsd with three queues, each a Printer of the lab."""
    with PrivateCups() as server:
        for index in range(3):
            server.add_printer(f"silent_{index}", media=MEDIA)
            Printer.objects.create(
                name=f"silent-{index}",
                backend="cups",
                target=f"silent_{index}",
                cups_server=server.server,
                media_sizes=["4x6"],
                papers=["lustre", "glossy"],
            )
        yield server


@pytest.fixture
def stopped_cups(three_printers_cups: PrivateCups) -> PrivateCups:
    three_printers_cups.stop_cupsd()
    return three_printers_cups


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every connection the lab opens to a CUPS server, by server."""
    opened: list[str] = []
    real = cups_backend.connect

    def counting(*, server: str) -> object:
        opened.append(server)
        return real(server=server)

    monkeypatch.setattr(cups_backend, "connect", counting)
    return opened


def test_a_poll_round_asks_a_silent_server_once_and_marks_all_its_printers_offline(
    stopped_cups: PrivateCups, connections: list[str]
) -> None:
    # given three printers on a cupsd that does not answer, and a hot folder that does
    folder = hotfolder_printer("still-here", sizes=["4x6"])

    # when the poll runs its round
    counts = printer_poll()

    # then the silent server was asked once, and each of its printers is offline for its reason
    assert connections == [stopped_cups.server]
    for printer in Printer.objects.filter(backend="cups"):
        assert (printer.state, printer.state_reasons) == (PrinterState.OFFLINE, ["printer_unreachable"])
    folder.refresh_from_db()
    assert folder.state == PrinterState.ONLINE  # another server is still asked
    assert (counts["printer_changed"], counts["printer_same"]) == (3, 1)


def test_job_tracking_reads_no_more_jobs_from_a_server_that_did_not_answer(
    stopped_cups: PrivateCups, connections: list[str]
) -> None:
    # given two jobs sent to two printers of that server (the server answered then; it is silent now)
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)])
    jobs = list(PrintJob.objects.filter(order=order).select_related("printer"))
    first, second = Printer.objects.filter(backend="cups").order_by("pk")[:2]
    PrintJob.objects.filter(pk=jobs[0].pk).update(printer=first)
    PrintJob.objects.filter(pk=jobs[1].pk).update(printer=second)
    for number, job in enumerate(jobs, start=7):
        job_walk(job, J.SUBMITTED)
        PrintJob.objects.filter(pk=job.pk).update(backend_job_id=str(number))  # CUPS job ids are numbers
    submitted = list(PrintJob.objects.filter(order=order).select_related("printer"))

    # when they are tracked
    counts = jobs_track(submitted)

    # then one call found the server silent; both jobs wait for the next round, as they were
    assert connections == [stopped_cups.server]
    assert counts == {"unreachable": 2}
    assert set(PrintJob.objects.filter(order=order).values_list("status", flat=True)) == {J.SUBMITTED}


def test_a_server_that_falls_silent_at_a_restart_check_is_not_asked_again_in_that_round(
    three_printers_cups: PrivateCups, connections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a cupsd that answers the first printer's state, then is gone before its restart check
    real = cups_backend.connect

    def gone_after_the_first_call(*, server: str) -> object:
        if len(connections) == 1:  # the first call was answered
            three_printers_cups.stop_cupsd()
        return real(server=server)

    monkeypatch.setattr(cups_backend, "connect", gone_after_the_first_call)

    # when the poll runs its round
    printer_poll()

    # then the restart check's "no answer" is the round's: the other printers are not asked (before: the
    # next printer's refresh asked again, one more of libcups' minutes against a stalled server)
    assert len(connections) == 2
    states = dict(Printer.objects.filter(backend="cups").order_by("pk").values_list("name", "state_reasons"))
    assert list(states.values())[1:] == [["printer_unreachable"], ["printer_unreachable"]]


def test_a_listener_step_asks_a_silent_server_once_for_all_its_printers_restarts(
    stopped_cups: PrivateCups, connections: list[str]
) -> None:
    # given a listener on that cupsd whose last pull asked for a sweep (events were lost), the server
    # silent now
    listener = SourceListener(
        source=EventSource(kind=KIND_CUPS, server=stopped_cups.server), feed=_SweepAsked()
    )

    # when it acts on the pull: every printer's restarts are to be heard, each with a second try
    counts = listener.step()

    # then one call found the server silent (before: two per printer, six of libcups' minutes stalled)
    assert connections == [stopped_cups.server]
    assert counts == {"sweep": 1}


class _SweepAsked(EventFeed):
    """A feed whose every pull asks for a sweep (its events were lost) without calling the server."""

    def pull(self) -> EventBatch:
        return EventBatch(is_complete=False)


# As the poll task runs: not inside a test's transaction, which PostgreSQL would end as idle for longer than
# DATABASE_IDLE_IN_TRANSACTION_SECONDS while libcups waits.
@pytest.mark.django_db(transaction=True)
def test_a_stalled_cupsd_costs_a_poll_round_one_call_not_one_per_printer(
    three_printers_cups: PrivateCups, connections: list[str]
) -> None:
    # given three printers on a cupsd that takes connections and answers nothing (before, a round asked it
    # twice per printer: six of libcups' minutes)
    three_printers_cups.pause_cupsd()
    try:
        # when the poll runs its round
        printer_poll()
    finally:
        three_printers_cups.resume_cupsd()

    # then it asked once, found the server silent after libcups' minute, and took its printers offline
    assert connections == [three_printers_cups.server]
    for printer in Printer.objects.filter(backend="cups"):
        assert (printer.state, printer.state_reasons) == (PrinterState.OFFLINE, ["printer_unreachable"])


def test_only_a_server_that_gave_no_answer_is_skipped_for_the_rest_of_the_round() -> None:
    # given two printers of one server, and the two kinds of error the first can give under one code
    first, second = (
        Printer.objects.create(name=f"p{n}", backend="cups", target=f"q{n}", cups_server="127.0.0.1:1")
        for n in range(2)
    )
    device_error = TransientPrinterError(code=PRINTER_UNREACHABLE, message="server-error-device-error")
    no_answer = ServerSilentError(code=PRINTER_UNREACHABLE, message="no answer")

    # when the round hears them, then a device error leaves the server to be asked; no answer does not
    round_ = SilentServers()
    round_.heard(first, device_error)
    assert round_.error_for(second) is None
    round_.heard(first, no_answer)
    assert round_.error_for(second) is no_answer


def _on_the_silent_server(count: int) -> list[PrintJob]:
    """`count` jobs of one order, each walked to `submitting` on its own printer of the silent server."""
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)] * count)
    printers = list(Printer.objects.filter(backend="cups").order_by("pk"))
    walked = []
    for job, printer in zip(PrintJob.objects.filter(order=order).order_by("pk"), printers, strict=False):
        PrintJob.objects.filter(pk=job.pk).update(printer=printer)
        walked.append(job_walk(job, J.SUBMITTING))
    return walked


def test_a_reconcile_sweep_asks_a_silent_server_once_for_all_its_expired_claims(
    stopped_cups: PrivateCups, connections: list[str]
) -> None:
    # given two claims on printers of that server whose workers were lost as they sent, their leases run out
    lease = timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS + 1)
    for job in _on_the_silent_server(2):
        PrintJob.objects.filter(pk=job.pk).update(
            claimed_by="lost-worker:1",
            claimed_at=F("updated_at") - lease,
            fence_armed_at=F("updated_at") - lease,
            sending_claim_at=F("updated_at") - lease,
        )

    # when the reconciler sweeps
    counts = reconcile.production_reconcile()

    # then one call found the server silent, and both claims wait for the next sweep (before: one call per
    # claim, each one of libcups' minutes against a stalled server, past the sweep's time limit)
    assert connections == [stopped_cups.server]
    assert counts == {"reconcile_unreachable": 2}
    assert set(PrintJob.objects.filter(claimed_by="lost-worker:1").values_list("status", flat=True)) == {
        J.SUBMITTING
    }


def test_the_poll_task_settles_its_cancels_without_asking_a_server_its_round_found_silent(
    stopped_cups: PrivateCups, connections: list[str]
) -> None:
    # given a job of that server cancelled in the database, whose copy the printer may still hold
    (job,) = _on_the_silent_server(1)
    job_walk(job, J.SUBMITTED)
    assert jobs.job_move(
        job_id=job.pk, from_statuses={J.SUBMITTED}, to_status=J.CANCELLED, cancel_at_printer=True
    )

    # when the poll task runs its round, then settles the cancels
    tasks.printer_poll()

    # then the server was asked once, by the poll (before: once more for the cancel, another of libcups'
    # minutes against a stalled server, past the task's time limit); the cancel waits for the next round
    assert connections == [stopped_cups.server]
    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == (J.CANCELLED, True)


class _TimeLimitKilled(BaseException):
    """The task's hard time limit kills the worker process here: nothing after it in the sweep runs."""


def test_the_reconcile_sweep_moves_orders_on_before_it_asks_a_printer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given an order whose jobs all printed, one ready to pack with no slip, a job waiting for a printer, and
    # an expired submit claim whose printer stalls the sweep past its time limit when asked
    monkeypatch.setattr(settings, "PRODUCTION_HANDOFF_GRACE_SECONDS", 0)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("default")
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    printed, packing, claimed = (released_order(lines=[("PRINT-4X6-LUSTRE", 1)]) for _ in range(3))
    for order in (printed, packing):
        for job in PrintJob.objects.filter(order=order):
            job_walk(job, J.PRINTED)
    assert order_check_printed(order_id=packing.pk)  # its slip's message was lost
    Printer.objects.filter(pk=printer.pk).update(is_paused_by_lab=True)
    waiting = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert waiting.status == J.NO_PRINTER
    Printer.objects.filter(pk=printer.pk).update(is_paused_by_lab=False)
    (stalled,) = PrintJob.objects.filter(order=claimed)
    job_walk(stalled, J.SUBMITTING)
    lease = timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS + 1)
    PrintJob.objects.filter(pk=stalled.pk).update(claimed_at=F("updated_at") - lease, claimed_by="lost:1")

    def stalls_past_the_time_limit(*args: object, **kwargs: object) -> list[object]:
        raise _TimeLimitKilled

    monkeypatch.setattr(submit_reconcile, "copies_titled", stalls_past_the_time_limit)

    # when the sweep is killed at that printer call
    with pytest.raises(_TimeLimitKilled):
        reconcile.production_reconcile()

    # then every step that asks no printer was done before it (before: none of them, they came after)
    printed.refresh_from_db()
    waiting.refresh_from_db()
    assert printed.status == OrderStatus.READY_TO_PACK
    assert ("packing.slip_render", {"order_id": packing.pk}) in broker_tasks("default")
    assert (waiting.status, waiting.printer_id) == (J.QUEUED, printer.pk)


def test_the_spool_sweep_asks_a_silent_server_once_and_goes_on_to_the_printers_after_it(
    stopped_cups: PrivateCups,
    connections: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # given the silent server's three printers, and after them a hot folder whose device printed a job
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmp")))  # this test's sends
    Printer.objects.filter(backend="cups").update(is_paused_by_lab=True)  # the job goes to the hot folder
    folder = hotfolder_printer("after-the-silent-ones", sizes=["4x6"])
    (job,) = PrintJob.objects.filter(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == folder.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    process_pending(folder=printer_folder(folder), delay_seconds=0)
    printer_poll()
    job.refresh_from_db()
    assert job.status == J.PRINTED
    assert list((printer_folder(folder) / "done").glob("*.jpg")) != []
    connections.clear()

    # when the documents sweep runs
    counts = spool.printer_documents_discard()

    # then one call found the server silent (before: one per printer, each one of libcups' minutes against a
    # stalled server: five of them ran the sweep into its time limit before it reached the hot folder), and
    # the hot folder's print file is erased
    assert connections == [stopped_cups.server]
    assert counts == {"printers_unreachable": 3, "discarded": 1}
    assert list((printer_folder(folder) / "done").glob("*.jpg")) == []
