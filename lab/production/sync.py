"""Import CUPS queues as printers: their media (sizes) and state; papers and resolution stay lab-managed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from lab.catalog.services import products_unprintable
from lab.production.models import JobEvent, Printer
from printers.cups_ipp import parse_server
from printers.cups_printers import list_queues
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
    one (queue `print`, which only the embedded run's worker consumes).

    A queue is this server's printer when one sends to the same queue on the same CUPS server (backend,
    server, target), never by name alone: two print hosts each with a queue `photo_small` are two printers.
    The first imported is `photo-small`; another server's queue of that name is named `photo-small-<host>`
    (the print host, or the server's host name without --host), so a sync of the second host never takes
    over the first one's printer (its jobs in flight would be read, and cancelled, at the wrong cupsd)."""
    created: list[str] = []
    updated: list[str] = []
    for queue in list_queues(server=server):
        sizes = sorted({_size(media) for media in queue.media_supported} - {""})
        with transaction.atomic():
            printer = _printer_of_queue(server=server, queue=queue.name)
            was_created = printer is None
            if printer is None:
                printer = Printer.objects.create(
                    name=_free_name(queue=queue.name, host=host, server=server),
                    backend=KIND_CUPS,
                    target=queue.name,
                    cups_server=server,
                    media_sizes=sizes,
                    papers=default_papers,
                    location=queue.device_uri[:200],
                    host=host,
                )
            else:
                printer.media_sizes = sizes
                fields = ["media_sizes"]
                if host and host != printer.host:
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


def _printer_of_queue(*, server: str, queue: str) -> Printer | None:
    """The printer that sends to `queue` on `server` (CUPS queue names are case-insensitive); a printer with
    no server of its own (settings.CUPS_SERVER) counts as that server's."""
    servers = [server, ""] if server == settings.CUPS_SERVER else [server]
    return (
        Printer.objects.select_for_update()
        .filter(backend=KIND_CUPS, cups_server__in=servers, target__iexact=queue)
        .order_by("-cups_server", "pk")  # the one naming the server, then the oldest
        .first()
    )


def _free_name(*, queue: str, host: str, server: str) -> str:
    """The queue's name as a printer name; when another printer (another server's queue of that name) has it,
    suffixed with the print host (or the server's host), then a number."""
    base = _slug(queue)
    where = _slug(host or (parse_server(server)[0] if server else "")) or "cups"
    candidates = [base, f"{base[: 63 - len(where[:30])]}-{where[:30]}"]
    for candidate in candidates:
        if not Printer.objects.filter(name=candidate).exists():
            return candidate
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = candidates[-1][: 64 - len(suffix)] + suffix
        if not Printer.objects.filter(name=candidate).exists():
            return candidate
        number += 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower().replace("_", "-")).strip("-")[:64]


def _size(media: str) -> str:
    try:
        return size_for_pwg_media(media).label
    except UnknownMediaError:
        return ""
