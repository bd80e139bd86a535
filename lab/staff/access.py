"""The one access gate of the staff pages: who may open which page, and what everyone else gets.

Anonymous visitors are sent to the login page; a signed-in person without the page's role (a customer,
or staff in another role) gets the 403 page, never a redirect, so there is no login loop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import wraps
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect

from lab.accounts.roles import STAFF_ROLES, has_role, is_staff_member
from lab.staff.views.common import safe_next

ALL_STAFF = tuple(sorted(STAFF_ROLES))

View = TypeVar("View", bound=Callable[..., HttpResponse])


def _after_sign_in(request: HttpRequest) -> str:
    """Where the login page sends the person back to, or "" for the home page.

    Never the URL of a request a page made by itself or of a form: an htmx request (the board's poll) is a
    fragment with no page around it, so it is the page the person was on (htmx's HX-Current-URL, same-origin
    only); a POST's URL answers a GET with 405, so a form sent after the idle timeout goes home instead."""
    if getattr(request, "htmx", False):
        return safe_next(request, request.htmx.current_url_abs_path or "", "")  # type: ignore[attr-defined]
    if request.method not in ("GET", "HEAD"):
        return ""
    return request.get_full_path()


def login_redirect(request: HttpRequest) -> HttpResponse:
    after = _after_sign_in(request)
    url = reverse("staff:login")
    if after:
        url = f"{url}?{urlencode({'next': after})}"
    if getattr(request, "htmx", False):
        # A polled fragment must not swap the login form into the board: navigate the whole page.
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url)


def forbidden(request: HttpRequest, message: str = "") -> HttpResponse:
    return render(
        request,
        "staff/forbidden.html",
        {"message": message or "Your account cannot open this page."},
        status=403,
    )


def staff_page(*roles: str, is_passive: bool = False) -> Callable[[View], View]:
    """Open the view to the given roles only. A passive view (a polled fragment) is not user activity."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return login_redirect(request)
            if not is_staff_member(request.user) or not has_role(request.user, *roles):
                return forbidden(request)
            return view(request, *args, **kwargs)

        wrapper.staff_is_passive = is_passive  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def can(request: HttpRequest, roles: Collection[str]) -> bool:
    return has_role(request.user, *roles)
