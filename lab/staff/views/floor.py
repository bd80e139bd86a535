"""The production floor: the live board, a job's page, an order's floor page, and technician actions."""

from __future__ import annotations

import uuid
from dataclasses import replace

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from lab.accounts.models import User
from lab.accounts.roles import (
    BOARD_READER_ROLES,
    FLOOR_ROLES,
    QC_ROLES,
    SUPERVISOR_ROLES,
    TICKET_APPROVER_ROLES,
    user_roles,
)
from lab.gate.facts import Context
from lab.gate.rules import FULL_RESOLUTION_PURPOSES, PURPOSES_BY_ROLE, offer_fits
from lab.lib.errors import DomainError
from lab.orders.selectors import order_by_ref
from lab.orders.states import SUPERVISOR_CANCELLABLE, OrderStatus
from lab.production import actions, maintenance, reprints, reroutes, resolutions, selectors
from lab.production.cancellation import order_cancel_in_production
from lab.production.holds import HOLDABLE, hold_event_id, order_hold, order_release_hold
from lab.production.models import PrintJob
from lab.production.states import JobStatus, ReprintReason
from lab.staff.access import can, staff_page
from lab.staff.board import board_snapshot
from lab.staff.errors import StaffError
from lab.staff.forms import (
    CopiesForm,
    HoldForm,
    ReleaseHoldForm,
    ReprintForm,
    RerouteForm,
    ResolveForm,
    form_problem,
)
from lab.staff.views.common import run_action

BOARD_POLL_SECONDS = 3
J = JobStatus


