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

ALL_STAFF = tuple(sorted(STAFF_ROLES))

View = TypeVar("View", bound=Callable[..., HttpResponse])


def login_redirect(request: HttpRequest) -> HttpResponse:
    url = f"{reverse('staff:login')}?{urlencode({'next': request.get_full_path()})}"
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
