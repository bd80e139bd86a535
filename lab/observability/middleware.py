"""Request latency for /metrics: one histogram observation per response, labelled by route, not by URL."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from lab.lib.metrics import HTTP_REQUEST_SECONDS

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(request: HttpRequest) -> str:
    """The URL pattern's name (never the path: ids and order references would explode the series)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.view_name or match.route or "unnamed"


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUEST_SECONDS.labels(
            route=route_label(request), method=method, status_class=f"{response.status_code // 100}xx"
        ).observe(time.perf_counter() - started)
        return response
