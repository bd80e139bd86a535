"""The printer-events listener's steps in-process, on real hot-folder printers: a job the minilab finished is
printed at the next pull without a poll, only the jobs an event names are read, and a job finished before its
submit saved the handle is read once it has (the CUPS side runs end to end in tests/e2e)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import NoReturn

import pytest
from django.db import OperationalError

from lab.orders.models import Order
from lab.production import jobs, rasterizing, routing, submission
from lab.production import listener as listener_module
from lab.production.holds import order_hold
from lab.production.listener import (
    AFTER_RESTART_SWEEP_EVERY,
    AFTER_RESTART_SWEEP_LIMIT,
    AFTER_RESTART_SWEEP_SECONDS,
    AFTER_RESTART_SWEEP_SLOW_EVERY,
    EventSource,
    SourceListener,
    event_sources,
)
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.states import JobStatus
from printers.base import EventBatch, EventFeed
from printers.errors import PrinterError
from printers.hotfolder import DONE_DIR, HotFolderBackend, move_ticket
from printers.hotfolder_device import process_pending
from printers.registry import KIND_CUPS, KIND_HOTFOLDER
from tests.builders import WORKER, hotfolder_printer, job_walk, paid_order, person, printer_folder
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db
J = JobStatus


def submitted_order(sku: str = "PRINT-4X6-LUSTRE") -> Order:
    order = paid_order(lines=[(sku, 1)])
    routing.order_release(order_id=order.pk)
    for job in PrintJob.objects.filter(order=order):
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    return order


def hot_folder_listener() -> SourceListener:
    return SourceListener(source=EventSource(kind=KIND_HOTFOLDER))


def swept_over_a_submitted_job() -> tuple[Printer, Order, SourceListener]:
    """A submitted job on a hot-folder minilab and a listener that has swept once (and found it waiting)."""
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = submitted_order()
    listener = hot_folder_listener()
    assert listener.step() == {"sweep": 1, "waiting": 1}
    return printer, order, listener


def test_a_job_the_minilab_finished_is_printed_at_the_next_pull_and_its_order_moves_to_packing():
    # given a submitted job on a hot-folder minilab and a listener that has swept once
    printer, order, listener = swept_over_a_submitted_job()

    # when the minilab prints it
    process_pending(folder=printer_folder(printer), delay_seconds=0)

    # then the next pull reads that job and moves it and its order on; nothing is read again after
    assert listener.step() == {"printed": 1}
    job = PrintJob.objects.get(order=order)
    order.refresh_from_db()
    assert (job.status, order.status) == (J.PRINTED, "ready_to_pack")
    assert JobEvent.objects.filter(job=job, kind="printed").count() == 1
    assert listener.step() == {}


def test_a_printer_whose_folder_lies_outside_the_root_does_not_stop_the_other_printers_events():
    # given a minilab with a submitted job, and beside it a printer row whose folder lies outside
    # HOTFOLDER_ROOT (written in the database: the admin's page refuses it)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    Printer.objects.create(name="elsewhere", backend="hotfolder", target="../elsewhere", media_sizes=["8x10"])
    order = submitted_order()
    listener = hot_folder_listener()
    assert listener.step() == {"sweep": 1, "waiting": 1}

    # when the minilab prints the job
    process_pending(folder=printer_folder(printer), delay_seconds=0)

    # then the next pull still reads it (before: every step raised the refusal, and the hot folders' events
    # stopped for every printer, left to the poll)
    assert listener.step() == {"printed": 1}
    assert PrintJob.objects.get(order=order).status == J.PRINTED


def test_only_the_jobs_an_event_names_are_read():
    # given two minilabs with a submitted job each, heard once
    four_by_six = hotfolder_printer("four", sizes=["4x6"])
    hotfolder_printer("eight", sizes=["8x10"])
    first, second = submitted_order("PRINT-4X6-LUSTRE"), submitted_order("PRINT-8X10-LUSTRE")
    listener = hot_folder_listener()
    listener.step()

    # when only one minilab prints its job
    process_pending(folder=printer_folder(four_by_six), delay_seconds=0)

    # then only that job was read (the other is not even asked for: no "waiting")
    assert listener.step() == {"printed": 1}
    statuses = dict(PrintJob.objects.values_list("order_id", "status"))
    assert statuses == {first.pk: J.PRINTED, second.pk: J.SUBMITTED}


def test_a_job_finished_before_its_submit_saved_the_handle_is_read_once_it_has(tmp_path: Path):
    # given a job still `submitting` whose ticket the minilab already printed (the handle is not saved yet)
    printer = hotfolder_printer("quick", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = job_walk(PrintJob.objects.get(order=order), J.SUBMITTING)
    listener = hot_folder_listener()
    listener.step()
    source = tmp_path / "raster.jpg"
    source.write_bytes(jpeg_bytes(60, 40))
    folder = printer_folder(printer)
    handle = HotFolderBackend(folder=folder).submit(path=source, title=job.title)
    move_ticket(folder=folder, ticket_path=folder / f"{handle}.json", directory=DONE_DIR)

    # when the listener hears the ticket before the submit saved the handle, and again after
    before = listener.step()
    assert jobs.job_move(
        job_id=job.pk, from_statuses={J.SUBMITTING}, to_status=J.SUBMITTED, backend_job_id=handle
    )
    after = listener.step()

    # then the job waited for its handle, and was read (printed) at the pull after it was saved
    assert (before, after) == ({}, {"printed": 1})
    job.refresh_from_db()
    assert job.status == J.PRINTED


def test_a_step_that_fails_after_its_pull_leaves_the_next_one_a_sweep_so_no_completion_is_lost(
    monkeypatch: pytest.MonkeyPatch,
):
    # given a submitted job on a minilab and a listener that has swept once
    printer, order, listener = swept_over_a_submitted_job()

    # when the minilab prints it, and the step that pulls that event fails before it reads the job (the
    # database goes away after the pull; the feed has moved past the event)
    process_pending(folder=printer_folder(printer), delay_seconds=0)
    with monkeypatch.context() as patched:
        patched.setattr(listener_module, "jobs_track", _database_gone)
        with pytest.raises(OperationalError):
            listener.step()

    # then the next step, with no event left to name the job, sweeps and prints it; nothing is owed after
    assert listener.step() == {"sweep": 1, "printed": 1}
    assert PrintJob.objects.get(order=order).status == J.PRINTED
    assert listener.step() == {}


def _database_gone(jobs: object, **options: object) -> NoReturn:
    raise OperationalError("server closed the connection unexpectedly")


def test_every_cups_server_and_the_hot_folders_are_one_source_each(settings):
    # given printers on two CUPS servers (one of them the default server), and two hot folders
    settings.CUPS_SERVER = "cups-a:631"
    hotfolder_printer("left", sizes=["4x6"])
    hotfolder_printer("right", sizes=["4x6"])
    for name, server in (("a1", ""), ("a2", "cups-a:631"), ("b1", "cups-b:631")):
        Printer.objects.create(name=name, backend=KIND_CUPS, target=name, cups_server=server)

    # then the listener runs one thread per cupsd (as the printers reach it) and one for all hot folders
    assert event_sources() == {
        EventSource(kind=KIND_CUPS, server="cups-a:631"),
        EventSource(kind=KIND_CUPS, server="cups-b:631"),
        EventSource(kind=KIND_HOTFOLDER),
    }


class _StartedOnce(EventFeed):
    """A feed that reports its server (re)started at the first pull, then nothing: what the listener sees
    when cupsd restarts and the changes that follow come before its new subscription."""

    def __init__(self) -> None:
        self.pulls = 0

    def pull(self) -> EventBatch:
        self.pulls += 1
        return EventBatch(server_started=self.pulls == 1)


def _silent_after_start(monkeypatch: pytest.MonkeyPatch) -> tuple[SourceListener, list[float]]:
    """A listener on the hot folders whose feed says its server just started, then stays silent; its clock
    (its module's `time`, not the process's) is the list's one value."""
    clock = [1000.0]
    monkeypatch.setattr(listener_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    return SourceListener(source=EventSource(kind=KIND_HOTFOLDER), feed=_StartedOnce()), clock


def test_after_a_server_start_the_jobs_it_held_are_swept_again_while_they_are_submitted(
    monkeypatch: pytest.MonkeyPatch,
):
    # given a submitted job, and a listener whose feed says its server just started, then stays silent
    hotfolder_printer("minilab", sizes=["4x6"])
    submitted_order()
    listener, clock = _silent_after_start(monkeypatch)

    # when it pulls at once, then every second for the fast period, then past it
    first, at_once = listener.step(), listener.step()
    fast = []
    for _ in range(int(AFTER_RESTART_SWEEP_SECONDS / AFTER_RESTART_SWEEP_EVERY) - 1):
        clock[0] += AFTER_RESTART_SWEEP_EVERY
        fast.append(listener.step())
    clock[0] += AFTER_RESTART_SWEEP_EVERY  # past the fast period: slower sweeps
    too_soon = listener.step()
    clock[0] += AFTER_RESTART_SWEEP_SLOW_EVERY
    slow = listener.step()
    clock[0] += AFTER_RESTART_SWEEP_LIMIT  # the job is still submitted, but the poll has it now
    after_the_limit = listener.step()

    # then the job is looked at with no event naming it: every second, then every few seconds, as long as
    # it is submitted, up to the limit
    assert first == slow == {"sweep": 1, "waiting": 1}
    assert fast == [{"sweep": 1, "waiting": 1}] * len(fast)
    assert at_once == too_soon == after_the_limit == {}


def test_the_sweeps_after_a_server_start_end_once_the_jobs_it_held_moved_on(monkeypatch: pytest.MonkeyPatch):
    # given a submitted job, a listener that heard its server start and swept, and a second job submitted
    # after that start (its events are heard as usual)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = submitted_order()
    listener, clock = _silent_after_start(monkeypatch)
    assert listener.step() == {"sweep": 1, "waiting": 1}

    # when the minilab prints the first job with no event saying so, and a second job is submitted
    process_pending(folder=printer_folder(printer), delay_seconds=0)
    later = submitted_order()
    clock[0] += AFTER_RESTART_SWEEP_EVERY
    swept = listener.step()
    clock[0] += AFTER_RESTART_SWEEP_EVERY
    next_pull = listener.step()

    # then the follow-up sweep prints it, and none follows: the jobs submitted after the start are the
    # events' to tell
    assert swept == {"sweep": 1, "printed": 1, "waiting": 1}
    assert PrintJob.objects.get(order=order).status == J.PRINTED
    assert PrintJob.objects.get(order=later).status == J.SUBMITTED
    assert next_pull == {}


def test_a_server_start_heard_by_a_step_that_failed_still_brings_the_sweeps_after_it(
    monkeypatch: pytest.MonkeyPatch,
):
    # given a submitted job, and a listener whose feed says its server just started, the step that pulled
    # that start failing before it acted on it (the database went away while it checked the restarts)
    hotfolder_printer("minilab", sizes=["4x6"])
    submitted_order()
    listener, clock = _silent_after_start(monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(listener_module, "server_restarts_check", _database_gone)
        with pytest.raises(OperationalError):
            listener.step()

    # when the next steps run, the feed silent
    owed = listener.step()
    clock[0] += AFTER_RESTART_SWEEP_EVERY
    follow_up = listener.step()

    # then the start still counts: the next step sweeps, and the follow-up sweeps come after it as after
    # any start (the jobs a cupsd finishes while its new subscription is made are in no event)
    assert owed == follow_up == {"sweep": 1, "waiting": 1}


def _alive_while_listening(
    monkeypatch: pytest.MonkeyPatch, step: Callable[[SourceListener], object]
) -> list[float]:
    """Run the listener for 1.5 s over one hot folder, its steps `step`, with every wait shrunk (an allowance
    of 0.3 s for a step); the times (seconds from its start) it recorded that it is alive."""
    hotfolder_printer("minilab", sizes=["4x6"])
    monkeypatch.setattr(SourceListener, "step", step)
    monkeypatch.setattr(listener_module, "SOURCE_REFRESH_SECONDS", 0.05)
    monkeypatch.setattr(listener_module, "BACKOFF_CAP_SECONDS", 0.05)
    monkeypatch.setattr(listener_module, "STEP_ALLOWANCE_SECONDS", 0.3)
    started = time.monotonic()
    recorded: list[float] = []
    monkeypatch.setattr(listener_module, "_alive", lambda: recorded.append(time.monotonic() - started))
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    try:
        listener_module.printer_events_listen(stop=stop, pull_seconds=0.05)
    finally:
        timer.cancel()
    return recorded


def _fails(listener: SourceListener) -> object:
    raise RuntimeError("a bug of ours in every step")


def test_a_listener_whose_every_step_fails_stops_recording_that_it_is_alive(monkeypatch: pytest.MonkeyPatch):
    # when the listener's source thread fails at every step (a bug of ours; the database would do the same)
    recorded = _alive_while_listening(monkeypatch, _fails)

    # then it stops recording that it is alive once no step has been done for the allowance, so the board
    # shows it as one that died (before: the loop that reads the sources recorded it whatever its threads did)
    assert recorded and max(recorded) < 0.3 + 0.2, recorded


def _nothing_to_hear(listener: SourceListener) -> object:
    return {}


def _unanswered(listener: SourceListener) -> object:
    raise PrinterError(code="unreachable", message="the server does not answer")


@pytest.mark.parametrize("step", [_nothing_to_hear, _unanswered], ids=["works", "server_silent"])
def test_a_listener_whose_steps_work_or_find_the_server_silent_records_that_it_is_alive(
    monkeypatch: pytest.MonkeyPatch, step: Callable[[SourceListener], object]
):
    # when its steps work (nothing to hear), or its server does not answer (the printer's state, shown on the
    # board as the printer's)
    recorded = _alive_while_listening(monkeypatch, step)

    # then it records that it is alive to the end
    assert recorded and max(recorded) > 1.2, recorded


def test_a_job_printed_while_its_order_is_on_hold_is_read_and_the_order_stays_held():
    # given a submitted job on a hot-folder minilab and a listener that has swept once, the job's order then
    # put on hold by a technician (its copy was already at the minilab)
    printer, order, listener = swept_over_a_submitted_job()
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which crop?")

    # when the minilab prints it
    process_pending(folder=printer_folder(printer), delay_seconds=0)

    # then the pull reads the job printed, and the order stays on hold for its question (it does not move on
    # to packing, nor does the step fail on the order's move, losing the other jobs of its pull)
    assert listener.step() == {"printed": 1}
    job = PrintJob.objects.get(order=order)
    order.refresh_from_db()
    assert (job.status, order.status) == (J.PRINTED, "on_hold")


def test_a_job_whose_server_restarts_cannot_be_checked_is_not_read_and_is_looked_at_again(
    monkeypatch: pytest.MonkeyPatch,
):
    # given a submitted job, and its printer's server restarts that cannot be checked right now
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=submitted_order())
    monkeypatch.setattr(listener_module, "server_restarts_check", lambda printer, *, silent: False)
    listener = hot_folder_listener()

    # when the listener sweeps, then it reads no job it cannot first check restarts for (a restart it did not
    # hear would have a job read as finished without its mark), and keeps it to look at again
    assert listener.step() == {"sweep": 1}
    assert job.pk in listener._retry

    # and once they can be checked, the next pull reads it
    monkeypatch.setattr(listener_module, "server_restarts_check", lambda printer, *, silent: True)
    assert listener.step() == {"waiting": 1}
    assert listener._retry == {}
