"""Import CUPS queues as printers: their media (sizes) and state; papers and resolution stay lab-managed."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from lab.catalog.services import products_unprintable
from lab.production.models import JobEvent, Printer
from printers.cups_backend import list_queues
from printers.media import UnknownMediaError, size_for_pwg_media
from printers.registry import KIND_CUPS


@dataclass(frozen=True)
class SyncResult:
    created: list[str]
    updated: list[str]
    # Active products that no printer holds in size and paper after this sync: orders for them would wait.
    unprintable_products: list[str]


def printers_sync(*, server: str, default_papers: list[str], host: str = "") -> SyncResult:
    """host: the print host whose worker sends to these queues (`Printer.host`, queue `print.<host>`), set on
    every printer imported; empty leaves an existing printer's host as it is and creates printers without
    one (queue `print`, which only the embedded run's worker consumes)."""
    created: list[str] = []
    updated: list[str] = []
    for queue in list_queues(server=server):
        sizes = sorted({_size(media) for media in queue.media_supported} - {""})
        with transaction.atomic():
            printer, was_created = Printer.objects.get_or_create(
                name=queue.name.lower().replace("_", "-")[:64],
                defaults={
                    "backend": KIND_CUPS,
                    "target": queue.name,
                    "cups_server": server,
                    "media_sizes": sizes,
                    "papers": default_papers,
                    "location": queue.device_uri[:200],
                    "host": host,
                },
            )
            if not was_created:
                printer.media_sizes = sizes
                printer.target = queue.name
                printer.cups_server = server
                fields = ["media_sizes", "target", "cups_server"]
                if host:
                    printer.host = host
                    fields.append("host")
                printer.save(update_fields=fields)
            printer.state = str(queue.status.state)
            printer.state_reasons = list(queue.status.reasons)
            printer.save(update_fields=["state", "state_reasons"])
            JobEvent.objects.create(printer=printer, kind="printer_synced", note=",".join(sizes)[:500])
        (created if was_created else updated).append(printer.name)
    unprintable = products_unprintable(printers=list(Printer.objects.all()))
    return SyncResult(created=created, updated=updated, unprintable_products=unprintable)


def _size(media: str) -> str:
    try:
        return size_for_pwg_media(media).label
    except UnknownMediaError:
        return ""
