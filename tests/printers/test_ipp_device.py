"""The harness's devices give up on a job whose document never came, as a real printer does after its
multiple-operation-time-out; ippeveprinter alone never does and then refuses every other job
(tests/support/ipp_device.py). A cupsd restart that kills the ipp backend between Create-Job and
Send-Document leaves exactly such a job: without the timeout the queue waits for ever."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from printers.base import JobState
from printers.cups_backend import CupsBackend
from tests.printers.conftest import PHOTO_MEDIA
from tests.support.cups import PrivateCups
from tests.support.ipp_device import IppDeviceError, create_job_without_its_document, device_jobs
from tests.support.ipp_gate import GateMode, IppGate


@pytest.fixture
def untimed_cups() -> Iterator[PrivateCups]:
    with PrivateCups(device_document_timeout=None) as cups_server:
        yield cups_server


@pytest.fixture
def timed_cups() -> Iterator[PrivateCups]:
    with PrivateCups(device_document_timeout=1.0) as cups_server:
        yield cups_server


def test_ippeveprinter_alone_keeps_a_job_without_its_document_and_refuses_every_other(
    untimed_cups: PrivateCups,
) -> None:
    untimed_cups.add_printer("wedged", media=PHOTO_MEDIA)
    port = untimed_cups.device_port("wedged")

    job_id = create_job_without_its_document(port)
    time.sleep(3)

    [job] = device_jobs(port)
    assert (job.job_id, job.is_waiting_for_its_document) == (job_id, True)
    with pytest.raises(IppDeviceError, match="0x0507"):  # server-error-busy: "The printer is in use."
        create_job_without_its_document(port)


def test_a_job_without_its_document_is_given_up_and_the_queue_prints_again(
    timed_cups: PrivateCups, small_jpeg: Path
) -> None:
    timed_cups.add_printer("freed", media=PHOTO_MEDIA)
    port = timed_cups.device_port("freed")
    create_job_without_its_document(port)

    # when CUPS sends its next job to the wedged device
    backend = CupsBackend(queue="freed", server=timed_cups.server)
    handle = backend.submit(path=small_jpeg, title="after-the-half-sent-one")

    # then the device gives the half-sent job up and prints the next one, once
    deadline = time.monotonic() + 30
    while backend.job_info(handle).state is not JobState.COMPLETED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert backend.job_info(handle).state is JobState.COMPLETED
    assert device_jobs(port) == []
    assert len(timed_cups.received_files("freed")) == 1
    log = (timed_cups.directory / "printers" / "freed" / "ippeveprinter.log").read_text()
    assert "cancelled after 1 s without its document" in log


def _until(condition: Callable[[], bool], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_a_cupsd_restart_between_create_job_and_send_document_leaves_no_device_wedged(
    timed_cups: PrivateCups, small_jpeg: Path
) -> None:
    """What the e2e cupsd-restart test met on a loaded machine: the restart SIGKILLs the ipp backend after the
    device created the job and before its document went out. CUPS sends the job again after the restart."""
    timed_cups.add_printer("cut", media=PHOTO_MEDIA)
    port = timed_cups.device_port("cut")
    gate = IppGate(upstream_port=port).start()
    try:
        gate.arm(GateMode.HOLD_SEND_DOCUMENT)
        timed_cups.set_device_uri("cut", f"ipp://127.0.0.1:{gate.server.split(':')[1]}/ipp/print")
        backend = CupsBackend(queue="cut", server=timed_cups.server)
        handle = backend.submit(path=small_jpeg, title="cut-off-at-the-device")
        assert gate.tripped.wait(30), "the ipp backend sent its Send-Document to the device"
        assert [job.is_waiting_for_its_document for job in device_jobs(port)] == [True]

        # when cupsd restarts there (the backend is SIGKILLed; the device keeps its half-sent job)
        timed_cups.restart_cupsd()
        gate.release()

        # then the device gives the half-sent job up and CUPS's send after the restart prints, once
        assert _until(lambda: backend.job_info(handle).state is JobState.COMPLETED, timeout=45)
        assert len(timed_cups.received_files("cut")) == 1
        assert "without its document" in timed_cups.device_log("cut")
    finally:
        gate.stop()
