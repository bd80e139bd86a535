"""Helpers shared by the staff views: safe "next" redirects and running one service call per POST."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme

from lab.lib.errors import DomainError


def next_url(request: HttpRequest, default: str) -> str:
    """Where to go after a form: the posted `next` when it is a staff page on this site, else `default`."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if (
        candidate.startswith("/lab/")
        and not candidate.startswith("//")
        and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return candidate
    return default


def run_action(request: HttpRequest, action: Callable[[], str], *, default_next: str) -> HttpResponse:
    """Post/redirect/get around one service call; a refusal becomes an error message, nothing else."""
    try:
        success = action()
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, success)
    return HttpResponseRedirect(next_url(request, default_next))
