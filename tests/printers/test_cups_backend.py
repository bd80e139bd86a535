"""CUPS backend against a private cupsd with ippeveprinter printers (tests/support/cups.py).
The fault tests pin down what CUPS 2.4.2 actually reports; production polling is designed on them."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cups
import pytest

from printers import cups_backend, cups_printers, errors
from printers.base import JobInfo, JobState, PrinterState, PrinterStatus
from printers.cups_backend import CupsBackend
from printers.cups_ipp import parse_server
from printers.cups_printers import list_queues
from printers.media import media_matches_size
from tests.printers.conftest import PHOTO_MEDIA
from tests.support.cups import PrivateCups

UNREACHABLE_MESSAGE = "The printer may not exist or is unavailable at this time."


def _wait_for_job(
    backend: CupsBackend, handle: str, until: Callable[[JobInfo], bool], *, timeout: float
) -> JobInfo:
    deadline = time.monotonic() + timeout
    info = backend.job_info(handle)
    while not until(info) and time.monotonic() < deadline:
        time.sleep(0.1)
        info = backend.job_info(handle)
    return info


def _wait_for_status(
    backend: CupsBackend, until: Callable[[PrinterStatus], bool], *, timeout: float
) -> PrinterStatus:
    deadline = time.monotonic() + timeout
    status = backend.printer_status()
    while not until(status) and time.monotonic() < deadline:
        time.sleep(0.1)
        status = backend.printer_status()
    return status


def _final(info: JobInfo) -> bool:
    return info.state.is_final


def test_submitted_jpeg_completes_and_the_printer_receives_exactly_one_file(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a photo printer queue
    private_cups.add_printer("submit_ok", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="submit_ok", server=private_cups.server)

    # when a small JPEG is submitted with media and copies
    handle = backend.submit(path=small_jpeg, title="lab-job-1", media="na_index-4x6_4x6in", copies=2)

    # then CUPS completes it and the device kept exactly that file, byte for byte
    info = _wait_for_job(backend, handle, _final, timeout=15)
    assert (info.handle, info.title, info.state) == (handle, "lab-job-1", JobState.COMPLETED)
    # one delivery of a one-image job: the ipp backend reports `copies` impressions, one document
    assert (info.document_count, info.completed_impressions) == (1, 2)
    assert info.created_at is not None and info.processing_started_at is not None
    assert info.completed_at is not None
    assert info.created_at <= info.processing_started_at <= info.completed_at
    assert (info.has_more_impressions_than(2), info.was_requeued, info.is_missing_document) == (
        False,
        False,
        False,
    )
    received = private_cups.received_files("submit_ok")
    assert [path.name for path in received] == ["1-lab-job-1.jpg"]
    assert received[0].read_bytes() == small_jpeg.read_bytes()


def test_status_is_online_then_paused_after_cupsdisable_then_online_again(private_cups: PrivateCups) -> None:
    private_cups.add_printer("pausable", media=PHOTO_MEDIA, media_ready=["na_5x7_5x7in"])
    backend = CupsBackend(queue="pausable", server=private_cups.server)

    online = backend.printer_status()
    assert (online.state, online.reasons, online.media_supported) == (
        PrinterState.ONLINE,
        (),
        tuple(PHOTO_MEDIA),
    )
    # CUPS 2.4.2 does not pass the device's media-ready through to the queue.
    assert online.media_ready == ()

    private_cups.disable("pausable", reason="ribbon change")
    paused = backend.printer_status()
    assert (paused.state, paused.reasons, paused.message) == (
        PrinterState.PAUSED,
        ("paused",),
        "ribbon change",
    )

    private_cups.enable("pausable")
    assert backend.printer_status().state is PrinterState.ONLINE


def test_a_queue_cups_stopped_after_its_backend_failed_is_in_error_not_paused(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a queue whose device URI names a resource its printer does not have (the ipp backend exits
    # "stop printer": CUPS stops the queue itself and, as for any stop, adds the reason `paused`)
    private_cups.add_printer("misconfigured", media=PHOTO_MEDIA)
    private_cups.set_device_uri(
        "misconfigured", f"ipp://localhost:{private_cups.device_port('misconfigured')}/ipp/nothing"
    )
    backend = CupsBackend(queue="misconfigured", server=private_cups.server)

    # when a job is sent to it
    handle = backend.submit(path=small_jpeg, title="lab-job-4")

    # then the queue reads as in error (its jobs rerouted, the supervisor alerted), not as paused by a person
    status = _wait_for_status(backend, lambda status: status.state is not PrinterState.ONLINE, timeout=15)
    assert (status.state, status.reasons, status.message) == (
        PrinterState.ERROR,
        ("paused",),
        "The printer configuration is incorrect or the printer no longer exists.",
    )
    assert backend.job_info(handle).state is JobState.PENDING
    backend.cancel(handle)


@pytest.mark.parametrize(
    ("reasons", "message", "state"),
    [
        # a person's cupsdisable: CUPS' "Paused", their -r reason, or nothing (a job's backend was stopped)
        (["paused"], "Paused", PrinterState.PAUSED),
        (["paused"], "ribbon change", PrinterState.PAUSED),
        (["paused"], "", PrinterState.PAUSED),
        # CUPS stopped it after its backend failed: the backend's ERROR line is the message
        (
            ["paused"],
            "The printer configuration is incorrect or the printer no longer exists.",
            PrinterState.ERROR,
        ),
        (["paused"], "Remote host did not accept data file (1).", PrinterState.ERROR),
        (["paused", "media-empty-error"], "Paused", PrinterState.ERROR),
        (["none"], "", PrinterState.ERROR),
    ],
)
def test_a_stopped_queue_is_paused_only_when_nothing_says_its_backend_failed(reasons, message, state):
    status = cups_printers.printer_status_from_attributes(
        {"printer-state": 5, "printer-state-reasons": reasons, "printer-state-message": message}
    )
    assert status.state is state


def test_job_on_a_paused_queue_stays_pending_and_can_be_canceled(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a disabled queue
    private_cups.add_printer("cancelable", media=PHOTO_MEDIA)
    private_cups.disable("cancelable")
    backend = CupsBackend(queue="cancelable", server=private_cups.server)

    # when a job is submitted, then canceled twice
    handle = backend.submit(path=small_jpeg, title="lab-job-5")
    pending = backend.job_info(handle)
    assert (pending.state, pending.processing_started_at, pending.document_count) == (
        JobState.PENDING,
        None,
        1,
    )
    assert pending.was_requeued is False
    backend.cancel(handle)
    backend.cancel(handle)

    # then it is canceled and nothing reached the device, even after the queue is enabled again: a job sent
    # after it (CUPS starts a queue's jobs in order) is the first and only document the device receives
    assert backend.job_info(handle).state is JobState.CANCELED
    private_cups.enable("cancelable")
    later = backend.submit(path=small_jpeg, title="lab-job-5-later")
    assert _wait_for_job(backend, later, _final, timeout=20).state is JobState.COMPLETED
    assert [path.name for path in private_cups.received_files("cancelable")] == ["1-lab-job-5-later.jpg"]


def test_rejecting_queue_is_paused_and_submit_is_transient(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    private_cups.add_printer("rejecting", media=PHOTO_MEDIA)
    private_cups.reject("rejecting")
    backend = CupsBackend(queue="rejecting", server=private_cups.server)

    assert backend.printer_status().state is PrinterState.PAUSED
    with pytest.raises(errors.TransientPrinterError) as raised:
        backend.submit(path=small_jpeg, title="lab-job-6")
    assert raised.value.code == "printer_not_accepting_jobs"
    private_cups.accept("rejecting")


def test_a_submit_to_a_cupsd_full_of_unfinished_jobs_is_transient(small_jpeg: Path) -> None:
    # given a cupsd that holds at most two jobs (MaxJobs 2), whose queue is disabled so none finishes
    with PrivateCups() as full_cups:
        with (full_cups.directory / "cupsd.conf").open("a") as conf:
            conf.write("MaxJobs 2\n")
        full_cups.restart_cupsd()
        full_cups.add_printer("crowded", media=PHOTO_MEDIA)
        full_cups.disable("crowded")
        backend = CupsBackend(queue="crowded", server=full_cups.server)
        backend.submit(path=small_jpeg, title="lab-job-61")
        backend.submit(path=small_jpeg, title="lab-job-62")

        # when a third job is submitted, then CUPS refuses it ("Too many active jobs.",
        # client-error-not-possible) and that is a busy server, tried again later, not a job failed for good
        with pytest.raises(errors.TransientPrinterError) as raised:
            backend.submit(path=small_jpeg, title="lab-job-63")
        assert raised.value.code == "server_busy"
        assert "Too many active jobs." in str(raised.value)
        assert backend.find_jobs(title_prefix="lab-job-63") == []

        # when one of the waiting jobs is over, then the next submit goes through
        full_cups.cancel_all()
        assert backend.submit(path=small_jpeg, title="lab-job-63")


def test_unsupported_document_format_is_permanent(private_cups: PrivateCups, small_jpeg: Path) -> None:
    private_cups.add_printer("formats", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="formats", server=private_cups.server)

    with pytest.raises(errors.PermanentPrinterError) as raised:
        backend.submit(path=small_jpeg, title="lab-job-7", attributes={"document-format": "text/x-foo"})

    assert (raised.value.code, raised.value.is_permanent) == ("document_format_not_supported", True)
    # CUPS keeps the half-created job as canceled; the reconciler sees it and must not count it as printed.
    assert [(job.title, job.state) for job in backend.find_jobs(title_prefix="lab-job-7")] == [
        ("lab-job-7", JobState.CANCELED)
    ]
    assert private_cups.received_files("formats") == []


def test_unknown_queue_and_unknown_job_are_permanent(private_cups: PrivateCups, small_jpeg: Path) -> None:
    missing_queue = CupsBackend(queue="no_such_queue", server=private_cups.server)
    for call in (
        lambda: missing_queue.submit(path=small_jpeg, title="lab-job-8"),
        missing_queue.printer_status,
    ):
        with pytest.raises(errors.PermanentPrinterError) as raised:
            call()
        assert raised.value.code == "queue_not_found"

    with pytest.raises(errors.PermanentPrinterError) as raised:
        missing_queue.job_state("987654")
    assert raised.value.code == "job_not_found"


def test_cancel_of_a_completed_job_is_permanent_job_not_cancelable(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    private_cups.add_printer("done_cancel", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="done_cancel", server=private_cups.server)
    handle = backend.submit(path=small_jpeg, title="lab-job-9")
    assert _wait_for_job(backend, handle, _final, timeout=15).state is JobState.COMPLETED

    with pytest.raises(errors.PermanentPrinterError) as raised:
        backend.cancel(handle)

    assert raised.value.code == "job_not_cancelable"
    assert backend.job_state(handle) is JobState.COMPLETED


def test_dead_device_keeps_job_processing_and_status_says_unreachable_until_it_returns(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a queue whose device has been SIGKILLed
    private_cups.add_printer("dead_device", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="dead_device", server=private_cups.server)
    private_cups.kill_printer("dead_device")

    # when a job is submitted
    handle = backend.submit(path=small_jpeg, title="lab-job-10")

    # then CUPS accepts it, keeps it processing and retries; only the printer-state-message tells why
    status = _wait_for_status(backend, lambda status: status.state is PrinterState.OFFLINE, timeout=10)
    assert (status.state, status.reasons, status.message) == (
        PrinterState.OFFLINE,
        ("device-unreachable",),
        UNREACHABLE_MESSAGE,
    )
    info = backend.job_info(handle)
    assert (info.state, info.reasons, info.message) == (
        JobState.PROCESSING,
        ("job-printing",),
        UNREACHABLE_MESSAGE,
    )

    # when the device comes back, then the held job is delivered once and completes by itself
    private_cups.restart_printer("dead_device")
    assert _wait_for_job(backend, handle, _final, timeout=20).state is JobState.COMPLETED
    assert [path.name for path in private_cups.received_files("dead_device")] == ["1-lab-job-10.jpg"]
    assert backend.printer_status().state is PrinterState.ONLINE


def test_device_killed_mid_job_looks_like_printing_and_then_completed(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a device that takes 3 s per print and has just received our document
    private_cups.add_printer("mid_job_kill", media=PHOTO_MEDIA, print_seconds=3)
    backend = CupsBackend(queue="mid_job_kill", server=private_cups.server)
    handle = backend.submit(path=small_jpeg, title="lab-job-11")
    _wait_for_job(backend, handle, lambda _: bool(private_cups.received_files("mid_job_kill")), timeout=10)

    # when the device is SIGKILLed mid-print, and a live twin device (3 s per print too) has since printed
    # the same document from start to end: the killed one would have finished by now
    private_cups.kill_printer("mid_job_kill")
    private_cups.add_printer("mid_job_twin", media=PHOTO_MEDIA, print_seconds=3)
    twin = CupsBackend(queue="mid_job_twin", server=private_cups.server)
    twin_handle = twin.submit(path=small_jpeg, title="lab-job-11-twin")
    assert _wait_for_job(twin, twin_handle, _final, timeout=20).state is JobState.COMPLETED

    # then CUPS still says processing, with no sign of trouble on the job or the printer (the job's message
    # is "Printing." or, under load, "Idle." or the ipp backend's "Waiting for job to complete.", seen in a
    # fresh-clone CI: whichever, nothing says the device is gone)
    info = backend.job_info(handle)
    assert info.state is JobState.PROCESSING
    assert info.message in ("Printing.", "Idle.", "Waiting for job to complete.")
    assert backend.printer_status().state is PrinterState.ONLINE

    # when the device restarts without any memory of the job, then CUPS calls the job completed
    private_cups.restart_printer("mid_job_kill")
    assert _wait_for_job(backend, handle, _final, timeout=20).state is JobState.COMPLETED
    status = backend.printer_status()
    assert (status.state, status.reasons) == (
        PrinterState.ONLINE,
        ("cups-ipp-conformance-failure-report", "cups-ipp-missing-job-history"),
    )


def test_cups_server_down_is_transient(small_jpeg: Path) -> None:
    # given a CUPS server that was running and has stopped
    with PrivateCups() as short_lived:
        short_lived.add_printer("gone", media=PHOTO_MEDIA)
        backend = CupsBackend(queue="gone", server=short_lived.server)
        assert backend.printer_status().state is PrinterState.ONLINE
    calls: list[Callable[[], object]] = [
        lambda: backend.submit(path=small_jpeg, title="lab-job-12"),
        lambda: backend.job_state("1"),
        lambda: backend.discard_document("1"),
        backend.printer_status,
        lambda: backend.find_jobs(title_prefix="lab-job-"),
        lambda: list_queues(server=backend.server),
    ]

    # when anything is asked, then the error is transient printer_unreachable
    for call in calls:
        with pytest.raises(errors.TransientPrinterError) as raised:
            call()
        assert (raised.value.code, raised.value.is_permanent) == ("printer_unreachable", False)


class _LibcupsReportingCreateJobOnly:
    """A pycups connection whose printFile does what libcups reports when cupsd stops while it reads the
    document: the job is created (Create-Job), its document never arrives, and the call says success."""

    def __init__(self, connection: cups.Connection) -> None:
        self._connection = connection

    def printFile(self, queue: str, path: str, title: str, options: dict[str, str]) -> int:
        return int(self._connection.createJob(queue, title, options))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def test_a_submit_reported_successful_without_its_document_is_transient_and_its_empty_job_cancelled(
    private_cups: PrivateCups, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given libcups calling a submit successful although cupsd never got the document
    private_cups.add_printer("half_sent", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="half_sent", server=private_cups.server)
    real_connect = cups_backend.connect
    monkeypatch.setattr(
        cups_backend, "connect", lambda *, server: _LibcupsReportingCreateJobOnly(real_connect(server=server))
    )

    # when the backend submits, then it reads the job back and says transient, never a handle
    with pytest.raises(errors.TransientPrinterError) as raised:
        backend.submit(path=small_jpeg, title="lab-job-h1")
    assert raised.value.code == "printer_unreachable"
    assert "document did not arrive" in raised.value.message
    monkeypatch.undo()

    # and the empty job it left is cancelled: the retry's look at the printer does not adopt it
    assert [(job.title, job.state) for job in backend.find_jobs(title_prefix="lab-job-h1")] == [
        ("lab-job-h1", JobState.CANCELED)
    ]
    # while a submit that delivers its document still returns the job
    handle = backend.submit(path=small_jpeg, title="lab-job-h2")
    assert _wait_for_job(backend, handle, _final, timeout=15).state is JobState.COMPLETED
    assert [path.name for path in private_cups.received_files("half_sent")] == ["1-lab-job-h2.jpg"]


def test_the_document_of_a_job_that_is_over_is_purged_from_cupsd_spool(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    # given a completed job, whose document cupsd keeps in its spool (PreserveJobFiles: a day by default),
    # and a job still waiting on a paused queue
    private_cups.add_printer("purged", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="purged", server=private_cups.server)
    handle = backend.submit(path=small_jpeg, title="lab-job-p1")
    assert _wait_for_job(backend, handle, _final, timeout=15).state is JobState.COMPLETED
    document = f"d{int(handle):05d}-001"
    assert document in private_cups.spooled_documents()
    private_cups.disable("purged")
    waiting = backend.submit(path=small_jpeg, title="lab-job-p2")

    # when its document is discarded, then cupsd's copy and the job are gone; a second discard finds nothing
    assert backend.discard_document(handle) is True
    assert document not in private_cups.spooled_documents()
    assert backend.find_jobs(title_prefix="lab-job-p1") == []
    assert backend.discard_document(handle) is False

    # and a job that is not over is refused, untouched
    with pytest.raises(errors.PermanentPrinterError) as refused:
        backend.discard_document(waiting)
    assert refused.value.code == "job_not_over"
    assert backend.job_state(waiting) is JobState.PENDING
    backend.cancel(waiting)


def test_find_jobs_by_title_prefix_on_this_queue_only(private_cups: PrivateCups, small_jpeg: Path) -> None:
    # given jobs with our ids in their titles on two queues
    private_cups.add_printer("reconcile_a", media=PHOTO_MEDIA)
    private_cups.add_printer("reconcile_b", media=PHOTO_MEDIA)
    private_cups.disable("reconcile_a")
    backend = CupsBackend(queue="reconcile_a", server=private_cups.server)
    other = CupsBackend(queue="reconcile_b", server=private_cups.server)
    first = backend.submit(path=small_jpeg, title="lab-job-123")
    second = backend.submit(path=small_jpeg, title="lab-job-123-r1")
    backend.submit(path=small_jpeg, title="lab-job-456")
    other.submit(path=small_jpeg, title="lab-job-123")

    # when the reconciler looks for job 123 on queue a
    found = backend.find_jobs(title_prefix="lab-job-123")

    # then it sees exactly the two jobs there, oldest first, with state
    assert [(job.handle, job.title, job.state) for job in found] == [
        (first, "lab-job-123", JobState.PENDING),
        (second, "lab-job-123-r1", JobState.PENDING),
    ]
    for job in backend.find_jobs(title_prefix="lab-job-"):
        backend.cancel(job.handle)


def test_list_queues_returns_device_uri_state_and_media(private_cups: PrivateCups) -> None:
    private_cups.add_printer("sync_me", media=["na_index-4x6_4x6in", "na_11x14_11x14in"])

    queues = {queue.name: queue for queue in list_queues(server=private_cups.server)}

    queue = queues["sync_me"]
    assert (queue.device_uri, queue.status.state, queue.is_accepting_jobs) == (
        private_cups.device_uri("sync_me"),
        PrinterState.ONLINE,
        True,
    )
    # CUPS renames 11x14 to the registered PWG name na_edp_11x14in (and accepts either name in a job).
    assert set(queue.media_supported) == {"na_index-4x6_4x6in", "na_edp_11x14in"}
    assert media_matches_size("na_edp_11x14in", width_inches=14, height_inches=11) is True


@pytest.mark.parametrize(
    ("status", "message", "transient", "code"),
    [
        (0x0000, "successful-ok", True, "printer_unreachable"),  # the call failed with no IPP answer at all
        (0x0500, "x", True, "ipp_error"),
        (0x0500, "Success", True, "printer_unreachable"),  # no answer until libcups gave up: a stalled cupsd
        (0x0502, "x", True, "server_busy"),
        (0x040A, "x", False, "document_format_not_supported"),
        (0x0400, "client-error-bad-request", False, "ipp_error"),
        (0x0400, "Missing required attributes.", False, "ipp_error"),  # cupsd's own reason
        # HTTP 400 (libcups' text for it): cupsd shut down while reading the request
        (0x0400, "Bad Request", True, "printer_unreachable"),
    ],
)
def test_ipp_statuses_are_transient_only_when_retrying_can_help(status, message, transient, code):
    from printers.cups_ipp import translate_ipp_error

    error = translate_ipp_error(status, message, operation="submit")
    assert (not error.is_permanent, error.code) == (transient, code)


def test_find_jobs_sees_a_finished_job_after_cupsd_unloaded_its_attributes(
    private_cups: PrivateCups, small_jpeg: Path
) -> None:
    import cups

    # given a job that printed, and a moment later cupsd keeps only its cached state in memory
    private_cups.add_printer("unloaded", media=PHOTO_MEDIA)
    backend = CupsBackend(queue="unloaded", server=private_cups.server)
    handle = backend.submit(path=small_jpeg, title="lab-job-777")
    connection = cups.Connection(*parse_server(private_cups.server))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cached = connection.getJobs(
            which_jobs="all", requested_attributes=["job-id", "job-state", "job-name"]
        )
        job = cached.get(int(handle))
        if job is not None and job.get("job-state") == 9 and "job-name" not in job:
            break
        time.sleep(0.2)
    else:
        pytest.fail("cupsd never unloaded the finished job's attributes")

    # then the reconciler still finds it by its title: a retry must not send it a second time
    assert [(j.handle, j.state) for j in backend.find_jobs(title_prefix="lab-job-777")] == [
        (handle, JobState.COMPLETED)
    ]
