"""Picks the printer backend for a printer's configured kind and target.
The only place that knows which backend classes exist."""

from __future__ import annotations

from printers.base import PrinterBackend

KIND_CUPS = "cups"
KIND_HOTFOLDER = "hotfolder"
BACKEND_KINDS = (KIND_CUPS, KIND_HOTFOLDER)


def get_backend(*, kind: str, target: str, cups_server: str = "") -> PrinterBackend:
    """kind "cups": target is the CUPS queue name; kind "hotfolder": target is a folder path."""
    if not target:
        raise ValueError(f"printer backend {kind!r} needs a target")
    if kind == KIND_CUPS:
        # Imported here so that hot-folder-only installs never load libcups.
        from printers.cups_backend import CupsBackend

        return CupsBackend(queue=target, server=cups_server)
    if kind == KIND_HOTFOLDER:
        from printers.hotfolder import HotFolderBackend

        return HotFolderBackend(folder=target)
    raise ValueError(f"unknown printer backend kind {kind!r}; expected one of {', '.join(BACKEND_KINDS)}")
