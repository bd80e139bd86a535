"""Helpers shared by the staff views: safe "next" redirects and running one service call per POST."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from urllib.parse import quote, unquote

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme

from lab.lib.errors import DomainError

PHOTO_GATE_PREFIX = "/lab/photos"
AUDIT_CONSOLE_PREFIX = "/lab/audit"
PACKING_STATION_PREFIX = "/lab/packing"


def _as_a_browser_reads(url: str) -> str:
    return re.sub(r"[\t\r\n]", "", url).replace("\\", "/")


def _path_as_served(url: str) -> str:
    """The path a browser sent to `url` reaches, as the server routes it: ASCII tabs and newlines dropped,
    backslashes made slashes, the query and fragment cut off, percent-escapes decoded (until nothing changes,
    so a double escape counts too), runs of slashes merged (a proxy merges them), dot segments resolved."""
    path = re.split(r"[?#]", _as_a_browser_reads(url), maxsplit=1)[0]
    for _ in range(5):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return posixpath.normpath(re.sub(r"/+", "/", _as_a_browser_reads(path)) or "/")


def _is_under(path: str, prefix: str) -> bool:
    path = path.casefold()
    return path == prefix or path.startswith(f"{prefix}/")


def leads_to_the_photo_gate(url: str) -> bool:
    """Whether a browser sent to `url` could reach the photo gate (/lab/photos/…), however it is spelled
    (read as `_path_as_served` reads it; case ignored). Refusing too much only costs a redirect to the home
    page."""
    return _is_under(_path_as_served(url), PHOTO_GATE_PREFIX)


def leads_to_a_slip(url: str) -> bool:
    """Whether a browser sent to `url` could reach a packing slip PDF (the day's, /lab/packing/slips.pdf, or
    an order's, /lab/packing/<ref>/slip.pdf): any PDF under the station, read as `_path_as_served` reads it,
    case ignored. Refusing too much only costs a redirect to the station."""
    path = _path_as_served(url).casefold()
    return _is_under(path, PACKING_STATION_PREFIX) and path.endswith(".pdf")


def _without_its_query(url: str) -> str:
    """`url`'s path as served, with no query or fragment: re-escaped, so that a decoded `%3F` stays in it."""
    path = _path_as_served(url)
    raw_path = re.split(r"[?#]", _as_a_browser_reads(url), maxsplit=1)[0]
    trailing = "/" if raw_path.endswith("/") and path != "/" else ""
    return quote(path + trailing, safe="/")


def next_url(request: HttpRequest, default: str) -> str:
    """Where to go after a form: the posted `next` when it is a staff page on this site, else `default`.

    Never the photo gate: a request there opens a grant and writes a view in the person's name, with the
    purpose and the words in its URL. A link someone else wrote (sent to a signed-out person, it lands on the
    login page with the gate as `next`) would otherwise be followed from the lab's own login form, as a
    same-origin request the gate cannot tell from the person's own. An auditor-console page is a `next`
    without its query: each page writes an `audit.read` record in the auditor's name with the query's
    filters, which a link someone else wrote would otherwise choose. Nor a packing slip: serving one marks
    its orders' addresses as on paper (`slip_served_at`), which a slip link another site opened must not do
    (views/packing.py `_started_by_another_site`); followed from the login form it would be same-origin too,
    so the person lands on the packing station, where the slips are printed."""
    return safe_next(request, request.POST.get("next") or request.GET.get("next") or "", default)


def safe_next(request: HttpRequest, candidate: str, default: str) -> str:
    """`candidate` as next_url would follow it (the same checks), else `default`."""
    if (
        candidate.startswith("/lab/")
        and not leads_to_the_photo_gate(candidate)
        and not candidate.startswith("//")
        and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        if _is_under(_path_as_served(candidate), AUDIT_CONSOLE_PREFIX):
            return _without_its_query(candidate)
        if leads_to_a_slip(candidate):
            return f"{PACKING_STATION_PREFIX}/"
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
