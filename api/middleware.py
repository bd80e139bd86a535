"""Limits the API enforces before any view runs: a non-multipart body above DATA_UPLOAD_MAX_MEMORY_SIZE.

Django checks that limit only when code reads `request.body`; DRF's parsers read the stream instead, so a huge
JSON or form body would otherwise be read whole. Photos come as multipart, limited by ASSET_MAX_BYTES.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

API_PREFIX = "/api/"


class ApiRequestLimitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX) and _body_too_large(request):
            # Answered by handler400 (lab/urls.py) as a 413 problem+json, like Django's own check.
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        return self.get_response(request)


def _body_too_large(request: HttpRequest) -> bool:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None or request.content_type == "multipart/form-data":
        return False
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False  # Django answers a malformed Content-Length itself
    return length > limit
