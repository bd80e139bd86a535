"""Remembering, for one round of calls (a poll round, a printer-events listener's step), the printer servers
that gave no answer: the poll's printer refreshes, restart checks and job reads, and the listener's, share
one so that a stalled server costs the round one call."""

from __future__ import annotations

from lab.production.backends import printer_server
from lab.production.models import Printer
from printers.errors import PrinterError, ServerSilentError
from printers.registry import backend_kind


class SilentServers:
    """The printer servers that did not answer during one round: the rest of the round asks them nothing.

    A stalled cupsd (one that takes connections and answers nothing) holds every call for libcups' own
    minute, and pycups offers no shorter timeout; a poll round made one call per printer and one per job,
    so a stalled server with five printers and twenty jobs held the `default` queue (releases, e-mail) for
    half an hour. Now it costs the round one call: the server's other printers are marked offline with the
    same error, and its jobs are read in the next round. A hot folder counts as a server of its own."""

    def __init__(self) -> None:
        self._silent: dict[tuple[str, str], PrinterError] = {}

    @staticmethod
    def _key(printer: Printer) -> tuple[str, str]:
        if backend_kind(printer.backend).target_is_folder:
            return printer.backend, printer.target
        return printer.backend, printer_server(printer)

    def error_for(self, printer: Printer) -> PrinterError | None:
        """The error the printer's server gave earlier in this round, if it did not answer."""
        return self._silent.get(self._key(printer))

    def heard(self, printer: Printer, error: PrinterError) -> None:
        """Remember the server when it gave no answer at all; an error about the printer or the request
        (a device error, a busy queue, an unknown job) says nothing about its other printers."""
        if isinstance(error, ServerSilentError):
            self._silent.setdefault(self._key(printer), error)
