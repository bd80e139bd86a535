"""Production's system check: hot-folder printers whose target the lab refuses (not strictly under
HOTFOLDER_ROOT once resolved), which are sent nothing and whose submitted jobs wait for a lab admin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Warning
from django.db import DatabaseError

from lab.production.backends import PrinterTargetRefused, printer_target
from lab.production.models import Printer


def printers_with_a_refused_target(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """A lab upgraded with a hot folder that is a symlink out of HOTFOLDER_ROOT, an absolute folder outside
    it, or the root itself had that printer refused (backends.folder_target_check): nothing is sent there,
    its submitted jobs stay submitted, their cancels fail and their orders' erasure waits, and nothing named
    the cause. A warning (as catalog.W001: `migrate` runs it, an error would stop the upgrade); asked only
    with a database, silent while it cannot be read."""
    if not databases or "default" not in databases:
        return []
    try:
        printers = list(Printer.objects.order_by("pk"))
    except DatabaseError:
        return []
    refused = []
    for printer in printers:
        try:
            printer_target(printer)
        except PrinterTargetRefused:
            refused.append(f"{printer.name} (id {printer.pk})")
    if not refused:
        return []
    return [
        Warning(
            f"{len(refused)} hot-folder printer(s) have a folder that does not lie strictly under"
            " HOTFOLDER_ROOT (a symlink out of it, a folder outside it, or the root itself):"
            f" {', '.join(refused)}. The lab sends them nothing, and their submitted jobs stay submitted.",
            hint="Bind-mount the share under HOTFOLDER_ROOT, or give the printer a folder under it in the lab"
            ' admin (with jobs there, tick "Move it all the same": they go to unknown for a person to'
            " count).",
            id="production.W001",
        )
    ]
