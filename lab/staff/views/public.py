"""The pages anyone may open: the landing page at `/`.

Server-rendered with the staff pages' look and Content-Security-Policy (no inline script or style).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from lab.staff.middleware import CONTENT_SECURITY_POLICY


@require_GET
def landing_view(request: HttpRequest) -> HttpResponse:
    response = render(
        request,
        "staff/landing.html",
        {
            "lab_name": settings.LAB_NAME,
            "lab_contact": settings.LAB_CONTACT,
            "docs_url": reverse("api:docs"),
            "login_url": reverse("staff:login"),
        },
    )
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
