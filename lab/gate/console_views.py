"""The auditor console: filtered records, per-employee summaries, anomalies, the review queue and exports.
Auditors and admins only; metadata only (no page here ever shows or returns a photo); nothing is cached.

Every page that shows log records first appends an ``audit.read`` record, and every export an
``audit.export`` record, so auditors' own reads are in the chain they read; if that write fails, the page
is refused (503), as the photo gate does. A request the browser says another site started is refused
before that (403), unrecorded, as at the photo gate: the auditor did not make it.
"""

from __future__ import annotations

import csv
import datetime
import logging
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from lab.accounts.models import User
from lab.accounts.roles import AUDITOR_ROLES, has_role, primary_role
from lab.audit.canonical import EXPORT_FIELDS
from lab.audit.configured import public_key
from lab.audit.export import audit_export
from lab.audit.keys import public_key_fingerprint
from lab.audit.models import Outcome, Purpose, ReviewItem
from lab.audit.records import request_meta
from lab.audit.verify import checkpoints_path
from lab.gate import selectors as audit_selectors
from lab.gate.anomalies import anomalies_find, shifts_changed_outside_the_lab, thresholds
from lab.gate.errors import GateError
from lab.gate.review import (
    auditor_read_record,
    lab_today,
    review_build,
    review_queued_items_missing,
    review_samples_not_in_log,
    review_sign_off,
)
from lab.gate.views import FOREIGN_FETCH_SITES, error_status
from lab.lib.calendar import OUT_OF_SPAN, day_in_span, moment_in_span
from lab.lib.errors import DomainError, PermissionDenied

logger = logging.getLogger(__name__)
View = TypeVar("View", bound=Callable[..., HttpResponseBase])
CONSOLE = "audit_console"
PAGE_SIZE = 50
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def _moment_field() -> forms.DateTimeField:
    """A time in the lab's time zone, typed in the browser's own date-time picker."""
    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    return forms.DateTimeField(required=False, input_formats=DATETIME_FORMATS, widget=widget)


def _auditor(request: HttpRequest) -> User:
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


def _read(request: HttpRequest, *, page: str, query: str) -> None:
    auditor_read_record(
        user=_auditor(request),
        meta=request_meta(request),
        context_type=CONSOLE,
        context_id=page,
        query=query[:500],
    )


def _employee_field() -> forms.CharField:
    widget = forms.TextInput(attrs={"placeholder": "work e-mail or public id"})
    return forms.CharField(required=False, max_length=254, widget=widget)


class RangeForm(forms.Form):
    since = _moment_field()
    until = _moment_field()
    employee = _employee_field()

    default_days = 1
    max_range = audit_selectors.MAX_ANOMALY_RANGE

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not all(moment_in_span(data[name]) for name in ("since", "until") if data.get(name)):
            raise forms.ValidationError(OUT_OF_SPAN)
        until = data.get("until") or timezone.now()
        since = data.get("since") or until - timedelta(days=self.default_days)
        if since >= until:
            raise forms.ValidationError("The start must be before the end.")
        if until - since > self.max_range:
            raise forms.ValidationError(f"At most {self.max_range.days} days at a time.")
        data["since"], data["until"] = since, until
        employee = (data.get("employee") or "").strip()
        data["actor_id"] = audit_selectors.actor_id_for(employee=employee) if employee else None
        return data


class SummaryForm(RangeForm):
    default_days = 7
    max_range = audit_selectors.MAX_SUMMARY_RANGE


