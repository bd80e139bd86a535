"""Sign-in, sign-out, the staff home page, the page of a refused form (CSRF) and the pages' own static files
(scripts and styles)."""

from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.contrib.auth import login, logout
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from lab.accounts.models import SecurityEvent
from lab.accounts.roles import AUDITOR_ROLES, BOARD_READER_ROLES, PACKING_ROLES, QC_ROLES, is_staff_member
from lab.accounts.signin import SignInAttempt, SignInLocked, sign_in
from lab.audit.records import request_meta
from lab.audit.staff_seal import REFUSAL_MESSAGE, staff_seal_check
from lab.lib.client_ip import client_ip
from lab.lib.errors import UpstreamError
from lab.staff.access import ALL_STAFF, can, forbidden, staff_page
from lab.staff.admin.site import is_lab_admin
from lab.staff.forms import LoginForm
from lab.staff.middleware import CONTENT_SECURITY_POLICY, LAST_ACTIVITY_KEY, session_clock
from lab.staff.views.common import next_url

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "staff"
# The only files served from STATIC_DIR, with their types: no directory listing, no path tricks.
ASSETS = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "staff.js": "text/javascript; charset=utf-8",
    "staff.css": "text/css; charset=utf-8",
}


@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    home = reverse("staff:home")
    if request.user.is_authenticated:
        if is_staff_member(request.user):
            return HttpResponseRedirect(next_url(request, home))
        return forbidden(request, "You are signed in with an account that cannot use the lab pages.")
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        attempt = SignInAttempt(
            email=form.cleaned_data["email"],
            client_ip=client_ip(request) or None,
            channel=SecurityEvent.Channel.STAFF_LOGIN,
        )
        try:
            user = sign_in(request=request, attempt=attempt, password=form.cleaned_data["password"])
        except SignInLocked as locked:
            minutes = max(1, round(locked.retry_after_seconds / 60))
            form.add_error(
                None,
                "Too many failed sign-ins for this account or from this computer. "
                f"Please wait about {minutes} minute{'s' if minutes != 1 else ''} and try again, "
                "or ask a supervisor.",
            )
            response = render(
                request, "staff/login.html", {"form": form, "next": next_url(request, "")}, status=429
            )
            response["Retry-After"] = str(locked.retry_after_seconds)
            return response
        except UpstreamError as unavailable:
            form.add_error(None, unavailable.message)
            return render(
                request, "staff/login.html", {"form": form, "next": next_url(request, "")}, status=503
            )
        if user is None:
            form.add_error(None, "The e-mail address or the password is not correct.")
            status = 401
        elif not is_staff_member(user):
            form.add_error(None, "This account cannot use the lab pages.")
            status = 403
        elif not staff_seal_check(
            user, meta=request_meta(request), channel=SecurityEvent.Channel.STAFF_LOGIN
        ):
            form.add_error(None, REFUSAL_MESSAGE)
            status = 403
        else:
            login(request, user)  # rotates the session key: no session fixation
            request.session[LAST_ACTIVITY_KEY] = session_clock(request)
            return HttpResponseRedirect(next_url(request, home))
    return render(request, "staff/login.html", {"form": form, "next": next_url(request, "")}, status=status)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)  # flushes the whole session, also for a customer who reached the 403 page
    messages.info(request, "You are signed out.")
    return HttpResponseRedirect(reverse("staff:login"))


# The API's problem+json for its generic refusal (api/errors.py: problem_page and ApiError.PERMISSION_DENIED);
# spelled out here because lab never imports the API. tests/staff/test_access.py holds the two to one shape.
_API_PREFIX = "/api/"
_API_PERMISSION_DENIED = "permission_denied"


def csrf_failure_view(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a form refused because its token is missing or out of date.

    A token goes out of date when the person signs in (or out) in another tab, which rotates it: a "Sign out"
    from an older page was refused with Django's own unstyled page and left a shared terminal signed in
    without saying so. This page is in the lab's look, says whether the person is still signed in, and
    carries a fresh sign-out form. Under /api/ the refusal is the API's problem+json. Django logs `reason`."""
    if request.path.startswith(_API_PREFIX):
        return JsonResponse(
            {
                "type": f"https://printlab.example/problems/{_API_PERMISSION_DENIED}",
                "title": _API_PERMISSION_DENIED.replace("_", " ").capitalize(),
                "status": 403,
                "code": _API_PERMISSION_DENIED,
                "detail": "The request's CSRF token is missing or out of date: a change in a session needs "
                "the X-CSRFToken header from the current csrftoken cookie.",
            },
            status=403,
            content_type="application/problem+json",
        )
    user = getattr(request, "user", None)
    response = render(
        request,
        "staff/csrf_failure.html",
        {
            "signed_in": bool(user is not None and user.is_authenticated),
            "signing_out": request.path == reverse("staff:logout"),
        },
        status=403,
    )
    # Under /lab/ StaffPagesMiddleware sets these too; a form elsewhere (the landing page) gets them here.
    response["Cache-Control"] = "no-store"
    response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


@staff_page(*ALL_STAFF)
@require_GET
def home_view(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "staff/home.html",
        {
            "can_read_board": can(request, BOARD_READER_ROLES),
            "can_pack": can(request, PACKING_ROLES),
            "can_qc": can(request, QC_ROLES),
            # The audit console and the admin have no other way in: a link to them from outside the lab's
            # own pages is refused (Sec-Fetch-Site), so the home page is where auditors and admins find them.
            "can_audit": can(request, AUDITOR_ROLES),
            "can_admin": is_lab_admin(request.user),
        },
    )


@require_GET
def asset_view(request: HttpRequest, name: str) -> HttpResponse:
    content_type = ASSETS.get(name)
    if content_type is None:
        raise Http404("no such asset")
    response = HttpResponse((STATIC_DIR / name).read_bytes(), content_type=content_type)
    return response
