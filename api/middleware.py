"""Limits the API enforces before any view runs: a non-multipart body above DATA_UPLOAD_MAX_MEMORY_SIZE, and
a multipart one (a photo upload) above ASSET_MAX_BYTES plus room for its other fields.

Django checks that limit only when code reads `request.body`; DRF's parsers read the stream instead, so a huge
JSON or form body would otherwise be read whole. A multipart body Django's upload handler reads whole (held in
memory since lab/settings.py FILE_UPLOAD_HANDLERS; Django's default streamed it to temporary files), counting
only its non-file fields: a photo upload's size was checked after all of it had been read, so one anonymous
request could fill the web host's disk, now its memory.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from api.errors import ApiError, problem_page
from lab.lib.errors import CommonError
from lab.lib.requests import MALFORMED_CONTENT_TYPE

API_PREFIX = "/api/"


class ApiRequestLimitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            if request.content_type == MALFORMED_CONTENT_TYPE:
                return problem_page(
                    code=ApiError.MALFORMED_CONTENT_TYPE, detail="The Content-Type header cannot be parsed."
                )
            if request.content_type == "multipart/form-data":
                if _length(request) > settings.ASSET_MAX_BYTES + MULTIPART_FIELDS_ROOM:
                    return problem_page(code=CommonError.FILE_TOO_LARGE, detail="The file is too large.")
            elif _body_too_large(request):
                # Answered by handler400 (lab/urls.py) as a 413 problem+json, like Django's own check.
                raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        return self.get_response(request)


# What a photo upload's body holds besides the photo: boundaries, part headers, the checksum fields.
MULTIPART_FIELDS_ROOM = 64 * 1024


def _length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # Django answers a malformed Content-Length itself


def _body_too_large(request: HttpRequest) -> bool:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return limit is not None and _length(request) > limit
