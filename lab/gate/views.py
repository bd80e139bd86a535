"""Staff image view: the only HTTP endpoint that returns customer photo bytes to an employee.

A request names purpose, context and justification; the gate decides and opens a short-lived grant, and the
answer is a redirect to the same photo under that grant (`?grant=<id>`), which serves the bytes only while
the grant lives — reloading the page after it expired is refused, a new view needs a new request. Anything
else under /lab/photos/ (unknown variant or path, another method) is refused and recorded. Every response
is `Cache-Control: no-store`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import resolve_url
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt

from lab.accounts.models import User
from lab.audit.records import request_meta
from lab.gate.access import image_grant_open, image_grant_view, image_request_refuse
from lab.gate.errors import GateError
from lab.gate.rules import AccessRequest
from lab.lib.errors import (
    Conflict,
    DomainError,
    Gone,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    Unavailable,
    UpstreamError,
)

logger = logging.getLogger(__name__)

# The status of each kind of refusal on the lab's own pages; the first kind an error is an instance of wins.
# Mapped by kind here because lab never imports api/ (whose table maps every code, and agrees on the gate's:
# tests/api/test_error_codes.py).
STATUS_BY_KIND: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Gone, 410),
    (MethodNotAllowed, 405),
    (PermissionDenied, 403),
    (Conflict, 409),
    (Unavailable, 503),
    (UpstreamError, 502),
)


def error_status(error: DomainError) -> int:
    """The status of a refusal on the lab's own pages (this one and the auditor console): its kind's."""
    return next((status for kind, status in STATUS_BY_KIND if isinstance(error, kind)), 400)


def _problem(error: DomainError) -> HttpResponse:
    body = {"code": error.code, "detail": error.message, **error.details}
    response = JsonResponse(body, status=error_status(error))
    if isinstance(error, MethodNotAllowed):
        response["Allow"] = "GET"  # a 405 names the methods that are served (RFC 9110)
    return response


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store, private"
    return response


# A request the browser says another site started (a link in a chat or an e-mail, an <img> on another page):
# the signed-in person did not ask for it, so it opens no grant and writes no record in their name (a link
# could otherwise put "personal curiosity" on a technician's record, or a flagged refusal). Browsers send
# Sec-Fetch-Site on every request; the lab's own pages are `same-origin`, a typed or bookmarked URL `none`.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})
# The one value a GET that changes something (opens a grant, marks a slip printed) is taken from: the lab's
# own page. `none` is also a link another application handed the browser (a desktop chat or mail client,
# xdg-open), which no one at the lab wrote. A request without the header (an old browser, a script) is
# taken as before.
LAB_FETCH_SITE = "same-origin"


def started_outside_the_lab(request: HttpRequest) -> bool:
    """Whether the browser says this request did not come from one of the lab's own pages."""
    site = request.headers.get("Sec-Fetch-Site")
    return site is not None and site != LAB_FETCH_SITE


def _from_another_site(request: HttpRequest, *, signed_in: bool = False) -> HttpResponse | None:
    """Signed out, only a request another site started is refused here (`none` goes on to sign in, which
    never leads back to the gate); signed in, anything not from the lab's own pages."""
    site = request.headers.get("Sec-Fetch-Site", "")
    if not (site in FOREIGN_FETCH_SITES or (signed_in and started_outside_the_lab(request))):
        return None
    logger.info("gate request started by another site refused path=%s", request.path)
    return _no_store(
        _problem(
            PermissionDenied(
                GateError.REQUEST_FROM_ANOTHER_SITE,
                "This photo link was opened from outside the lab; open it from the lab's own pages.",
            )
        )
    )


def _gate_request(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Who may reach the gate at all. A request another site started is turned away first, unrecorded and
    signed in or not: the person did not make it. Anyone else anonymous goes to the login page, unrecorded,
    and without this URL as `next` (nor is it ever one: lab/staff/views/common.py), so that a link someone
    else wrote does not become, after the sign-in, a same-origin request that opens a grant in their name.
    Signed in, a request from outside the lab's pages (`none`: a link a desktop application handed over) is
    turned away too."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if (foreign := _from_another_site(request)) is not None:
            return foreign
        if not request.user.is_authenticated:
            return _no_store(HttpResponseRedirect(resolve_url(settings.LOGIN_URL)))
        if (outside := _from_another_site(request, signed_in=True)) is not None:
            return outside
        return view(request, *args, **kwargs)

    return wrapper


# CSRF-exempt so that a POST (or any other method) reaches the gate and is recorded as refused, instead of
# being turned away unrecorded by the CSRF check; no method but GET ever gets further.
@csrf_exempt
@_gate_request
def staff_photo(request: HttpRequest, asset_id: str, variant: str) -> HttpResponse:
    assert isinstance(request.user, User)
    meta = request_meta(request)
    try:
        if request.method != "GET":
            image_request_refuse(
                user=request.user,
                path=request.path,
                rule="method_not_allowed",
                meta=meta,
                refusal=GateError.IMAGE_METHOD_NOT_ALLOWED,
            )
        grant_id = request.GET.get("grant")
        if grant_id is None:
            access = AccessRequest(
                asset_id=asset_id,
                purpose=request.GET.get("purpose", ""),
                justification=request.GET.get("justification", ""),
                context_type=request.GET.get("context_type", ""),
                context_id=request.GET.get("context_id", ""),
                variant=variant,
            )
            grant = image_grant_open(user=request.user, request=access, meta=meta)
            response: HttpResponse = HttpResponseRedirect(
                f"{request.path}?{urlencode({'grant': str(grant.pk)})}"
            )
            response.status_code = 303  # See Other: the browser fetches the grant's URL with GET
            return _no_store(response)
        delivery = image_grant_view(
            user=request.user, asset_id=asset_id, grant_id=grant_id, variant=variant, meta=meta
        )
    except DomainError as error:
        return _no_store(_problem(error))
    response = HttpResponse(delivery.data, content_type=delivery.content_type)
    response["X-Audit-Seq"] = str(delivery.audit_seq)
    # `download` is shown in the tab as `full` is, never an attachment: a file saved on the shared station
    # stays in its Downloads folder past the grant, past the order and past the customer's erasure.
    return _no_store(response)


@csrf_exempt
@_gate_request
def staff_photo_unknown(request: HttpRequest, rest: str) -> HttpResponse:
    """Every other path under /lab/photos/: no photo, but the attempt is on the record."""
    assert isinstance(request.user, User)
    try:
        image_request_refuse(
            user=request.user, path=request.path, rule="unknown_path", meta=request_meta(request)
        )
    except DomainError as error:
        return _no_store(_problem(error))
