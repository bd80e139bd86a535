"""What a real IPP printer does and Debian's ippeveprinter (CUPS 2.4.2) does not: give up on a job whose
document never came.

The CUPS ipp backend sends a job to a device as Create-Job, then Send-Document. A cupsd restart SIGKILLs the
backend, and when that lands between the two, the device holds a `pending-held` job (job-data-insufficient)
that nothing will ever complete. ippeveprinter advertises multiple-operation-time-out (60 s, action
abort-job) but never applies it: it takes one job at a time, so it answers every later Create-Job
server-error-busy ("The printer is in use.") for as long as it runs, and the CUPS queue in front of it waits
for ever. `IncompleteJobTimeout` applies the timeout from outside, through the device's own IPP Cancel-Job:
a harness device then behaves like a printer on a lab's network, and a test that restarts cupsd tests the
lab, not ippeveprinter's missing timer.

A minimal IPP/2.0 client (RFC 8010 encoding) over http.client does the two operations: Get-Jobs and
Cancel-Job.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

GET_JOBS = 0x000A
CANCEL_JOB = 0x0008
OPERATION_ATTRIBUTES = 0x01
JOB_ATTRIBUTES = 0x02
END_OF_ATTRIBUTES = 0x03
INTEGER, ENUM = 0x21, 0x23
KEYWORD, URI, CHARSET, LANGUAGE, NAME = 0x44, 0x45, 0x47, 0x48, 0x42
JOB_STATE_HELD = 4
# What ippeveprinter says of a job Create-Job made and no Send-Document followed. Not `job-incoming`: it says
# that while a document is still arriving, and a real printer does not time out a transfer in progress.
WAITING_FOR_DOCUMENT = "job-data-insufficient"


class IppDeviceError(RuntimeError):
    """The device did not answer, or answered with an IPP error status."""


@dataclass
class DeviceJob:
    job_id: int
    state: int
    reasons: list[str] = field(default_factory=list)

    @property
    def is_waiting_for_its_document(self) -> bool:
        return self.state == JOB_STATE_HELD and WAITING_FOR_DOCUMENT in self.reasons


def _attribute(tag: int, name: str, value: bytes) -> bytes:
    encoded = name.encode()
    return struct.pack(">BH", tag, len(encoded)) + encoded + struct.pack(">H", len(value)) + value


def _request(operation: int, printer_uri: str, extra: Iterable[bytes] = ()) -> bytes:
    return b"".join(
        [
            struct.pack(">BBHIB", 2, 0, operation, 1, OPERATION_ATTRIBUTES),
            _attribute(CHARSET, "attributes-charset", b"utf-8"),
            _attribute(LANGUAGE, "attributes-natural-language", b"en"),
            _attribute(URI, "printer-uri", printer_uri.encode()),
            _attribute(NAME, "requesting-user-name", b"harness"),
            *extra,
            bytes([END_OF_ATTRIBUTES]),
        ]
    )


def _post(port: int, body: bytes, *, timeout: float) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/ipp/print", body, {"Content-Type": "application/ipp"})
        response = connection.getresponse()
        answer = response.read()
    except OSError as error:
        raise IppDeviceError(f"device on port {port}: {error}") from error
    finally:
        connection.close()
    if response.status != 200 or len(answer) < 8:
        raise IppDeviceError(f"device on port {port}: HTTP {response.status}")
    status = struct.unpack(">H", answer[2:4])[0]
    if status >= 0x0100:
        raise IppDeviceError(f"device on port {port}: IPP status 0x{status:04x}")
    return answer


def _job_groups(answer: bytes) -> list[dict[str, list[bytes]]]:
    """The response's job-attributes groups, each as name -> raw values (additional values appended)."""
    groups: list[dict[str, list[bytes]]] = []
    current: dict[str, list[bytes]] | None = None
    offset, name = 8, ""
    while offset < len(answer):
        tag = answer[offset]
        offset += 1
        if tag == END_OF_ATTRIBUTES:
            break
        if tag < 0x10:  # a delimiter opens the next group
            current = {} if tag == JOB_ATTRIBUTES else None
            if current is not None:
                groups.append(current)
            continue
        (name_length,) = struct.unpack(">H", answer[offset : offset + 2])
        name = answer[offset + 2 : offset + 2 + name_length].decode() or name  # empty: another value
        offset += 2 + name_length
        (value_length,) = struct.unpack(">H", answer[offset : offset + 2])
        value = answer[offset + 2 : offset + 2 + value_length]
        offset += 2 + value_length
        if current is not None:
            current.setdefault(name, []).append(value)
    return groups


