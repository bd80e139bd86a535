"""What CUPS 2.4.2 does with jobs across a cupsd restart (SIGTERM, start on the same spool), pinned down
against a private cupsd; the facts and their CUPS source functions are in printers/cups_backend.py."""

import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cups
import pytest

from printers import cups_backend, errors
from printers.base import JobInfo, JobState
from printers.cups_backend import CupsBackend
from printers.cups_ipp import connect
from printers.cups_printers import list_queues
from tests.printers.conftest import PHOTO_MEDIA
from tests.support.cups import PrivateCups
from tests.support.images import jpeg_bytes
from tests.support.ipp_gate import GateMode, IppGate

WAITING_FOR_DEVICE = "cups-waiting-for-job-completed"

_Value = TypeVar("_Value")


def _poll(read: Callable[[], _Value], until: Callable[[_Value], bool], *, timeout: float) -> _Value:
    deadline = time.monotonic() + timeout
    value = read()
    while not until(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def _received(private_cups: PrivateCups, name: str) -> list[str]:
    return [path.name for path in private_cups.received_files(name)]


def _submit_and_wait_until_the_device_has_it(
    private_cups: PrivateCups, backend: CupsBackend, path: Path, title: str
) -> JobInfo:
    """Submit and wait until the device holds the document and CUPS' ipp backend waits for it to print."""
    already_received = len(private_cups.received_files(backend.queue))
    handle = backend.submit(path=path, title=title)
    info = _poll(
        lambda: backend.job_info(handle),
        lambda info: (
            len(private_cups.received_files(backend.queue)) > already_received
            and info.completed_impressions == 1
            and WAITING_FOR_DEVICE in backend.printer_status().reasons
        ),
        timeout=15,
    )
    assert (info.state, info.document_count, info.completed_impressions) == (JobState.PROCESSING, 1, 1)
    return info


def _after_the_second(moment: int | None) -> None:
    # CUPS keeps whole seconds: a restart inside the same second would leave time-at-processing unchanged.
    assert moment is not None
    _poll(lambda: time.time(), lambda now: now >= moment + 1, timeout=2)


def test_job_completed_at_shutdown_comes_back_pending_and_is_sent_again_at_the_next_restart(
    restartable_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a job whose document the device already has, its ipp backend waiting for the print to finish
    restartable_cups.add_printer("restart_a", media=PHOTO_MEDIA, print_seconds=2)
    backend = CupsBackend(queue="restart_a", server=restartable_cups.server)
    first = _submit_and_wait_until_the_device_has_it(restartable_cups, backend, small_jpeg, "lab-job-r1")
    assert first.created_at is not None and first.processing_started_at is not None
    assert (first.was_requeued, first.is_missing_document) == (False, False)

    # when cupsd is restarted
    restartable_cups.restart_cupsd()

    # then the job is back to pending with its old processing time (cupsdLoadJob), and is requeued
    requeued = backend.job_info(first.handle)
    assert (
        requeued.state,
        requeued.reasons,
        requeued.created_at,
        requeued.processing_started_at,
        requeued.document_count,
        requeued.completed_impressions,
    ) == (JobState.PENDING, ("job-printing",), first.created_at, first.processing_started_at, 1, 1)
    assert requeued.was_requeued is True
    # ... and CUPS does not schedule it in this run: a later job goes through alone
    later = backend.submit(path=small_jpeg, title="lab-job-r2")
    assert _poll(lambda: backend.job_info(later), lambda info: info.state.is_final, timeout=30).state is (
        JobState.COMPLETED
    )
    assert _received(restartable_cups, "restart_a") == ["1-lab-job-r1.jpg", "2-lab-job-r2.jpg"]
    assert backend.job_info(first.handle).state is JobState.PENDING

    # when cupsd is restarted once more, then CUPS sends the whole document to the device a second time
    restartable_cups.restart_cupsd()
    final = _poll(lambda: backend.job_info(first.handle), lambda info: info.state.is_final, timeout=40)
    assert final.state is JobState.COMPLETED
    assert _received(restartable_cups, "restart_a") == [
        "1-lab-job-r1.jpg",
        "2-lab-job-r2.jpg",
        "3-lab-job-r1.jpg",
    ]
    # and afterwards only the changed time-at-processing and the doubled impression count show it
    assert (final.created_at, final.completed_impressions, final.was_requeued) == (first.created_at, 2, False)
    assert final.restarted_since(first.processing_started_at) is True
    assert final.has_more_impressions_than(1) is True


def test_job_interrupted_after_an_earlier_restart_is_sent_again_at_once_unless_canceled(
    restartable_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a cupsd that was restarted once while a job was on the device, and that job canceled
    # (what the production layer does with a requeued job)
    restartable_cups.add_printer("restart_b", media=PHOTO_MEDIA, print_seconds=2)
    backend = CupsBackend(queue="restart_b", server=restartable_cups.server)
    earlier = _submit_and_wait_until_the_device_has_it(restartable_cups, backend, small_jpeg, "lab-job-b1")
    restartable_cups.restart_cupsd()
    assert backend.job_info(earlier.handle).was_requeued is True
    backend.cancel(earlier.handle)
    # CUPS saved the stale printer-state-reason; it now never learns that a document was fully sent
    assert WAITING_FOR_DEVICE in backend.printer_status().reasons

    # and a new job on the device
    first = _submit_and_wait_until_the_device_has_it(restartable_cups, backend, small_jpeg, "lab-job-b2")
    _after_the_second(first.processing_started_at)

    # when cupsd is restarted
    restartable_cups.restart_cupsd()

    # then CUPS sends the new job again at once; the canceled one is not sent again
    final = _poll(lambda: backend.job_info(first.handle), lambda info: info.state.is_final, timeout=40)
    assert final.state is JobState.COMPLETED
    assert _received(restartable_cups, "restart_b") == [
        "1-lab-job-b1.jpg",
        "2-lab-job-b2.jpg",
        "3-lab-job-b2.jpg",
    ]
    assert backend.job_info(earlier.handle).state is JobState.CANCELED
    # and the poller that recorded time-at-processing, or knows the copies, can tell
    assert final.restarted_since(first.processing_started_at) is True
    assert (final.completed_impressions, final.has_more_impressions_than(1)) == (2, True)
    assert final.restarted_since(final.processing_started_at) is False


def test_waitjob_false_completes_the_job_when_the_device_has_it_so_a_restart_does_not_resend(
    restartable_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a queue whose ipp backend does not wait for the device to finish printing (5 s here)
    restartable_cups.add_printer(
        "no_wait", media=PHOTO_MEDIA, print_seconds=5, device_uri_options="waitjob=false"
    )
    backend = CupsBackend(queue="no_wait", server=restartable_cups.server)
    handle = backend.submit(path=small_jpeg, title="lab-job-w1")

    # when the device has the document, then CUPS calls the job completed although the device still prints
    info = _poll(lambda: backend.job_info(handle), lambda info: info.state.is_final, timeout=15)
    assert (info.state, info.completed_impressions) == (JobState.COMPLETED, 1)
    assert _received(restartable_cups, "no_wait") == ["1-lab-job-w1.jpg"]

    # when cupsd restarts during that print, then nothing is sent again
    restartable_cups.restart_cupsd()
    later = backend.submit(path=small_jpeg, title="lab-job-w2")
    assert _poll(lambda: backend.job_info(later), lambda info: info.state.is_final, timeout=30).state is (
        JobState.COMPLETED
    )
    assert _received(restartable_cups, "no_wait") == ["1-lab-job-w1.jpg", "2-lab-job-w2.jpg"]
    assert backend.job_info(handle).state is JobState.COMPLETED


def test_job_created_without_its_document_before_a_restart_is_held_with_no_document(
    restartable_cups: PrivateCups,
) -> None:
    # given a Create-Job whose Send-Document never came (pycups' printFile is Create-Job + Send-Document)
    restartable_cups.add_printer("no_document", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="no_document", server=restartable_cups.server)
    handle = str(connect(server=restartable_cups.server).createJob("no_document", "lab-job-n1", {}))
    incoming = backend.job_info(handle)
    # while the submit may still be in flight it is not called missing
    assert (incoming.state, incoming.reasons, incoming.document_count, incoming.processing_started_at) == (
        JobState.HELD,
        ("job-incoming",),
        0,
        None,
    )
    assert incoming.is_missing_document is False

    # when cupsd restarts
    restartable_cups.restart_cupsd()

    # then the job stays held with no document and nothing waiting for one, until canceled
    orphan = backend.job_info(handle)
    assert (orphan.state, orphan.reasons, orphan.document_count) == (JobState.HELD, ("none",), 0)
    assert (orphan.is_missing_document, orphan.was_requeued) == (True, False)
    backend.cancel(handle)
    assert backend.job_info(handle).state is JobState.CANCELED
    assert _received(restartable_cups, "no_document") == []


def test_every_call_while_cupsd_is_stopped_is_transient_and_works_again_after_start(
    restartable_cups: PrivateCups, small_jpeg: Path
) -> None:
    restartable_cups.add_printer("stopped_server", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="stopped_server", server=restartable_cups.server)
    handle = backend.submit(path=small_jpeg, title="lab-job-s1")
    restartable_cups.stop_cupsd()
    calls: list[Callable[[], object]] = [
        lambda: backend.submit(path=small_jpeg, title="lab-job-s2"),
        lambda: backend.job_info(handle),
        lambda: backend.cancel(handle),
        backend.printer_status,
        lambda: backend.find_jobs(title_prefix="lab-job-"),
        lambda: list_queues(server=backend.server),
    ]

    for call in calls:
        with pytest.raises(errors.TransientPrinterError) as raised:
            call()
        assert (raised.value.code, raised.value.is_permanent) == ("printer_unreachable", False)

    restartable_cups.start_cupsd()
    assert backend.job_info(handle).title == "lab-job-s1"
    assert [job.title for job in backend.find_jobs(title_prefix="lab-job-")] == ["lab-job-s1"]


def test_cupsd_stopped_while_a_document_is_on_its_way_is_a_transient_submit_error(
    restartable_cups: PrivateCups, tmp_path: Path
) -> None:
    # given a submit held by a relay at its Send-Document: CUPS has created the job, not yet its document
    # (a photo big enough that the document is still being written when cupsd goes)
    restartable_cups.add_printer("midway", media=PHOTO_MEDIA)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(1800, 1200))
    outcomes: list[BaseException | str] = []
    for attempt in range(3):
        gate = IppGate(upstream_port=restartable_cups.port).start()
        try:
            gate.arm(GateMode.HOLD_SEND_DOCUMENT)
            backend = CupsBackend(queue="midway", server=gate.server)

            def submit(title: str = f"lab-job-m{attempt}", backend: CupsBackend = backend) -> None:
                try:
                    outcomes.append(backend.submit(path=photo, title=title))
                except BaseException as error:  # the test looks at whatever came out
                    outcomes.append(error)

            sender = threading.Thread(target=submit)
            sender.start()
            assert gate.tripped.wait(timeout=30)

            # when cupsd stops (what `systemctl restart cups` does first) and the connection is dropped
            restartable_cups.stop_cupsd()
            gate.pause()  # the held connection dropped, and the port refusing, as cupsd's own
            sender.join(timeout=60)
            assert not sender.is_alive(), _stack_of(sender)
        finally:
            gate.stop()
            restartable_cups.start_cupsd()

    # then every attempt failed with a transient error the service retries, never a permanent one (cupsd
    # answers HTTP 400 to the request it was reading as it shuts down; libcups reports it as IPP 0x0400)
    # (libcups sometimes calls such a submit successful: submit reads the job back and finds no document)
    # (a ServerSilentError when no IPP answer came at all: a TransientPrinterError too)
    seen = [
        (isinstance(outcome, errors.TransientPrinterError), getattr(outcome, "code", None))
        for outcome in outcomes
    ]
    assert seen == [(True, "printer_unreachable")] * 3, outcomes
    # and each attempt left at most a job without its document, which the retry cancels; nothing printed
    left = CupsBackend(queue="midway", server=restartable_cups.server).find_jobs(title_prefix="lab-job-m")
    assert all(job.is_missing_document or job.state is JobState.CANCELED for job in left), left
    assert _received(restartable_cups, "midway") == []


def _stack_of(thread: threading.Thread) -> str:
    """Where a thread is now (a submit that did not return: which libcups call it waits in)."""
    frame = sys._current_frames().get(thread.ident or 0)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(thread gone)"


def test_a_connection_cupsd_dropped_gives_transient_errors_never_raw_cups_errors(
    restartable_cups: PrivateCups, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a pycups connection opened before cupsd went down (what a request in flight sees while
    # cupsd restarts; once cupsd is back libcups reconnects by itself)
    restartable_cups.add_printer("dropped", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="dropped", server=restartable_cups.server)
    handle = backend.submit(path=small_jpeg, title="lab-job-d1")
    stale = connect(server=restartable_cups.server)
    stale.getPrinterAttributes("dropped", requested_attributes=["printer-name"])
    restartable_cups.stop_cupsd()
    monkeypatch.setattr(cups_backend, "connect", lambda *, server: stale)

    # when each method runs on it, then the failure is a transient PrinterError
    # (submit: printFile answers 0x0500 and the queue check 0x0502, which used to escape raw)
    calls: list[Callable[[], object]] = [
        lambda: backend.submit(path=small_jpeg, title="lab-job-d2"),
        lambda: backend.job_info(handle),
        lambda: backend.cancel(handle),
        backend.printer_status,
        lambda: backend.find_jobs(title_prefix="lab-job-"),
    ]
    for call in calls:
        with pytest.raises(errors.TransientPrinterError) as raised:
            call()
        assert raised.value.is_permanent is False
        assert isinstance(raised.value.__cause__, cups.IPPError)


def test_server_events_report_each_cupsd_start_once_and_survive_the_restart(
    restartable_cups: PrivateCups,
) -> None:
    # given a queue and a standing watch on its cupsd
    restartable_cups.add_printer("watched", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="watched", server=restartable_cups.server)
    first = backend.server_events(watch=None, after=0)
    assert (first.started_at, first.watch_lost) == ((), False)
    assert backend.server_events(watch=first.watch, after=first.last_sequence).started_at == ()

    # when cupsd restarts, then restarts again
    before = int(time.time())
    restartable_cups.restart_cupsd()
    seen = backend.server_events(watch=first.watch, after=first.last_sequence)
    restartable_cups.restart_cupsd()
    again = backend.server_events(watch=seen.watch, after=seen.last_sequence)

    # then the watch survived, and each look names the start since the one before, with its time, once
    assert (seen.watch, seen.watch_lost, len(seen.started_at)) == (first.watch, False, 1)
    assert (again.watch, again.watch_lost, len(again.started_at)) == (first.watch, False, 1)
    assert before <= seen.started_at[0] <= again.started_at[0] <= int(time.time())
    assert backend.server_events(watch=again.watch, after=again.last_sequence).started_at == ()


def test_a_lost_watch_is_replaced_and_reported(restartable_cups: PrivateCups) -> None:
    restartable_cups.add_printer("watched", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="watched", server=restartable_cups.server)
    first = backend.server_events(watch=None, after=0)
    connect(server=restartable_cups.server).cancelSubscription(first.watch)

    replaced = backend.server_events(watch=first.watch, after=first.last_sequence)

    assert replaced.watch_lost and replaced.watch != first.watch


def test_every_queue_of_a_cupsd_shares_one_restart_watch(restartable_cups: PrivateCups) -> None:
    # cupsd allows 100 subscriptions by default: a lab with many queues must not use one per queue
    restartable_cups.add_printer("first", media=PHOTO_MEDIA)
    restartable_cups.add_printer("second", media=PHOTO_MEDIA)
    first = CupsBackend(queue="first", server=restartable_cups.server).server_events(watch=None, after=0)
    second = CupsBackend(queue="second", server=restartable_cups.server).server_events(watch=None, after=0)

    assert first.watch == second.watch
    assert len(connect(server=restartable_cups.server).getSubscriptions("ipp://localhost/")) == 1
