"""Fixtures for end-to-end production tests: one private CUPS with two IPP printers per session, a real
Celery worker per test against the test database and Redis (and the printer-events listener for the tests
that ask for it), Printer rows for the two queues; an IPP relay that stops a submission at a chosen step."""

from __future__ import annotations

import contextlib
import enum
import io
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from PIL import Image

from lab.production.models import Printer, PrintJob
from printers.registry import KIND_CUPS
from tests.support.celery_worker import CeleryWorker, database_url
from tests.support.cups import PrivateCups
from tests.support.printer_events import PrinterEventsListener

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Queue name -> PWG media the ippeveprinter advertises, and the lab's size labels for the Printer row.
PHOTO_QUEUE, LARGE_QUEUE = "photo", "large"
QUEUE_MEDIA = {
    PHOTO_QUEUE: (["na_index-4x6_4x6in", "na_5x7_5x7in"], ["4x6", "5x7"]),
    LARGE_QUEUE: (["na_govt-letter_8x10in"], ["8x10"]),
}
PAPERS = ["lustre", "glossy", "matte", "metallic"]


@pytest.fixture(scope="session")
def private_cups() -> Iterator[PrivateCups]:
    with PrivateCups() as cups_server:
        for queue, (media, _) in QUEUE_MEDIA.items():
            cups_server.add_printer(queue, media=media, media_ready=media)
        yield cups_server


@dataclass
class LabPrinters:
    """The two CUPS printers as Printer rows, and what each device received since the test began."""

    cups: PrivateCups
    photo: Printer
    large: Printer
    baseline: dict[str, set[str]] = field(default_factory=dict)
    killed_devices: set[str] = field(default_factory=set)

    def received(self, queue: str) -> list[Path]:
        """Files the device `queue` kept for this test's jobs (the devices live for the whole session, and a
        job of an earlier test that CUPS was sending when that test ended may land in its spool later)."""
        ours = {f"lab-job-{pk}" for pk in PrintJob.objects.values_list("pk", flat=True)}
        return [
            path
            for path in self.cups.received_files(queue)
            if path.name not in self.baseline[queue] and path.stem.partition("-")[2] in ours
        ]

    def received_titles(self, queue: str) -> list[str]:
        """`lab-job-<pk>.<ext>` per received file: ippeveprinter names them `<its job number>-<title>`."""
        return sorted(path.name.partition("-")[2] for path in self.received(queue))

    def kill_device(self, queue: str) -> None:
        self.killed_devices.add(queue)
        self.cups.kill_printer(queue)

    def restart_device(self, queue: str) -> None:
        self.cups.restart_printer(queue)
        self.killed_devices.discard(queue)


@pytest.fixture
def lab_printers(private_cups: PrivateCups, transactional_db: None) -> Iterator[LabPrinters]:
    rows = {
        queue: Printer.objects.create(
            name=queue,
            backend=KIND_CUPS,
            target=queue,
            cups_server=private_cups.server,
            media_sizes=sizes,
            papers=PAPERS,
            dpi=300,
        )
        for queue, (_, sizes) in QUEUE_MEDIA.items()
    }
    printers = LabPrinters(
        cups=private_cups,
        photo=rows[PHOTO_QUEUE],
        large=rows[LARGE_QUEUE],
        baseline={queue: {path.name for path in private_cups.received_files(queue)} for queue in QUEUE_MEDIA},
    )
    yield printers
    # The devices outlive the test: leave them running, enabled and with no job of ours pending.
    for queue in list(printers.killed_devices):
        printers.restart_device(queue)
    for queue in QUEUE_MEDIA:
        private_cups.enable(queue)
    cups_cancel_all(private_cups)


def cups_cancel_all(private_cups: PrivateCups) -> None:
    cancel = shutil.which("cancel") or "cancel"
    subprocess.run(
        [cancel, "-a"],
        env={**os.environ, "CUPS_SERVER": private_cups.server},
        capture_output=True,
        timeout=30,
        check=True,
    )


