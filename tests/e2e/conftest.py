"""Fixtures for end-to-end production tests: one private CUPS with two IPP printers per session, a real
Celery worker per test against the test database and Redis (and the printer-events listener for the tests
that ask for it), Printer rows for the two queues; an IPP relay that stops a submission at a chosen step."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
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
from tests.support.ipp_gate import IppGate
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
        """Files the device `queue` kept so far for this test's jobs, under any title each was sent with (one
        a person gave up too). By job id: the devices live for the whole session, and a job of an earlier test
        that CUPS was sending when that test ended may land in its spool later. What CUPS still holds is not
        there yet: received_titles waits for it."""
        ours = self._job_ids()
        return [
            path
            for path in self.cups.received_files(queue)
            if path.name not in self.baseline[queue]
            and PrintJob.id_from_title(path.stem.partition("-")[2]) in ours
        ]

    def received_titles(self, queue: str) -> list[str]:
        """`lab-job-<pk>-<token>.<ext>` per received file (ippeveprinter: `<its number>-<title>`), once CUPS
        holds none of this test's jobs pending, held or processing: an order is done when the one CUPS job the
        lab tracks per print job is, and a second one still queued would reach the device after this count
        (or be cancelled unseen by the fixture's `cancel -a`)."""
        ours = self._job_ids()
        unfinished = self.cups.wait_jobs_over(lambda title: PrintJob.id_from_title(title) in ours)
        if unfinished:
            raise AssertionError(f"CUPS still holds jobs of this test's after 30 s: {unfinished}")
        return sorted(path.name.partition("-")[2] for path in self.received(queue))

    def _job_ids(self) -> set[int]:
        # The tables are emptied after each test: every print job in them is this test's.
        return set(PrintJob.objects.values_list("pk", flat=True))

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


@pytest.fixture
def ipp_gate(private_cups: PrivateCups) -> Iterator[IppGate]:
    gate = IppGate(upstream_port=private_cups.port).start()
    yield gate
    gate.stop()
