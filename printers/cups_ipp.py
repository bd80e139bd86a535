"""pycups connections to one CUPS server "host:port", the attribute values pycups answers, and pycups failures
as transient/permanent PrinterErrors (the facts behind each mapping are in printers/cups_backend.py)."""

from __future__ import annotations

import threading
from typing import Any

import cups

from printers import errors

DEFAULT_PORT = 631

# cups.setServer/setPort are process-global; the lock keeps two threads from mixing servers up while a
# connection is made. The host and port are also passed to Connection() so the connection keeps them.
_connection_lock = threading.Lock()

_TRANSIENT_STATUSES: dict[int, str] = {
    cups.IPP_STATUS_ERROR_SERVICE_UNAVAILABLE: errors.SERVER_BUSY,
    cups.IPP_STATUS_ERROR_BUSY: errors.SERVER_BUSY,
    cups.IPP_STATUS_ERROR_TEMPORARY: errors.SERVER_BUSY,
    cups.IPP_STATUS_ERROR_DEVICE: errors.PRINTER_UNREACHABLE,
    cups.IPP_STATUS_ERROR_NOT_ACCEPTING_JOBS: errors.PRINTER_NOT_ACCEPTING_JOBS,
    cups.IPP_STATUS_ERROR_TIMEOUT: errors.SERVER_BUSY,
    cups.IPP_STATUS_ERROR_INTERNAL: errors.IPP_ERROR,
}
_PERMANENT_STATUSES: dict[int, str] = {
    cups.IPP_STATUS_ERROR_DOCUMENT_FORMAT_NOT_SUPPORTED: errors.DOCUMENT_FORMAT_NOT_SUPPORTED,
    cups.IPP_STATUS_ERROR_DOCUMENT_FORMAT_ERROR: errors.DOCUMENT_FORMAT_NOT_SUPPORTED,
    cups.IPP_STATUS_ERROR_ATTRIBUTES_OR_VALUES: errors.ATTRIBUTES_NOT_SUPPORTED,
    cups.IPP_STATUS_ERROR_CONFLICTING: errors.ATTRIBUTES_NOT_SUPPORTED,
    cups.IPP_STATUS_ERROR_FORBIDDEN: errors.NOT_AUTHORIZED,
    cups.IPP_STATUS_ERROR_NOT_AUTHENTICATED: errors.NOT_AUTHORIZED,
    cups.IPP_STATUS_ERROR_NOT_AUTHORIZED: errors.NOT_AUTHORIZED,
    cups.IPP_STATUS_ERROR_CUPS_AUTHENTICATION_CANCELED: errors.NOT_AUTHORIZED,
    cups.IPP_STATUS_ERROR_PRINTER_IS_DEACTIVATED: errors.QUEUE_NOT_FOUND,
    cups.IPP_STATUS_ERROR_OPERATION_NOT_SUPPORTED: errors.IPP_ERROR,
    cups.IPP_STATUS_ERROR_VERSION_NOT_SUPPORTED: errors.IPP_ERROR,
    cups.IPP_STATUS_ERROR_MULTIPLE_JOBS_NOT_SUPPORTED: errors.IPP_ERROR,
    cups.IPP_STATUS_ERROR_JOB_CANCELED: errors.IPP_ERROR,
}


def parse_server(server: str) -> tuple[str, int]:
    """'host:port', 'host', '[::1]:631' -> (host, port); '' means libcups' default (CUPS_SERVER or local)."""
    server = server.strip()
    if not server:
        return cups.getServer(), cups.getPort()
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest.lstrip(":") or DEFAULT_PORT)
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port)
    return server, DEFAULT_PORT


def connect(*, server: str) -> cups.Connection:
    """A new pycups connection to `server`; raises TransientPrinterError when nothing answers."""
    host, port = parse_server(server)
    with _connection_lock:
        cups.setServer(host)
        cups.setPort(port)
        try:
            return cups.Connection(host=host, port=port)
        except RuntimeError as exc:
            raise errors.ServerSilentError(
                code=errors.PRINTER_UNREACHABLE,
                message=f"CUPS server {host}:{port} unreachable: {exc}",
                nothing_sent=True,  # no connection: no request was written
            ) from exc


