"""Printer backend errors: one exception family that says whether retrying can help.
Callers retry a transient error with backoff and fail the job on a permanent one; `code` is stable."""

from __future__ import annotations


class PrinterError(Exception):
    """A backend operation failed; `code` is a stable machine code, `is_permanent` decides retries.
    `nothing_sent`: the backend knows that no part of the request reached the print server (the connection
    was refused; the server refused to create the job), so a submit may be sent again without looking for
    an earlier copy. False when it cannot tell: an answer lost after the request went out."""

    is_permanent: bool = False

    def __init__(self, *, code: str, message: str, nothing_sent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.nothing_sent = nothing_sent

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class TransientPrinterError(PrinterError):
    """The same request may succeed later (printer or server unreachable, busy, not accepting jobs)."""

    is_permanent = False


class ServerSilentError(TransientPrinterError):
    """The server itself gave no answer: it refused the connection, dropped it, or took the request and said
    nothing until the client gave up (a stalled cupsd: about a minute). Nothing is known about the printer
    or the request; a caller may stop asking the same server for a while. (A printer-level error that
    shares the code, such as a device error the server reports, is a plain TransientPrinterError.)"""


class PermanentPrinterError(PrinterError):
    """Retrying the same request cannot succeed (unknown queue or job, unsupported format or option)."""

    is_permanent = True


# Stable codes used by more than one backend; backend-specific codes are documented where raised.
PRINTER_UNREACHABLE = "printer_unreachable"
SERVER_BUSY = "server_busy"
PRINTER_NOT_ACCEPTING_JOBS = "printer_not_accepting_jobs"
QUEUE_NOT_FOUND = "queue_not_found"
JOB_NOT_FOUND = "job_not_found"
JOB_NOT_CANCELABLE = "job_not_cancelable"
JOB_NOT_OVER = "job_not_over"  # its document cannot be discarded yet
DOCUMENT_FORMAT_NOT_SUPPORTED = "document_format_not_supported"
ATTRIBUTES_NOT_SUPPORTED = "attributes_not_supported"
NOT_AUTHORIZED = "not_authorized"
FILE_NOT_FOUND = "file_not_found"
INVALID_REQUEST = "invalid_request"
IPP_ERROR = "ipp_error"