def _actor(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _board_context(request: HttpRequest) -> dict[str, object]:
    return {
        "board": board_snapshot(),
        "can_act": can(request, FLOOR_ROLES),
        "poll_seconds": BOARD_POLL_SECONDS,
    }


@staff_page(*BOARD_READER_ROLES)
@require_GET
def board_view(request: HttpRequest) -> HttpResponse:
    return render(request, "staff/board.html", _board_context(request))


@staff_page(*BOARD_READER_ROLES, is_passive=True)
@require_GET
def board_live_view(request: HttpRequest) -> HttpResponse:
    """The board's body alone, polled by htmx; polling is not activity, so idle sessions still end."""
    return render(request, "staff/_board.html", _board_context(request))


# --- Printers and batches -----------------------------------------------------------------------


@staff_page(*FLOOR_ROLES)
@require_POST
def printer_pause_view(request: HttpRequest, printer_id: int) -> HttpResponse:
    def act() -> str:
        printer = actions.printer_pause(printer_id=printer_id, actor=_actor(request))
        return f"Printer {printer.name} paused."

    return run_action(request, act, default_next=reverse("staff:board"))


@staff_page(*FLOOR_ROLES)
@require_POST
def printer_resume_view(request: HttpRequest, printer_id: int) -> HttpResponse:
    def act() -> str:
        printer = actions.printer_resume(printer_id=printer_id, actor=_actor(request))
        return f"Printer {printer.name} resumed."

    return run_action(request, act, default_next=reverse("staff:board"))


@staff_page(*FLOOR_ROLES)
@require_POST
def batch_hold_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    def act() -> str:
        batch = actions.batch_hold(batch_id=batch_id, actor=_actor(request))
        return f"Batch {batch.pk} ({batch.size} {batch.paper}) held."

    return run_action(request, act, default_next=reverse("staff:board"))


@staff_page(*FLOOR_ROLES)
@require_POST
def batch_release_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    def act() -> str:
        batch = actions.batch_release(batch_id=batch_id, actor=_actor(request))
        return f"Batch {batch.pk} ({batch.size} {batch.paper}) released."

    return run_action(request, act, default_next=reverse("staff:board"))


# --- Jobs ---------------------------------------------------------------------------------------


def _job_or_404(job_id: int) -> PrintJob:
    job = selectors.job_for_page(job_id=job_id)
    if job is None:
        raise Http404("no such job")
    return job


@staff_page(*BOARD_READER_ROLES, *QC_ROLES)
@require_GET
def job_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_or_404(job_id)
    product = job.item.product
    reprints = list(job.reprints.order_by("pk"))
    return render(
        request,
        "staff/job.html",
        {
            "job": job,
            "product": product,
            "events": selectors.job_events(job=job),
            "reprints": reprints,
            # The newest reprint as the page shows it: a reprint made since (another tab, another person)
            # refuses this page's form, so the same damaged prints are reprinted once.
            "last_reprint_seen": reprints[-1].pk if reprints else 0,
            "reroute_targets": selectors.reroute_targets(job=job),
            "reasons": ReprintReason.choices,
            "reprint_request_key": uuid.uuid4().hex,
            "can_act": can(request, FLOOR_ROLES),
            "can_qc": can(request, QC_ROLES),
            "is_reroutable": job.status in reroutes.REROUTABLE,
            "is_cancellable": job.status in actions.CANCELLABLE,
            "is_printed": job.status == J.PRINTED,
            "is_unknown": job.status == J.UNKNOWN,
            "is_suspect": job.status == J.SUSPECT,
            "photo_requests": _photo_requests(request, job),
            **_maintenance_context(request, job),
        },
    )


def _job_url(job_id: int) -> str:
    return reverse("staff:job", args=[job_id])


@staff_page(*FLOOR_ROLES)
@require_POST
def job_reroute_view(request: HttpRequest, job_id: int) -> HttpResponse:
    form = RerouteForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise DomainError(StaffError.INVALID_INPUT, form_problem(form))
        job = reroutes.job_reroute_by_staff(
            job_id=job_id, actor=_actor(request), printer_id=form.cleaned_data["printer"]
        )
        return f"Job {job.pk} rerouted to {job.printer}."

    return run_action(request, act, default_next=_job_url(job_id))


@staff_page(*FLOOR_ROLES)
@require_POST
def job_cancel_view(request: HttpRequest, job_id: int) -> HttpResponse:
    def act() -> str:
        job = actions.job_cancel(job_id=job_id, actor=_actor(request))
        return f"Job {job.pk} cancelled."

    return run_action(request, act, default_next=_job_url(job_id))


@staff_page(*FLOOR_ROLES)
@require_POST
def job_reprint_view(request: HttpRequest, job_id: int) -> HttpResponse:
    form = ReprintForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise DomainError(StaffError.INVALID_INPUT, form_problem(form))
        reprint = reprints.job_reprint(
            job_id=job_id,
            actor=_actor(request),
            reason=form.cleaned_data["reason"],
            copies=form.cleaned_data["copies"],
            note=form.cleaned_data["note"],
            request_key=form.cleaned_data["request_key"],
            last_reprint_seen=form.cleaned_data["last_reprint_seen"],
        )
        where = f"sent to {reprint.printer}" if reprint.printer else "waiting for a printer"
        return f"Reprint requested: job {reprint.pk}, {reprint.copies} copies, {where}."

    return run_action(request, act, default_next=_job_url(job_id))


@staff_page(*FLOOR_ROLES)
@require_POST
def job_resolve_view(request: HttpRequest, job_id: int) -> HttpResponse:
    form = ResolveForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise DomainError(StaffError.INVALID_INPUT, form_problem(form))
        was_printed = form.cleaned_data["outcome"] == "printed"
        job = resolutions.job_resolve_unknown(
            job_id=job_id,
            actor=_actor(request),
            was_printed=was_printed,
            # the send the page showed; a form without it (none of this page's) is not checked
            title_token=form.cleaned_data["title_token"] if "title_token" in request.POST else None,
        )
        return f"Job {job.pk} marked {'printed' if was_printed else 'not printed; it will be sent again'}."

    return run_action(request, act, default_next=_job_url(job_id))


def _photo_requests(request: HttpRequest, job: PrintJob) -> list[dict[str, object]]:
    """The purposes this person could name to see the job's photo; the audit gate decides and records.

    Only what the gate's own rules grant on the state the page shows (lab.gate.access.offer_fits): an offer
    it refuses (printing a printed job, packaging an order not being packed, full resolution of a case to
    whoever opened it) got an honest person a flagged denial and ended their live grant on the photo. A
    maintenance ticket is offered only on the pages of the jobs it names.
    """
    user = request.user
    roles = user_roles(user)
    allowed = set().union(*(PURPOSES_BY_ROLE.get(role, frozenset()) for role in roles))
    order = job.order
    on_job = Context(found=True, status=job.status, order_status=order.status, order_ref=order.ref)
    offers: list[tuple[str, str, str, str, Context]] = [
        ("printing", "print_job", str(job.pk), "printing this job", on_job),
        ("handling", "print_job", str(job.pk), "handling this job", on_job),
        ("packaging", "order", order.ref, "packing this order", replace(on_job, status=None)),
    ]
    for ticket in selectors.open_tickets_naming(job=job):
        on_ticket = replace(on_job, status=None, is_open=True, is_approved=ticket.is_approved, on_ticket=True)
        offers.append(
            (
                "maintenance",
                "maintenance_ticket",
                str(ticket.pk),
                f"maintenance ticket {ticket.pk}",
                on_ticket,
            )
        )
    for case in selectors.open_clarifications(order=order):
        # a second person stands behind a case's full resolution: anyone but whoever opened it
        on_case = replace(on_job, status=None, is_open=True, is_approved=case.opened_by_id != user.pk)
        offers.append(
            (
                "order_clarification",
                "clarification_case",
                str(case.pk),
                f"clarification case {case.pk}",
                on_case,
            )
        )
    shown: list[dict[str, object]] = []
    for purpose, kind, ident, label, context in offers:
        scope = {"purpose": purpose, "context_type": kind, "context_id": ident}
        if purpose not in allowed or not offer_fits(**scope, context=context, variant="preview"):
            continue
        is_full_ok = purpose in FULL_RESOLUTION_PURPOSES and offer_fits(
            **scope, context=context, variant="full"
        )
        shown.append({**scope, "label": label, "offers_full": is_full_ok})
    return shown


TICKET_CANDIDATES_SHOWN = 200


def _maintenance_context(request: HttpRequest, job: PrintJob) -> dict[str, object]:
    """Open tickets on the job's printer (with the jobs each names) and the jobs a new ticket may name."""
    if not job.printer_id:
        return {"open_tickets": [], "ticket_candidates": [], "ticket_candidates_total": 0}
    tickets = selectors.open_tickets_on_printer(printer_id=job.printer_id)
    # A printer's last hours can hold thousands of jobs: those at it now and the latest printed are the ones
    # a problem concerns (the job page's own job among them while it is at the printer).
    candidates = maintenance.maintenance_ticket_candidate_jobs(
        printer_id=job.printer_id, limit=TICKET_CANDIDATES_SHOWN
    )
    user = request.user
    return {
        "open_tickets": [
            {
                "ticket": ticket,
                "job_ids": sorted(ticket_job.pk for ticket_job in ticket.jobs.all()),
                "can_approve": can(request, TICKET_APPROVER_ROLES)
                and not ticket.is_approved
                and ticket.opened_by_id != user.pk,
            }
            for ticket in tickets
        ],
        "ticket_candidates": candidates,
        "ticket_candidates_total": getattr(candidates[0], "candidates_total", 0) if candidates else 0,
    }


@staff_page(*FLOOR_ROLES)
@require_POST
def ticket_open_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_or_404(job_id)

    def act() -> str:
        if job.printer_id is None:
            raise DomainError(StaffError.NO_PRINTER, "This job has no printer yet.")
        job_ids = request.POST.getlist("job_ids")
        if not all(value.isascii() and value.isdigit() and len(value) < 19 for value in job_ids):
            raise DomainError(StaffError.INVALID_INPUT, "Choose jobs from the list.")
        description = request.POST.get("description", "")
        if "\x00" in description:
            # As Django's forms refuse it on every other page here: PostgreSQL's text cannot hold a NUL, and
            # the ticket's insert raised (a 500) instead of saying so.
            raise DomainError(
                StaffError.INVALID_INPUT, "The description holds a character that cannot be saved."
            )
        ticket = maintenance.maintenance_ticket_open(
            printer_id=job.printer_id,
            actor=_actor(request),
            description=description,
            job_ids=[int(value) for value in job_ids],
        )
        count = ticket.jobs.count()
        return (
            f"Maintenance ticket {ticket.pk} opened on {job.printer.name if job.printer else ''} "
            f"for {count} job{'s' if count != 1 else ''}."
        )

    return run_action(request, act, default_next=_job_url(job_id))


@staff_page(*TICKET_APPROVER_ROLES)
@require_POST
def ticket_approve_view(request: HttpRequest, job_id: int, ticket_id: int) -> HttpResponse:
    def act() -> str:
        ticket = maintenance.maintenance_ticket_approve(ticket_id=ticket_id, actor=_actor(request))
        return f"Maintenance ticket {ticket.pk} approved: its jobs may be seen at full resolution."

    return run_action(request, act, default_next=_job_url(job_id))


@staff_page(*FLOOR_ROLES)
@require_POST
def ticket_close_view(request: HttpRequest, job_id: int, ticket_id: int) -> HttpResponse:
    def act() -> str:
        ticket = maintenance.maintenance_ticket_close(ticket_id=ticket_id, actor=_actor(request))
        return f"Maintenance ticket {ticket.pk} closed."

    return run_action(request, act, default_next=_job_url(job_id))


@staff_page(*QC_ROLES)
@require_POST
def job_verify_view(request: HttpRequest, job_id: int) -> HttpResponse:
    form = CopiesForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise DomainError(StaffError.INVALID_INPUT, form_problem(form))
        job = reprints.job_verify_copies(
            job_id=job_id, actor=_actor(request), copies=form.cleaned_data["copies"]
        )
        return f"Job {job.pk}: {job.copies_verified} of {job.copies} copies checked."

    return run_action(request, act, default_next=_job_url(job_id))


# --- Orders on the floor ------------------------------------------------------------------------


@staff_page(*BOARD_READER_ROLES, *QC_ROLES)
@require_GET
def order_view(request: HttpRequest, ref: str) -> HttpResponse:
    order = order_by_ref(ref=ref)
    if order is None:
        raise Http404("no such order")
    return render(
        request,
        "staff/order.html",
        {
            "order": order,
            "items": order.items.select_related("product"),
            "jobs": selectors.order_jobs(order=order),
            "events": order.events.order_by("created_at", "pk"),
            "can_act": can(request, FLOOR_ROLES),
            "is_holdable": order.status in HOLDABLE,
            "is_on_hold": order.status == OrderStatus.ON_HOLD,
            # The hold the page shows: a hold released and placed again since refuses this page's release.
            "hold_seen": hold_event_id(order) if order.status == OrderStatus.ON_HOLD else 0,
            "can_cancel": can(request, SUPERVISOR_ROLES) and order.status in SUPERVISOR_CANCELLABLE,
        },
    )


def _order_url(ref: str) -> str:
    return reverse("staff:order", args=[ref])


@staff_page(*FLOOR_ROLES)
@require_POST
def order_hold_view(request: HttpRequest, ref: str) -> HttpResponse:
    form = HoldForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise DomainError(StaffError.INVALID_INPUT, form_problem(form))
        order = order_hold(order_ref=ref, actor=_actor(request), message=form.cleaned_data["message"])
        return f"Order {order.ref} is on hold until the customer answers."

    return run_action(request, act, default_next=_order_url(ref))


@staff_page(*SUPERVISOR_ROLES)
@require_POST
def order_cancel_view(request: HttpRequest, ref: str) -> HttpResponse:
    def act() -> str:
        order = order_cancel_in_production(order_ref=ref, actor=_actor(request))
        return (
            f"Order {order.ref} is cancelled; its jobs are stopped and the payment is {order.payment_status}."
        )

    return run_action(request, act, default_next=_order_url(ref))


@staff_page(*FLOOR_ROLES)
@require_POST
def order_release_hold_view(request: HttpRequest, ref: str) -> HttpResponse:
    form = ReleaseHoldForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise DomainError(StaffError.INVALID_INPUT, form_problem(form))
        order = order_release_hold(
            order_ref=ref,
            actor=_actor(request),
            # the hold the page showed; a form without it (none of this page's) is not checked
            hold_seen=form.cleaned_data["hold_seen"],
        )
        return f"Order {order.ref} released from hold ({order.get_status_display().lower()})."

    return run_action(request, act, default_next=_order_url(ref))
