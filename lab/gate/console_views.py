"""The auditor console: filtered records, per-employee summaries, anomalies, the review queue and exports.
Auditors and admins only; metadata only (no page here ever shows or returns a photo); nothing is cached.

Every page that shows log records first appends an ``audit.read`` record, and every export an
``audit.export`` record, so auditors' own reads are in the chain they read; if that write fails, the page
is refused (503), as the photo gate does. A request the browser says another site started is refused
before that (403), unrecorded, as at the photo gate: the auditor did not make it.

The forms are in ``console_forms``, the review queue's views in ``console_review_views`` and the exports in
``console_export_views``; the shared pieces (``auditor_page``, the read record, the warnings the record and
anomaly pages share with the queue) stay here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from lab.accounts.models import User
from lab.accounts.roles import AUDITOR_ROLES, has_role
from lab.audit.canonical import EXPORT_FIELDS
from lab.audit.models import ReviewItem
from lab.audit.records import request_meta
from lab.gate import selectors as audit_selectors
from lab.gate.anomalies import anomalies_find, shifts_changed_outside_the_lab, thresholds
from lab.gate.console_forms import RangeForm, RecordFilterForm, SummaryForm
from lab.gate.errors import GateError
from lab.gate.review import auditor_read_record, review_samples_not_in_log
from lab.gate.views import FOREIGN_FETCH_SITES, error_status
from lab.lib.errors import DomainError, PermissionDenied

logger = logging.getLogger(__name__)
View = TypeVar("View", bound=Callable[..., HttpResponseBase])
CONSOLE = "audit_console"
PAGE_SIZE = 50


def console_auditor(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


FROM_ANOTHER_SITE = PermissionDenied(
    GateError.REQUEST_FROM_ANOTHER_SITE,
    "This link was opened from outside the lab; open the audit console from the lab's own pages.",
)


def auditor_page(view: View) -> View:
    """Started by another site (Sec-Fetch-Site): 403, signed in or not, before anything is recorded. Else
    anonymous: to the login page. Signed in without the auditor or admin role: 403. Never cached.

    Each page writes an ``audit.read`` record in the auditor's name with the filters in its URL: a link in a
    chat or an e-mail (`?order_ref=…&action=<any text>`) wrote the link writer's words into the auditor's
    record. The login's `next` keeps no console query either (lab/staff/views/common.py)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response: HttpResponseBase
        if request.headers.get("Sec-Fetch-Site", "") in FOREIGN_FETCH_SITES:
            logger.info("audit console request started by another site refused path=%s", request.path)
            response = render(request, "audit/error.html", {"error": FROM_ANOTHER_SITE}, status=403)
        elif not request.user.is_authenticated:
            response = redirect_to_login(request.get_full_path())
        elif not has_role(request.user, *AUDITOR_ROLES):
            response = render(request, "audit/forbidden.html", status=403)
        else:
            try:
                response = view(request, *args, **kwargs)
            except DomainError as error:
                response = render(request, "audit/error.html", {"error": error}, status=error_status(error))
        response["Cache-Control"] = "no-store"
        return response

    return wrapper  # type: ignore[return-value]


def console_read(request: HttpRequest, *, page: str, query: str) -> None:
    auditor_read_record(
        user=console_auditor(request),
        meta=request_meta(request),
        context_type=CONSOLE,
        context_id=page,
        query=query[:500],
    )


def _query_without(request: HttpRequest, *names: str) -> str:
    params = request.GET.copy()
    for name in names:
        params.pop(name, None)
    return params.urlencode()


@auditor_page
@require_GET
def records_view(request: HttpRequest) -> HttpResponse:
    form = RecordFilterForm(request.GET)
    context: dict[str, Any] = {"form": form, "page": None}
    if form.is_valid():
        filters = form.record_filter()
        before, after = form.cleaned_data.get("before"), form.cleaned_data.get("after")
        cursor = f"&before={before}" if before else f"&after={after}" if after is not None else ""
        console_read(request, page="records", query=filters.as_query() + cursor)
        page = audit_selectors.records_page(filters=filters, before=before, after=after, limit=PAGE_SIZE)
        emails = audit_selectors.employee_emails(actor_ids=[record.actor_id for record in page.records])
        context.update(
            page=page,
            rows=[(record, emails.get(record.actor_id or "")) for record in page.records],
            base_query=_query_without(request, "before", "after"),
        )
    return render(request, "audit/records.html", context)


