"""/healthz (the process answers), /readyz (its dependencies answer) and /metrics (Prometheus, token only)."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from lab.lib.metrics import process_registry
from lab.observability.collectors import LabStateCollector
from lab.observability.readiness import readiness_checks, run_checks


@never_cache
@require_GET
def healthz_view(request: HttpRequest) -> JsonResponse:
    # Touches nothing outside this process: a load balancer restarts us on this, not on a database outage.
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz_view(request: HttpRequest) -> JsonResponse:
    results = run_checks(readiness_checks())
    is_ready = all(result.is_ok for result in results)
    return JsonResponse(
        {
            "status": "ok" if is_ready else "unavailable",
            "checks": {result.name: result.as_dict() for result in results},
        },
        status=200 if is_ready else 503,
    )


class _Recorded(Collector):
    """This service's recorded histograms and counters, next to the scrape-time gauges."""

    def collect(self) -> Any:
        return process_registry().collect()


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        # Off unless configured: say nothing about an endpoint nobody set up.
        return HttpResponse("Not Found", status=404, content_type="text/plain")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        response = HttpResponse("Unauthorized", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Recorded())
    registry.register(LabStateCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
