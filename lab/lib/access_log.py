"""gunicorn's logs as the lab's own lines (`gunicorn.conf.py`, `logger_class`): ids, never personal data.

The access log writes the client's network for its address (the peer's address is personal data when no proxy
stands in front, the embedded run, and logs outlive an erasure: lab.lib.client_ip.address_for_logs), every
value a client wrote with its control characters escaped (a path's `%0A` decodes to a newline, which wrote a
forged line after the lab's: escape_for_log), and as the request id only the one the lab's middleware accepted
and answered with (`-` when the lab did not answer: a client's own X-Request-ID is its words, not an id).

gunicorn's error log refuses a malformed request with its text and the peer's address ("Invalid request from
ip=…: Invalid HTTP request line: '<the line>'"): it is written with the peer's network and the kind of error
only; a request an error ended is named by its path, without its query string.
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Any

from gunicorn.glogging import Logger

from lab.lib.client_ip import address_for_logs
from lab.lib.log_format import escape_for_log
from lab.lib.middleware import VALID_REQUEST_ID

_INVALID_REQUEST = re.compile(r"Invalid request from ip=(?P<ip>[^ ]*): (?P<error>.*)", re.DOTALL)
_ERROR_HANDLING_REQUEST = "Error handling request "
_ERROR_KIND = re.compile(r"[A-Za-z][A-Za-z ]{0,80}")


def _accepted_request_id(resp: Any) -> str:
    headers = getattr(resp, "headers", None) or []
    for name, value in headers.items() if hasattr(headers, "items") else headers:
        if str(name).lower() == "x-request-id" and VALID_REQUEST_ID.match(str(value)):
            return str(value)
    return "-"


def _readable_path(path: str) -> str:
    """PATH_INFO is the path's bytes as Latin-1 (PEP 3333): shown as UTF-8 where it is, escaped. A byte that
    is not UTF-8 (`%FF`) is written `\\xff` by escape_for_log (surrogateescape), once: a typed backslash is
    doubled (`%5Cxff` is `\\\\xff`), so the two are told apart (backslashreplace wrote both as
    `\\\\xff`)."""
    with contextlib.suppress(UnicodeEncodeError):
        path = path.encode("latin-1").decode("utf-8", "surrogateescape")
    return escape_for_log(path)


def _error_kind(text: str) -> str:
    """The exception being handled by its class name, else the text's words before the first ':' (gunicorn's
    messages put what it refused after it)."""
    error = sys.exc_info()[1]
    if error is not None:
        return type(error).__name__
    match = _ERROR_KIND.match(text.partition(":")[0])
    return match.group().strip() if match else "-"


def _path_only(uri: Any) -> str:
    return escape_for_log(str(uri).partition("?")[0].partition("#")[0])


class AccessLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        atoms["h"] = address_for_logs(str(atoms["h"]))
        for key, value in atoms.items():
            if isinstance(value, str):
                atoms[key] = escape_for_log(value)
        if isinstance(environ.get("PATH_INFO"), str):
            atoms["U"] = _readable_path(environ["PATH_INFO"])
        request_id = _accepted_request_id(resp)
        atoms["{x-request-id}i"] = atoms["{x-request-id}o"] = request_id
        return atoms

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not args and isinstance(msg, str) and (invalid := _INVALID_REQUEST.fullmatch(msg)):
            super().warning(
                "Invalid request from %s: %s", address_for_logs(invalid["ip"]), _error_kind(invalid["error"])
            )
            return
        super().warning(msg, *_escaped(args), **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith(_ERROR_HANDLING_REQUEST) and args:
            # "Error handling request %s %s" (method, uri) or "… %s" (uri): the uri is the last one
            args = (*_escaped(args[:-1]), _path_only(args[-1]))
            super().exception(msg, *args, **kwargs)
            return
        super().exception(msg, *_escaped(args), **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().error(msg, *_escaped(args), **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().info(msg, *_escaped(args), **kwargs)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().debug(msg, *_escaped(args), **kwargs)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().critical(msg, *_escaped(args), **kwargs)


def _escaped(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(escape_for_log(value) if isinstance(value, str) else value for value in args)
