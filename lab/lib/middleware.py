"""Request-scoped plumbing: forwarded headers, the client's address and a request id for logs and audits.

Forwarded headers and X-Request-ID are believed only from settings.TRUSTED_PROXIES; from anyone else they are
dropped before any other code reads them, and the request id is generated.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from lab.lib.client_ip import address_for_logs, client_ip, is_from_trusted_proxy
from lab.lib.log_format import escape_record_args

VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# What a client could say about where it came from, or how: only our proxies may say it.
FORWARDED_META_KEYS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_FORWARDED",
    "HTTP_X_REAL_IP",
    "HTTP_X_REQUEST_ID",
)
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_client_ip: contextvars.ContextVar[str] = contextvars.ContextVar("client_ip", default="-")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_from_trusted_proxy(request):
            for key in FORWARDED_META_KEYS:
                request.META.pop(key, None)
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        request_token = _request_id.set(request_id)
        address_token = _client_ip.set(address_for_logs(client_ip(request)))
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(request_token)
            _client_ip.reset(address_token)
        response["X-Request-ID"] = request_id
        return response


class RequestContextFilter(logging.Filter):
    """Gives every log record the request id and the client's network (address_for_logs) of its request ("-"
    outside one), and escapes the control characters of its string arguments (escape_for_log): a path with
    `%0A` in it wrote a line of the attacker's choosing after the lab's.

    Not those of Django's own response lines ("Not Found: %s"): django.utils.log.log_response has escaped its
    arguments already (unicode_escape: controls, backslashes and all non-ASCII), and a second layer wrote a
    path's `ü` as `\\\\xfc`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _logged_by_log_response(record):
            escape_record_args(record)
        # django.request logs a 4xx/5xx after the middleware returned, but hands over the request itself.
        request = getattr(record, "request", None)
        if isinstance(request, HttpRequest):
            record.request_id = getattr(request, "request_id", "-")
            record.client_ip = address_for_logs(client_ip(request))
        else:
            record.request_id = _request_id.get()
            record.client_ip = _client_ip.get()
        return True


def _logged_by_log_response(record: logging.LogRecord) -> bool:
    """Whether django.utils.log.log_response wrote `record`: a django.* logger's record whose extra is the
    response's status_code and the HttpRequest (runserver's django.server lines carry a socket as their
    request, and their arguments unescaped)."""
    return (
        (record.name == "django" or record.name.startswith("django."))
        and isinstance(getattr(record, "status_code", None), int)
        and isinstance(getattr(record, "request", None), HttpRequest)
    )
