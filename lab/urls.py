"""Top-level routes: the customer API under /api/v1/, staff pages under /lab/, the landing page at /.

Errors Django raises outside a view answer problem+json under /api/ and an HTML page everywhere else.
"""

from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.urls import include, path
from django.views import defaults

from api import errors as api_errors
from lab.observability.views import healthz_view, metrics_view, readyz_view
from lab.staff.admin.site import admin_static_view
from lab.staff.admin.site import register_all as lab_admin_site
from lab.staff.middleware import CONTENT_SECURITY_POLICY
from lab.staff.views.public import landing_view

urlpatterns = [
    path("api/v1/", include(("api.urls", "api"), namespace="api")),
    path("lab/photos/", include("lab.gate.urls")),
    path("healthz", healthz_view, name="health"),
    path("readyz", readyz_view, name="ready"),
    path("metrics", metrics_view, name="metrics"),
    path("lab/audit/", include("lab.gate.console_urls")),
    path("lab/admin/", lab_admin_site().urls),
    path("static/admin/<path:path>", admin_static_view, name="admin-static"),
    path("lab/", include("lab.staff.urls")),
    path("", landing_view, name="landing"),
]


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _page(response: HttpResponse) -> HttpResponse:
    # The staff pages' look and scripts; under /lab/ StaffPagesMiddleware sets this already.
    response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_errors.bad_request_view(request, exception)
    return _page(defaults.bad_request(request, exception))


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_errors.permission_denied_view(request, exception)
    return _page(defaults.permission_denied(request, exception))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_errors.not_found_view(request, exception)
    return _page(defaults.page_not_found(request, exception))


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return api_errors.server_error_view(request)
    if api_errors.database_unavailable():
        page = HttpResponse(loader.get_template("503.html").render(), status=503)
        page["Retry-After"] = str(api_errors.DATABASE_RETRY_AFTER_SECONDS)
        return _page(page)
    return _page(defaults.server_error(request))


handler400 = bad_request
handler403 = permission_denied
handler404 = page_not_found
handler500 = server_error
