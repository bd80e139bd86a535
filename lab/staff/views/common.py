"""Helpers shared by the staff views: safe "next" redirects and running one service call per POST."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from urllib.parse import unquote

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme

from lab.lib.errors import DomainError

PHOTO_GATE_PREFIX = "/lab/photos"


def _as_a_browser_reads(url: str) -> str:
    return re.sub(r"[\t\r\n]", "", url).replace("\\", "/")


def leads_to_the_photo_gate(url: str) -> bool:
    """Whether a browser sent to `url` could reach the photo gate (/lab/photos/…), however it is spelled.

    Read as the browser and the server would: ASCII tabs and newlines dropped, backslashes made slashes, the
    query cut off, percent-escapes decoded (until nothing changes, so a double escape is refused too), runs
    of slashes merged (a proxy merges them), dot segments resolved; case ignored. Refusing too much only
    costs a redirect to the home page."""
    path = re.split(r"[?#]", _as_a_browser_reads(url), maxsplit=1)[0]
    for _ in range(5):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = posixpath.normpath(re.sub(r"/+", "/", _as_a_browser_reads(path)) or "/")
    path = path.casefold()
    return path == PHOTO_GATE_PREFIX or path.startswith(f"{PHOTO_GATE_PREFIX}/")


def next_url(request: HttpRequest, default: str) -> str:
    """Where to go after a form: the posted `next` when it is a staff page on this site, else `default`.

    Never the photo gate: a request there opens a grant and writes a view in the person's name, with the
    purpose and the words in its URL. A link someone else wrote (sent to a signed-out person, it lands on the
    login page with the gate as `next`) would otherwise be followed from the lab's own login form, as a
    same-origin request the gate cannot tell from the person's own."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if (
        candidate.startswith("/lab/")
        and not leads_to_the_photo_gate(candidate)
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
