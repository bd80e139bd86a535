"""The auditor console's review queue: the queue, an item's sign-off and a day's build, with the warnings
the queue shows when the table and the chain disagree."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from lab.audit.records import request_meta
from lab.gate import selectors as audit_selectors
from lab.gate.console_forms import DayForm
from lab.gate.console_views import (
    CONSOLE,
    PAGE_SIZE,
    auditor_page,
    console_auditor,
    console_read,
    warn_not_in_log,
    warn_shifts_changed,
)
from lab.gate.review import (
    lab_today,
    review_build,
    review_queued_items_missing,
    review_samples_not_in_log,
    review_sign_off,
)
from lab.lib.errors import DomainError


@auditor_page
@require_GET
def review_view(request: HttpRequest) -> HttpResponse:
    is_open = request.GET.get("state", "open") != "done"
    after = request.GET.get("after", "")
    after_id = int(after) if after.isascii() and after.isdigit() and len(after) < 19 else None
    console_read(
        request, page="review", query=f"state={'open' if is_open else 'done'}&after={after_id or ''}"
    )
    page = audit_selectors.review_items_page(is_open=is_open, after_id=after_id, limit=PAGE_SIZE)
    sample_not_in_log = review_samples_not_in_log(items=page.items)
    warn_not_in_log(request, page.items, page.not_in_log, sample_not_in_log)
    _warn_items_missing(request)
    warn_shifts_changed(request)
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


ITEM_MISSING = "queued item missing"


def _warn_items_missing(request: HttpRequest) -> None:
    """An item the chain's record of a day's queue names, drawn or flagged, that the table does not hold was
    deleted or never inserted by someone the database did not stop: the view it names was never reviewed."""
    for day, seq, reason in review_queued_items_missing():
        messages.warning(
            request,
            f"Record {seq} ({reason}, queued for {day}): {ITEM_MISSING}. The chain's record of the day's"
            " queue names this item, but the review queue does not hold it: review the record itself.",
        )


@auditor_page
@require_POST
def review_sign_off_view(request: HttpRequest, item_id: int) -> HttpResponse:
    try:
        review_sign_off(
            item_id=item_id,
            auditor=console_auditor(request),
            note=request.POST.get("note", "").replace("\x00", "\ufffd"),  # text in PostgreSQL holds no NUL
            meta=request_meta(request),
        )
    except DomainError as error:
        messages.error(request, f"Item {item_id}: {error.message}")
    else:
        messages.success(request, f"Item {item_id} signed off.")
    return HttpResponseRedirect(reverse(f"{CONSOLE}:review"))


@auditor_page
@require_POST
def review_build_view(request: HttpRequest) -> HttpResponse:
    form = DayForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the day as YYYY-MM-DD.")
    else:
        try:
            run = review_build(
                day=form.cleaned_data["day"], auditor=console_auditor(request), meta=request_meta(request)
            )
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request, f"{run.day}: {run.sampled} sampled and {run.flagged} flagged views queued."
            )
    return HttpResponseRedirect(reverse(f"{CONSOLE}:review"))
