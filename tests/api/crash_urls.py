"""The project's URLconf plus views that crash, to see what a 500 looks like under /api/ and /lab/."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from lab.urls import handler400, handler403, handler404, handler500
from lab.urls import urlpatterns as lab_urlpatterns


def crash(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug")


urlpatterns = [path("api/v1/crash", crash), path("lab/crash", crash), *lab_urlpatterns]
__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
