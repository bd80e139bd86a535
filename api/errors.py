"""One error shape for the whole API: RFC 9457 problem+json with a stable `code`.

Domain errors, DRF's own errors (validation, auth, throttling) and 404s all come out the same way.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

from lab.lib.errors import DomainError

PROBLEM_CONTENT_TYPE = "application/problem+json"
_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "invalid_request",
}


class ProblemJSONRenderer(JSONRenderer):
    media_type = PROBLEM_CONTENT_TYPE


def problem_response(*, status_code: int, code: str, detail: str, **extra: Any) -> Response:
    body = {
        "type": f"https://printlab.example/problems/{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status_code,
        "code": code,
        "detail": detail,
        **extra,
    }
    response = Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)
    return response


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        problem = problem_response(status_code=exc.status, code=exc.code, detail=exc.message, **exc.details)
        if "retry_after_seconds" in exc.details:
            problem["Retry-After"] = str(exc.details["retry_after_seconds"])
        return problem
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["errors"] = response.data
        detail = "The request has invalid fields."
    else:
        detail = str(exc.detail)
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        extra["retry_after_seconds"] = int(wait)
    problem = problem_response(status_code=response.status_code, code=code, detail=detail, **extra)
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            problem[header] = response[header]
    return problem


# --- handler400/403/404/500 under /api/ (lab/urls.py): errors raised before a view, or outside DRF ---------


def _problem_page(*, status_code: int, code: str, detail: str) -> JsonResponse:
    # A plain JsonResponse: these run where DRF never negotiated content (middleware, URL routing).
    body = {
        "type": f"https://printlab.example/problems/{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status_code,
        "code": code,
        "detail": detail,
    }
    return JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's SuspiciousOperation family: a foreign Host header, a body or a form too big to parse."""
    if isinstance(exception, RequestDataTooBig):
        return _problem_page(
            status_code=413,
            code="request_too_large",
            detail="The request body is larger than this API accepts.",
        )
    if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        return _problem_page(
            status_code=400,
            code="too_many_fields",
            detail="The request has more form fields or files than allowed.",
        )
    if isinstance(exception, DisallowedHost):
        return _problem_page(
            status_code=400,
            code="disallowed_host",
            detail="The Host header names a host this server does not serve.",
        )
    return _problem_page(status_code=400, code="bad_request", detail="The request is malformed.")


def permission_denied_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _problem_page(status_code=403, code="permission_denied", detail="You may not do this.")


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _problem_page(status_code=404, code="not_found", detail="No such resource.")


def server_error_view(request: HttpRequest) -> JsonResponse:
    return _problem_page(
        status_code=500,
        code="server_error",
        detail="The server failed to answer; the response's X-Request-ID names it in the lab's logs.",
    )
