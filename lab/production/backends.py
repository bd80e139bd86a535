"""Glue between Printer rows and the `printers` package: which backend object serves a printer."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from lab.production.models import Printer
from printers.base import JobInfo, PrinterBackend
from printers.media import pwg_media_for_size
from printers.registry import backend_kind, get_backend


def backend_for(printer: Printer) -> PrinterBackend:
    return get_backend(
        kind=printer.backend, target=printer_target(printer), cups_server=printer_server(printer)
    )


def copies_titled(backend: PrinterBackend, title: str) -> list[JobInfo]:
    """The printer's jobs titled exactly `title`: the copies of one job that reached it (`find_jobs` matches a
    prefix, and one job's title may begin another's)."""
    return [found for found in backend.find_jobs(title_prefix=title) if found.title == title]


def printer_target(printer: Printer) -> str:
    """The printer's target as its backend takes it: a relative hot folder lies under HOTFOLDER_ROOT."""
    target = printer.target
    if backend_kind(printer.backend).target_is_folder and not Path(target).is_absolute():
        target = str(Path(settings.HOTFOLDER_ROOT) / target)
    return target


def printer_server(printer: Printer) -> str:
    """The CUPS server of the printer's queue ("host:port"; empty: libcups' default)."""
    return printer.cups_server or settings.CUPS_SERVER


def media_for(size_label: str) -> str:
    short, _, long = size_label.partition("x")
    return pwg_media_for_size(width_inches=short, height_inches=long)
