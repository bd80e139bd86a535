"""Policy for every response under /lab/: idle sessions end, nothing is cached, only our own scripts run,
and a staff account changed outside the lab's tools (lab/accounts/seal.py) is refused and signed out.

The idle clock counts what a person does, not the board's polling, so a board left open still logs out; it
runs on the database's clock, like the session's own expiry (lab/accounts/sessions.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from lab.accounts.models import SecurityEvent
from lab.audit.records import request_meta
from lab.audit.staff_seal import REFUSAL_MESSAGE, staff_seal_check
from lab.lib.clock import database_now
from lab.staff.access import forbidden, login_redirect
from lab.staff.views.common import leads_to_the_photo_gate

STAFF_PREFIX = "/lab/"
LAST_ACTIVITY_KEY = "staff_last_activity"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def idle_seconds_allowed() -> int:
    return int(settings.SESSION_COOKIE_AGE)


def session_clock(request: HttpRequest) -> float:
    """Now, in seconds since the epoch, on the database's clock: as the session was read (no query), else
    asked. The idle timeout is written and judged on it, so a web host whose clock runs behind does not keep
    an idle person signed in (nor one ahead sign everyone out)."""
    read_at = getattr(request.session, "read_at", None)
    return (read_at or database_now()).timestamp()


class StaffPagesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(STAFF_PREFIX):
            # Shared terminals: the next person must not find order details in the back/forward cache.
            # A view that already said no-store (the audit gate: "no-store, private") keeps its words.
            if "no-store" not in response.get("Cache-Control", ""):
                response["Cache-Control"] = "no-store"
            response["Pragma"] = "no-cache"
            if "Content-Security-Policy" not in response:
                response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if not request.path.startswith(STAFF_PREFIX) or not request.user.is_authenticated:
            return None
        if not staff_seal_check(
            request.user,
            meta=request_meta(request),
            channel=SecurityEvent.Channel.STAFF_LOGIN,
        ):
            logout(request)
            return forbidden(request, REFUSAL_MESSAGE)
        now = session_clock(request)
        last_activity = request.session.get(LAST_ACTIVITY_KEY)
        if isinstance(last_activity, int | float) and now - last_activity > idle_seconds_allowed():
            logout(request)  # flushes the session and rotates its key
            messages.info(request, "Your session ended after a period of inactivity. Please sign in again.")
            if leads_to_the_photo_gate(request.path):
                # Never back to the gate after the sign-in: the request may be a link someone else wrote.
                return HttpResponseRedirect(reverse("staff:login"))
            return login_redirect(request)
        # Neither a passive view (the board's poll) nor a request another site started (a page loading lab
        # URLs in the background, refused at the gate) is the person's activity: either kept an unattended
        # terminal signed in for ever.
        started_elsewhere = request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site")
        if last_activity is None or not (getattr(view_func, "staff_is_passive", False) or started_elsewhere):
            request.session[LAST_ACTIVITY_KEY] = now
        return None
