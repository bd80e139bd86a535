"""Top-level routes: the customer API under /api/v1/, staff pages under /lab/."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("api/v1/", include(("api.urls", "api"), namespace="api")),
    path("lab/photos/", include("lab.audit.urls")),
    path("healthz", health, name="health"),
    path("lab/audit/", include("lab.audit.console_urls")),
    path("lab/", include("lab.staff.urls")),
]

handler404 = "api.errors.not_found_view"
