"""A CUPS queue's state as our four printer states, and queue discovery for `printers_sync`
(the facts behind the mapping are in printers/cups_backend.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cups

from printers import errors
from printers.base import PrinterState, PrinterStatus
from printers.cups_ipp import as_strings, connect, printer_error

PRINTER_ATTRIBUTES = [
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "printer-is-accepting-jobs",
    "media-supported",
    "media-ready",
    "device-uri",
]

# IPP printer-state-reasons (suffix stripped) that mean CUPS cannot reach the device.
_OFFLINE_REASONS = frozenset(
    {"offline", "connecting-to-device", "shutdown", "timed-out", "device-unreachable"}
)

# CUPS 2.4.2's ipp backend reports an unreachable device only as printer-state-message (no reason), so
# these English messages (we ask for "en") become the derived reason DEVICE_UNREACHABLE_REASON.
DEVICE_UNREACHABLE_REASON = "device-unreachable"
_UNREACHABLE_MESSAGES = (
    "The printer may not exist or is unavailable at this time.",
    "The printer is unreachable at this time.",
    "The printer is not responding.",
    "Unable to locate printer",
    "Unable to connect to printer",
)

# CUPS stops a queue itself when its backend fails (exit status stop, or ErrorPolicy stop-printer, the
# default, on a failure): cupsdSetPrinterState(STOPPED) always adds the reason `paused`, as a person's
# cupsdisable does, and the printer-state-message is the backend's last ERROR line (scheduler/job.c
# finalize_job, CUPS 2.4.9). A person's pause says "Paused" (stop_printer, no -r) or their own -r reason. So a
# stopped queue whose message is one of these English backend failures (we ask for "en"), or that carries an
# `-error` reason, is in error, not paused: its jobs are rerouted and it is alerted. A stop whose backend left
# no ERROR line (the message is then cleared) or another text still reads as paused; alerts.py alerts a queue
# paused at its server but not by the lab after ALERT_PRINTER_ERROR_MINUTES, so it is not left unseen.
_BACKEND_FAULT_MESSAGES = (
    "The printer configuration is incorrect or the printer no longer exists.",
    "Printer stopped due to backend errors",
    "Unable to open print file",
    "Unable to open device file",
    "Unable to write print data",
    "Unable to read print data",
    "Unable to start backend process.",
    "Unable to get backend exit status.",
    "Unable to get printer status.",
    "Unable to add document to print job.",
    "Unable to cancel print job.",
    "Print job was not accepted.",
    "Print job too large.",
    "Printer cannot print supplied content.",
    "Printer cannot print with supplied options.",
    "Remote host did not accept",
    "IP address is not allowed as hostname",
    "Unknown encryption option value",
    "Unknown version option value",
)


@dataclass(frozen=True)
class QueueInfo:
    """One CUPS queue as `printers_sync` needs it."""

    name: str
    device_uri: str
    status: PrinterStatus
    is_accepting_jobs: bool

    @property
    def media_supported(self) -> tuple[str, ...]:
        return self.status.media_supported


def list_queues(*, server: str) -> list[QueueInfo]:
    """Every queue on the server with device URI, status and media-supported, sorted by name."""
    connection = connect(server=server)
    try:
        printers = connection.getPrinters()
        queues = []
        for name in sorted(printers):
            attributes = dict(printers[name])
            with contextlib.suppress(cups.IPPError):
                attributes.update(
                    connection.getPrinterAttributes(name, requested_attributes=PRINTER_ATTRIBUTES)
                )
            queues.append(
                QueueInfo(
                    name=name,
                    device_uri=str(attributes.get("device-uri", "")),
                    status=printer_status_from_attributes(attributes),
                    is_accepting_jobs=bool(attributes.get("printer-is-accepting-jobs", True)),
                )
            )
        return queues
    except cups.IPPError as exc:
        raise printer_error(exc, operation="list queues") from exc
    except (RuntimeError, cups.HTTPError) as exc:
        raise errors.TransientPrinterError(code=errors.PRINTER_UNREACHABLE, message=str(exc)) from exc


def printer_status_from_attributes(attributes: Mapping[str, Any]) -> PrinterStatus:
    """Map IPP printer-state / printer-state-reasons / printer-is-accepting-jobs to our four states."""
    reasons = tuple(
        reason for reason in as_strings(attributes.get("printer-state-reasons")) if reason != "none"
    )
    message = str(attributes.get("printer-state-message", ""))
    if message.startswith(_UNREACHABLE_MESSAGES):
        reasons = (*reasons, DEVICE_UNREACHABLE_REASON)
    bare_reasons = {_strip_severity(reason) for reason in reasons}
    printer_state = int(attributes.get("printer-state", 3))
    is_accepting_jobs = bool(attributes.get("printer-is-accepting-jobs", True))
    if bare_reasons & _OFFLINE_REASONS:
        state = PrinterState.OFFLINE
    elif printer_state == 5:
        stopped_by_fault = (
            "paused" not in bare_reasons
            or any(reason.endswith("-error") for reason in reasons)
            or message.startswith(_BACKEND_FAULT_MESSAGES)
        )
        state = PrinterState.ERROR if stopped_by_fault else PrinterState.PAUSED
    elif not is_accepting_jobs:
        state = PrinterState.PAUSED
    elif any(reason.endswith("-error") for reason in reasons):
        state = PrinterState.ERROR
    else:
        state = PrinterState.ONLINE
    return PrinterStatus(
        state=state,
        reasons=reasons,
        message=message,
        media_supported=as_strings(attributes.get("media-supported")),
        media_ready=as_strings(attributes.get("media-ready")),
    )


def _strip_severity(reason: str) -> str:
    for suffix in ("-error", "-warning", "-report"):
        if reason.endswith(suffix):
            return reason[: -len(suffix)]
    return reason