class RecordFilterForm(forms.Form):
    employee = _employee_field()
    order_ref = forms.CharField(required=False, max_length=32)
    asset_id = forms.CharField(required=False, max_length=64)
    purpose = forms.ChoiceField(required=False, choices=[("", "any"), *Purpose.choices])
    outcome = forms.ChoiceField(required=False, choices=[("", "any"), *Outcome.choices])
    action = forms.CharField(required=False, max_length=64)
    since = _moment_field()
    until = _moment_field()
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def record_filter(self) -> audit_selectors.RecordFilter:
        data = self.cleaned_data
        employee = (data.get("employee") or "").strip()

        def text(name: str) -> str | None:
            return (data.get(name) or "").strip() or None

        return audit_selectors.RecordFilter(
            actor_id=audit_selectors.actor_id_for(employee=employee) if employee else None,
            order_ref=text("order_ref"),
            asset_id=text("asset_id"),
            purpose=text("purpose"),
            outcome=text("outcome"),
            action=text("action"),
            since=data.get("since"),
            until=data.get("until"),
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
        _read(request, page="records", query=filters.as_query() + cursor)
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
    _read(request, page=f"record:{seq}", query="")
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
    _warn_not_in_log(request, reviews, not_in_log, sample_not_in_log)
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
        _read(request, page="summary", query=_range_query(data))
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
        _read(request, page="anomalies", query=_range_query(data))
        found = anomalies_find(since=data["since"], until=data["until"], actor_id=data["actor_id"])
        _warn_shifts_changed(request)
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


@auditor_page
@require_GET
def review_view(request: HttpRequest) -> HttpResponse:
    is_open = request.GET.get("state", "open") != "done"
    after = request.GET.get("after", "")
    after_id = int(after) if after.isascii() and after.isdigit() and len(after) < 19 else None
    _read(request, page="review", query=f"state={'open' if is_open else 'done'}&after={after_id or ''}")
    page = audit_selectors.review_items_page(is_open=is_open, after_id=after_id, limit=PAGE_SIZE)
    sample_not_in_log = review_samples_not_in_log(items=page.items)
    _warn_not_in_log(request, page.items, page.not_in_log, sample_not_in_log)
    _warn_items_missing(request)
    _warn_shifts_changed(request)
    emails = audit_selectors.employee_emails(actor_ids=[item.record.actor_id for item in page.items])
    return render(
        request,
        "audit/review.html",
        {
            "page": page,
            "rows": [(item, emails.get(item.record.actor_id or "")) for item in page.items],
            "is_open": is_open,
            "sample_not_in_log": sample_not_in_log,
            # The lab's yesterday on the database's clock: a web host's own clock and UTC could name a day
            # that is not over yet where the lab is, which the build refuses.
            "yesterday": lab_today() - timedelta(days=1),
        },
    )


NOT_IN_LOG = "sign-off not in the log"
SAMPLE_NOT_IN_LOG = "sample not in the log"
ITEM_MISSING = "queued item missing"


SHIFTS_CHANGED = "shifts changed outside the lab"


def _warn_shifts_changed(request: HttpRequest) -> None:
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


def _warn_items_missing(request: HttpRequest) -> None:
    """An item the chain's record of a day's queue names, drawn or flagged, that the table does not hold was
    deleted or never inserted by someone the database did not stop: the view it names was never reviewed."""
    for day, seq, reason in review_queued_items_missing():
        messages.warning(
            request,
            f"Record {seq} ({reason}, queued for {day}): {ITEM_MISSING}. The chain's record of the day's"
            " queue names this item, but the review queue does not hold it: review the record itself.",
        )


def _warn_not_in_log(
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


@auditor_page
@require_POST
def review_sign_off_view(request: HttpRequest, item_id: int) -> HttpResponse:
    try:
        review_sign_off(
            item_id=item_id,
            auditor=_auditor(request),
            note=request.POST.get("note", "").replace("\x00", "\ufffd"),  # text in PostgreSQL holds no NUL
            meta=request_meta(request),
        )
    except DomainError as error:
        messages.error(request, f"Item {item_id}: {error.message}")
    else:
        messages.success(request, f"Item {item_id} signed off.")
    return HttpResponseRedirect(reverse(f"{CONSOLE}:review"))


class DayForm(forms.Form):
    day = forms.DateField()

    def clean_day(self) -> datetime.date:
        day: datetime.date = self.cleaned_data["day"]
        if not day_in_span(day):
            raise forms.ValidationError(OUT_OF_SPAN)
        return day


@auditor_page
@require_POST
def review_build_view(request: HttpRequest) -> HttpResponse:
    form = DayForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the day as YYYY-MM-DD.")
    else:
        try:
            run = review_build(
                day=form.cleaned_data["day"], auditor=_auditor(request), meta=request_meta(request)
            )
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request, f"{run.day}: {run.sampled} sampled and {run.flagged} flagged views queued."
            )
    return HttpResponseRedirect(reverse(f"{CONSOLE}:review"))


@auditor_page
@require_GET
def export_view(request: HttpRequest) -> HttpResponse:
    key = public_key()
    return render(
        request,
        "audit/export.html",
        {"form": RecordFilterForm(), "fingerprint": public_key_fingerprint(key)},
    )


class _Echo:
    """csv.writer target that hands each formatted line back instead of buffering it."""

    def write(self, value: str) -> str:
        return value


@auditor_page
@require_POST
def export_csv_view(request: HttpRequest) -> HttpResponseBase:
    form = RecordFilterForm(request.POST)
    if not form.is_valid():
        return render(request, "audit/export.html", {"form": form, "fingerprint": ""}, status=400)
    filters = form.record_filter()
    record = auditor_read_record(
        user=_auditor(request),
        meta=request_meta(request),
        context_type=CONSOLE,
        context_id="export.csv",
        query=filters.as_query()[:500],
        action="audit.export",
    )
    writer = csv.writer(_Echo())
    lines: Iterator[str] = (writer.writerow(row) for row in audit_selectors.records_csv_rows(filters=filters))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-records-{record.seq}.csv"'
    response["X-Audit-Seq"] = str(record.seq)
    return response


@auditor_page
@require_POST
def export_jsonl_view(request: HttpRequest) -> HttpResponseBase:
    """The whole chain with its signed checkpoints, zipped: unzip and run ``python -m lab.audit.verify``."""
    user = _auditor(request)
    stamp = f"{timezone.now():%Y%m%dT%H%M%SZ}"
    bundle = tempfile.TemporaryFile(suffix=".zip")  # noqa: SIM115 - FileResponse closes it after sending
    with tempfile.TemporaryDirectory(prefix="audit-export-") as folder:
        records_path = Path(folder) / f"audit-{stamp}.jsonl"
        audit_export(
            path=records_path,
            actor_id=str(user.public_id),
            actor_role=primary_role(user),
            meta=request_meta(request),
        )
        with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(records_path, records_path.name)
            archive.write(checkpoints_path(records_path), checkpoints_path(records_path).name)
            archive.writestr(
                "README.txt", render_to_string("audit/export_readme.txt", {"name": records_path.name})
            )
    bundle.seek(0)
    return FileResponse(
        bundle, as_attachment=True, filename=f"audit-{stamp}.zip", content_type="application/zip"
    )


@require_GET
def stylesheet_view(request: HttpRequest) -> HttpResponse:
    """The console's one stylesheet, served from here so the pages need no inline styles and no CDN."""
    response = render(request, "audit/console.css", content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response