def is_not_found(exc: cups.IPPError) -> bool:
    """The IPP answer says the object (job, queue, subscription) does not exist."""
    return ipp_error_parts(exc)[0] == cups.IPP_STATUS_ERROR_NOT_FOUND


def printer_error(exc: Exception, *, operation: str) -> errors.PrinterError:
    """A pycups failure as a PrinterError: IPP statuses by their meaning, a dropped connection transient."""
    if isinstance(exc, cups.IPPError):
        status, message = ipp_error_parts(exc)
        return translate_ipp_error(status, message, operation=operation)
    if isinstance(exc, cups.HTTPError):
        return errors.TransientPrinterError(
            code=errors.PRINTER_UNREACHABLE,
            message=f"CUPS answered HTTP {exc.args[0] if exc.args else '?'}",
        )
    return errors.ServerSilentError(code=errors.PRINTER_UNREACHABLE, message=f"CUPS {operation}: {exc}")


def optional_int(value: Any) -> int | None:
    # CUPS sends time-at-processing as the out-of-band value no-value until the job first processes;
    # pycups then gives None.
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def as_strings(value: Any) -> tuple[str, ...]:
    # pycups returns a bare string for a one-value attribute and a list for several.
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(item) for item in value)


def ipp_error_parts(exc: cups.IPPError) -> tuple[int, str]:
    status = int(exc.args[0]) if exc.args else cups.IPP_STATUS_ERROR_INTERNAL
    message = str(exc.args[1]) if len(exc.args) > 1 else cups.ippErrorString(status)
    return status, message


# libcups' httpStatus() text of HTTP 400, which it reports as the IPP error's message when the HTTP answer
# itself was 400 (cupsLastErrorString); an IPP response's message is its status-message or ippErrorString().
_HTTP_BAD_REQUEST = "Bad Request"
# What libcups reports when the server took the request and answered nothing until libcups gave up (about
# 60 s; measured on a SIGSTOPped cupsd): an internal error whose text is strerror(0), no IPP answer at all.
_NO_ANSWER = "Success"


def translate_ipp_error(status: int, message: str, *, operation: str) -> errors.PrinterError:
    text = f"CUPS {operation} failed: {message} (IPP status 0x{status:04x})"
    if status == cups.IPP_STATUS_ERROR_INTERNAL and message == _NO_ANSWER:
        # The server is silent (stalled: it takes connections and answers nothing), as good as unreachable.
        return errors.ServerSilentError(code=errors.PRINTER_UNREACHABLE, message=text)
    if status in _TRANSIENT_STATUSES:
        return errors.TransientPrinterError(code=_TRANSIENT_STATUSES[status], message=text)
    if status in _PERMANENT_STATUSES:
        return errors.PermanentPrinterError(code=_PERMANENT_STATUSES[status], message=text)
    if 0x0500 <= status <= 0x05FF:
        # Other server errors describe the server's condition, not our request.
        return errors.TransientPrinterError(code=errors.IPP_ERROR, message=text)
    if status == cups.IPP_STATUS_ERROR_BAD_REQUEST and message == _HTTP_BAD_REQUEST:
        # An HTTP-level 400, not an IPP answer (which says client-error-bad-request or cupsd's own reason):
        # cupsd answers it to a request it was still reading when it shut down (a restart mid-submit).
        # libcups wrote the request, so it is well-formed; the same request on a running cupsd goes through.
        return errors.TransientPrinterError(code=errors.PRINTER_UNREACHABLE, message=text)
    if status < 0x0400:
        # A failed call with a "successful" status: no IPP answer arrived at all (libcups kept the last
        # good status), e.g. cupsd stopped between Create-Job and Send-Document. Seen with pycups 2.0.4.
        return errors.ServerSilentError(code=errors.PRINTER_UNREACHABLE, message=text)
    return errors.PermanentPrinterError(code=errors.IPP_ERROR, message=text)