@auditor_page
@require_GET
def record_view(request: HttpRequest, seq: int) -> HttpResponse:
    if seq >= 2**63:  # no record has it (a bigint), and the read's own record would not hold it
        raise Http404
    console_read(request, page=f"record:{seq}", query="")
    record = audit_selectors.record_get(seq=seq)
    if record is None:
        raise Http404
    emails = audit_selectors.employee_emails(actor_ids=[record.actor_id])
    fields = [(name, getattr(record, name)) for name in EXPORT_FIELDS]
    reviews = list(record.reviews.select_related("reviewed_by").order_by("pk"))
    for item in reviews:
        item.record = record  # the items' days, for the samples the chain names
    not_in_log, names_no_record = audit_selectors.review_sign_offs_checked(items=reviews)
    sample_not_in_log = review_samples_not_in_log(items=reviews)
    warn_not_in_log(request, reviews, not_in_log, sample_not_in_log)
    return render(
        request,
        "audit/record.html",
        {
            "record": record,
            "fields": fields,
            "email": emails.get(record.actor_id or ""),
            "reviews": reviews,
            "not_in_log": not_in_log,
            "names_no_record": names_no_record,
            "sample_not_in_log": sample_not_in_log,
        },
    )


@auditor_page
@require_GET
def summary_view(request: HttpRequest) -> HttpResponse:
    form = SummaryForm(request.GET)
    context: dict[str, Any] = {"form": form, "summaries": None}
    if form.is_valid():
        data = form.cleaned_data
        console_read(request, page="summary", query=_range_query(data))
        context.update(
            since=data["since"],
            until=data["until"],
            summaries=audit_selectors.employee_summaries(
                since=data["since"], until=data["until"], actor_id=data["actor_id"]
            ),
        )
    return render(request, "audit/summary.html", context)


@auditor_page
@require_GET
def anomalies_view(request: HttpRequest) -> HttpResponse:
    form = RangeForm(request.GET)
    context: dict[str, Any] = {"form": form, "anomalies": None, "limits": thresholds()}
    if form.is_valid():
        data = form.cleaned_data
        console_read(request, page="anomalies", query=_range_query(data))
        found = anomalies_find(since=data["since"], until=data["until"], actor_id=data["actor_id"])
        warn_shifts_changed(request)
        emails = audit_selectors.employee_emails(actor_ids=[anomaly.actor_id for anomaly in found])
        context.update(
            since=data["since"],
            until=data["until"],
            anomalies=found,
            rows=[(anomaly, emails.get(anomaly.actor_id)) for anomaly in found],
        )
    return render(request, "audit/anomalies.html", context)


def _range_query(data: dict[str, Any]) -> str:
    parts = [f"since={data['since'].isoformat()}", f"until={data['until'].isoformat()}"]
    if data.get("actor_id"):
        parts.append(f"actor_id={data['actor_id']}")
    return "&".join(parts)


NOT_IN_LOG = "sign-off not in the log"
SAMPLE_NOT_IN_LOG = "sample not in the log"


SHIFTS_CHANGED = "shifts changed outside the lab"


def warn_shifts_changed(request: HttpRequest) -> None:
    """Shifts the table holds otherwise than the admin's recorded changes say: the `outside_shift` rule reads
    the table, so its flags of that person cannot be trusted."""
    changed = shifts_changed_outside_the_lab()
    emails = audit_selectors.employee_emails(actor_ids=changed) if changed else {}
    for person in changed:
        messages.warning(
            request,
            f"{emails.get(person, person)}: {SHIFTS_CHANGED}. The shifts in the table are not those the"
            " lab admin's recorded changes give: the outside_shift flags of this person cannot be trusted.",
        )


def warn_not_in_log(
    request: HttpRequest,
    items: list[ReviewItem],
    not_in_log: frozenset[int],
    sample_not_in_log: frozenset[int] = frozenset(),
) -> None:
    """A sign-off the chain does not hold was written in the table alone: shown as a warning, never as a
    review an auditor did. So is a 'sample' item no queued record of its day names: never as drawn at
    random."""
    for item in items:
        if item.pk in sample_not_in_log:
            messages.warning(
                request,
                f"Item {item.pk} (record {item.record_id}): {SAMPLE_NOT_IN_LOG}. The item says the record"
                " was drawn in its day's random sample, but no record of the day's queue names it: it was"
                " added to the table alone.",
            )
        if item.pk in not_in_log:
            messages.warning(
                request,
                f"Item {item.pk} (record {item.record_id}): {NOT_IN_LOG}. The item says it was signed off,"
                " but the chain holds no such sign-off: treat it as not reviewed.",
            )


@require_GET
def stylesheet_view(request: HttpRequest) -> HttpResponse:
    """The console's one stylesheet, served from here so the pages need no inline styles and no CDN."""
    response = render(request, "audit/console.css", content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response