def device_jobs(port: int, *, timeout: float = 5.0) -> list[DeviceJob]:
    """The device's jobs that are not over (Get-Jobs which-jobs=not-completed)."""
    printer_uri = f"ipp://localhost:{port}/ipp/print"
    answer = _post(
        port,
        _request(
            GET_JOBS,
            printer_uri,
            [
                _attribute(KEYWORD, "which-jobs", b"not-completed"),
                _attribute(KEYWORD, "requested-attributes", b"job-id"),
                _attribute(KEYWORD, "", b"job-state"),
                _attribute(KEYWORD, "", b"job-state-reasons"),
            ],
        ),
        timeout=timeout,
    )
    jobs = []
    for group in _job_groups(answer):
        if "job-id" not in group or "job-state" not in group:
            continue
        jobs.append(
            DeviceJob(
                job_id=struct.unpack(">i", group["job-id"][0])[0],
                state=struct.unpack(">i", group["job-state"][0])[0],
                reasons=[value.decode() for value in group.get("job-state-reasons", [])],
            )
        )
    return jobs


def cancel_device_job(port: int, job_id: int, *, timeout: float = 5.0) -> None:
    printer_uri = f"ipp://localhost:{port}/ipp/print"
    _post(
        port,
        _request(CANCEL_JOB, printer_uri, [_attribute(INTEGER, "job-id", struct.pack(">i", job_id))]),
        timeout=timeout,
    )


def create_job_without_its_document(port: int, *, timeout: float = 5.0) -> int:
    """Create-Job and nothing after it: what a backend killed between its two requests leaves at a device."""
    answer = _post(
        port,
        _request(0x0005, f"ipp://localhost:{port}/ipp/print", [_attribute(NAME, "job-name", b"half-sent")]),
        timeout=timeout,
    )
    groups = _job_groups(answer)
    if not groups or "job-id" not in groups[0]:
        raise IppDeviceError(f"device on port {port}: Create-Job answered no job-id")
    return int(struct.unpack(">i", groups[0]["job-id"][0])[0])


class IncompleteJobTimeout:
    """A thread that cancels, at each device, a job still waiting for its document `seconds` after it was
    first seen so: the device's multiple-operation-time-out. `ports()` names the devices running now."""

    def __init__(
        self,
        ports: Callable[[], dict[str, int]],
        *,
        seconds: float,
        interval: float = 1.0,
        on_cancel: Callable[[str, int], None] = lambda name, job_id: None,
    ) -> None:
        self.ports = ports
        self.seconds = seconds
        self.interval = interval
        self.on_cancel = on_cancel
        self._first_seen: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ipp-device-timeout", daemon=True)

    def start(self) -> IncompleteJobTimeout:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def check(self) -> None:
        now = time.monotonic()
        waiting: set[tuple[str, int]] = set()
        for name, port in self.ports().items():
            with contextlib.suppress(IppDeviceError):  # a device being stopped or restarted by its test
                for job in device_jobs(port, timeout=2.0):
                    if not job.is_waiting_for_its_document:
                        continue
                    key = (name, job.job_id)
                    waiting.add(key)
                    if now - self._first_seen.setdefault(key, now) >= self.seconds:
                        cancel_device_job(port, job.job_id, timeout=2.0)
                        logger.info("device %s: job %s cancelled, its document never came", name, job.job_id)
                        self.on_cancel(name, job.job_id)
        self._first_seen = {key: seen for key, seen in self._first_seen.items() if key in waiting}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # a garbled answer or a device gone mid-read: the next round tries again
                logger.exception("ipp device timeout round failed")