def app_env(private_cups: PrivateCups) -> dict[str, str]:
    """What a lab process of this test needs: the test database, Redis, blob store and the private CUPS."""
    broker_url = str(settings.CELERY_BROKER_URL)
    assert broker_url.startswith("redis://"), f"the e2e tests need Redis as the broker, not {broker_url}"
    return {
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": broker_url,
        "LAB_VAR_DIR": str(settings.VAR_DIR),
        "LAB_STORAGE_DIR": str(settings.MEDIA_ROOT),
        "HOTFOLDER_ROOT": str(settings.HOTFOLDER_ROOT),
        "CUPS_SERVER": private_cups.server,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def worker_unstarted(
    tmp_path: Path, private_cups: PrivateCups, transactional_db: None
) -> Iterator[CeleryWorker]:
    """A worker configured for this test's database, blob store and CUPS; the test starts it."""
    worker = CeleryWorker(work_dir=tmp_path / "worker", project_dir=PROJECT_DIR, env=app_env(private_cups))
    yield worker
    # Stopped before pytest-django truncates the tables the worker is using.
    worker.stop()


@pytest.fixture
def printer_events(
    tmp_path: Path, private_cups: PrivateCups, transactional_db: None
) -> Iterator[PrinterEventsListener]:
    """The printer-events listener for this test's database and CUPS; the test starts it."""
    listener = PrinterEventsListener(
        work_dir=tmp_path / "printer-events", env=app_env(private_cups), project_dir=PROJECT_DIR
    )
    yield listener
    listener.stop()


@pytest.fixture
def worker(worker_unstarted: CeleryWorker) -> CeleryWorker:
    return worker_unstarted.start(purge=True)


def png_bytes(width: int, height: int) -> bytes:
    """A flat PNG: tiny on disk, but the rasterizer must inflate every pixel (no shrink-on-load for PNG)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (180, 90, 60)).save(out, "PNG")
    return out.getvalue()


# --- A relay in front of cupsd that stops one job submission at a chosen step --------------------

# The start of an IPP request body (RFC 8010): version, operation id, request id, then the operation
# attributes group opening with attributes-charset. Observed on the wire from pycups' printFile: Get-Printer-
# Attributes twice, then Create-Job (0x0005), then Send-Document (0x0006) with the file, on one connection.
CREATE_JOB = re.compile(rb"[\x01\x02]\x00\x00\x05.{4}\x01\x47\x00\x12attributes-charset", re.DOTALL)
SEND_DOCUMENT = re.compile(rb"[\x01\x02]\x00\x00\x06.{4}\x01\x47\x00\x12attributes-charset", re.DOTALL)


class GateMode(enum.Enum):
    HOLD_CREATE_JOB = "hold_create_job"  # CUPS never hears of the job; the client waits for an answer
    SWALLOW_SEND_DOCUMENT_REPLY = "swallow_send_document_reply"  # CUPS gets the job; the client no answer
    HOLD_SEND_DOCUMENT = "hold_send_document"  # CUPS has the job (Create-Job) but never gets its document


class _Relay:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.is_swallowing = False

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class IppGate:
    """A TCP relay to cupsd. Armed, it stops the next job submission that passes at one step, so a test
    can SIGKILL the worker at exactly that point; everything else (polls, queries) passes untouched."""

    def __init__(self, *, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.tripped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._mode: GateMode | None = None
        self._relays: list[_Relay] = []
        self._held: _Relay | None = None
        self._is_open = True

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> IppGate:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def arm(self, mode: GateMode) -> None:
        with self._lock:
            self._mode = mode
            self.tripped.clear()

    def release(self) -> None:
        """Drop the held connection: whatever the server did not get by now, it never gets."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            held.close()

    def stop(self) -> None:
        self._is_open = False
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            relays, self._relays = self._relays, []
        for relay in relays:
            relay.close()

    def _accept(self) -> None:
        while self._is_open:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()  # cupsd is down: the client sees its connection refused, as without the relay
                continue
            relay = _Relay(client, upstream)
            with self._lock:
                self._relays.append(relay)
            threading.Thread(target=self._client_to_server, args=(relay,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(relay,), daemon=True).start()

    def _trip(self, relay: _Relay, pattern: re.Pattern[bytes], window: bytes, mode: GateMode) -> bool:
        with self._lock:
            if self._mode is not mode or not pattern.search(window):
                return False
            self._mode = None
            self._held = relay
        self.tripped.set()
        return True

    def _client_to_server(self, relay: _Relay) -> None:
        tail = b""
        while True:
            try:
                data = relay.client.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    relay.upstream.shutdown(socket.SHUT_WR)
                return
            window = tail + data
            if self._trip(relay, CREATE_JOB, window, GateMode.HOLD_CREATE_JOB):
                return  # nothing more reaches cupsd; release() closes both ends
            if self._trip(relay, SEND_DOCUMENT, window, GateMode.HOLD_SEND_DOCUMENT):
                return
            if self._trip(relay, SEND_DOCUMENT, window, GateMode.SWALLOW_SEND_DOCUMENT_REPLY):
                relay.is_swallowing = True
            try:
                relay.upstream.sendall(data)
            except OSError:
                return
            tail = window[-64:]

    def _server_to_client(self, relay: _Relay) -> None:
        while True:
            try:
                data = relay.upstream.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    relay.client.shutdown(socket.SHUT_WR)
                return
            if relay.is_swallowing:
                continue
            try:
                relay.client.sendall(data)
            except OSError:
                return


@pytest.fixture
def ipp_gate(private_cups: PrivateCups) -> Iterator[IppGate]:
    gate = IppGate(upstream_port=private_cups.port).start()
    yield gate
    gate.stop()
