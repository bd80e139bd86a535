"""Glue between Printer rows and the `printers` package: which backend object serves a printer, and where a
hot folder may lie (strictly under HOTFOLDER_ROOT)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings

from lab.production.models import Printer
from printers.base import JobInfo, PrinterBackend, PrinterStatus, ServerEvents
from printers.errors import TransientPrinterError
from printers.media import pwg_media_for_size
from printers.registry import backend_kind, get_backend

# The code of a printer whose folder target the lab refuses (PrinterTargetRefused).
PRINTER_TARGET_REFUSED = "printer_target_refused"


class PrinterTargetRefused(TransientPrinterError):
    """A hot-folder target that does not lie strictly under HOTFOLDER_ROOT once resolved (an absolute path
    elsewhere, a `..`, a symlink out): the lab writes decrypted rasters nowhere else and erases nothing there
    (the discard sweep erases files by their names alone, and a vault shard's blobs have the same shape).
    Transient, with nothing sent: whoever meets it treats the printer as not answering, and the job waits or
    is failed for a person, never lost; it holds until a lab admin gives the printer a folder under the root.
    """

    def __init__(self, *, target: str) -> None:
        # Not the path itself in the message (logged, shown on the board): the printer's row says it.
        super().__init__(
            code=PRINTER_TARGET_REFUSED,
            message="the printer's hot folder does not lie under HOTFOLDER_ROOT; nothing is written or erased"
            " there",
            nothing_sent=True,
        )
        self.target = target


def backend_for(printer: Printer) -> PrinterBackend:
    """The printer's backend; for a refused target (PrinterTargetRefused) one whose every call raises that
    error, so each caller takes the printer for one that does not answer, as it already handles those."""
    try:
        target = printer_target(printer)
    except PrinterTargetRefused as refused:
        return _RefusedDestination(refused)
    return get_backend(kind=printer.backend, target=target, cups_server=printer_server(printer))


def copies_titled(backend: PrinterBackend, title: str) -> list[JobInfo]:
    """The printer's jobs titled exactly `title`: the copies of one job that reached it (`find_jobs` matches a
    prefix, and one job's title may begin another's)."""
    return [found for found in backend.find_jobs(title_prefix=title) if found.title == title]


def printer_target(printer: Printer) -> str:
    """The printer's target as its backend takes it; a hot folder's is resolved (HOTFOLDER_ROOT/target, an
    absolute target as it is) and must lie strictly under the resolved HOTFOLDER_ROOT, else
    PrinterTargetRefused."""
    return folder_target_check(backend=printer.backend, target=printer.target)


def folder_target_check(*, backend: str, target: str) -> str:
    """`target` as a printer of kind `backend` takes it: a folder kind's resolved (symlinks and `..` followed:
    os.path.realpath) and refused (PrinterTargetRefused) unless it lies strictly under the resolved
    HOTFOLDER_ROOT; another kind's as it is. The admin's form checks a target with it before it is saved."""
    if not target or not backend_kind(backend).target_is_folder:
        return target  # an empty one: the registry says what it needs
    root = Path(os.path.realpath(settings.HOTFOLDER_ROOT))
    folder = Path(os.path.realpath(Path(settings.HOTFOLDER_ROOT) / target))  # an absolute target replaces
    if folder == root or not folder.is_relative_to(root):
        raise PrinterTargetRefused(target=target)
    return str(folder)


def printer_server(printer: Printer) -> str:
    """The CUPS server of the printer's queue ("host:port"; empty: libcups' default)."""
    return printer.cups_server or settings.CUPS_SERVER


def media_for(size_label: str) -> str:
    short, _, long = size_label.partition("x")
    return pwg_media_for_size(width_inches=short, height_inches=long)


class _RefusedDestination(PrinterBackend):
    """The backend of a printer whose target is refused: nothing is read, written or erased; every call
    raises the refusal (a TransientPrinterError with nothing sent)."""

    def __init__(self, refused: PrinterTargetRefused) -> None:
        self.refused = refused

    def __repr__(self) -> str:
        return "RefusedDestination()"

    def _refuse(self) -> PrinterTargetRefused:
        return PrinterTargetRefused(target=self.refused.target)

    def submit(
        self,
        *,
        path: Path,
        title: str,
        media: str = "",
        copies: int = 1,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        raise self._refuse()

    def job_info(self, handle: str) -> JobInfo:
        raise self._refuse()

    def cancel(self, handle: str) -> None:
        raise self._refuse()

    def printer_status(self) -> PrinterStatus:
        raise self._refuse()

    def server_events(self, *, watch: int | None, after: int) -> ServerEvents:
        raise self._refuse()

    def find_jobs(self, *, title_prefix: str) -> list[JobInfo]:
        raise self._refuse()

    def jobs_holding_documents(self, *, title_prefix: str) -> list[JobInfo]:
        raise self._refuse()

    def unfinished_sends_discard(self, *, older_than: float) -> int:
        raise self._refuse()

    def discard_document(self, handle: str) -> bool:
        raise self._refuse()
