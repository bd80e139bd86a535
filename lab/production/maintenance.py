"""Maintenance tickets: a printer problem and the specific jobs it concerns — the only context under which a
`maintenance` photo view is possible (lab.gate.access decides each view against the ticket as it is then).

The gate shows only the ticket's jobs' photos, never once their order is packed or shipped, and full
resolution only after a supervisor other than the opener approved the ticket. Each step is also an audit
record, so auditors see who opened a ticket for which jobs and who approved it.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Window
from django.utils import timezone

from lab.accounts.models import User
from lab.accounts.roles import FLOOR_ROLES, TICKET_APPROVER_ROLES, has_role, primary_role
from lab.audit.grants import grants_revoke
from lab.audit.models import Purpose
from lab.audit.records import Entry, audit_append
from lab.lib.errors import CommonError, Conflict, DomainError, NotFound, PermissionDenied
from lab.orders.states import OrderStatus
from lab.production.errors import ProductionError
from lab.production.models import JobEvent, MaintenanceTicket, Printer, PrintJob
from lab.production.states import JobStatus

J = JobStatus
# Orders whose prints may still be looked at for a printer problem: not yet packed, shipped or cancelled.
MAINTENANCE_ORDER_STATUSES = frozenset(
    {OrderStatus.PAID, OrderStatus.IN_PRODUCTION, OrderStatus.ON_HOLD, OrderStatus.READY_TO_PACK}
)
# Jobs "at the printer": anything routed to it that has not ended (printed jobs count for a few hours).
MAINTENANCE_OPEN_JOB_STATUSES = frozenset(
    {J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTING, J.SUBMITTED, J.FAILED, J.UNKNOWN, J.SUSPECT}
)
# The floor roles of lab.production.floor_access, not imported from there: the photo gate reads this module
# and the production services import the gate.
TICKET_ROLES = FLOOR_ROLES


def _ticket_access_check(actor: User) -> None:
    if not has_role(actor, *TICKET_ROLES):
        raise PermissionDenied(CommonError.NOT_ALLOWED, "Your role may not do this on the production floor.")


def maintenance_ticket_candidate_jobs(*, printer_id: int, limit: int | None = None) -> list[PrintJob]:
    """Jobs a new ticket on this printer may name: at the printer now, or printed on it within the last
    AUDIT_MAINTENANCE_WINDOW_HOURS, of orders still in production. Those at the printer now first, then the
    most recently printed: a `limit` (the job page's checkboxes) leaves out the prints of longest ago.

    Each one carries `candidates_total`, the count of all of them (the limit aside)."""
    since = timezone.now() - timedelta(hours=settings.AUDIT_MAINTENANCE_WINDOW_HOURS)
    recent = Q(status__in=MAINTENANCE_OPEN_JOB_STATUSES) | Q(status=J.PRINTED, printed_at__gte=since)
    candidates = (
        PrintJob.objects.filter(recent, printer_id=printer_id, order__status__in=MAINTENANCE_ORDER_STATUSES)
        .select_related("order", "item__product")
        .annotate(candidates_total=Window(Count("pk")))
        .order_by(F("printed_at").desc(nulls_first=True), "pk")
    )
    return list(candidates if limit is None else candidates[:limit])


def _ticket_record(*, ticket: MaintenanceTicket, actor: User, action: str, note: str) -> None:
    audit_append(
        Entry(
            action=action,
            actor_id=str(actor.public_id),
            actor_role=primary_role(actor),
            outcome="done",
            rule="maintenance_ticket",
            purpose=Purpose.MAINTENANCE,
            justification=note,
            context_type="maintenance_ticket",
            context_id=str(ticket.pk),
        )
    )


def maintenance_ticket_open(
    *, printer_id: int, actor: User, description: str, job_ids: list[int] | None = None
) -> MaintenanceTicket:
    """Open a ticket naming the jobs it concerns; one job that is not a candidate refuses the whole ticket.

    A ticket with no jobs is allowed (a paper jam needs no photo): it opens no photo at all.
    """
    _ticket_access_check(actor)
    description = description.strip()
    if not description:
        raise DomainError(ProductionError.DESCRIPTION_REQUIRED, "Say what is wrong with the printer.")
    printer = Printer.objects.filter(pk=printer_id).first()
    if printer is None:
        raise NotFound(ProductionError.PRINTER_NOT_FOUND, "No such printer.")
    wanted = sorted(set(job_ids or []))
    candidates = {job.pk for job in maintenance_ticket_candidate_jobs(printer_id=printer.pk)}
    refused = [job_id for job_id in wanted if job_id not in candidates]
    if refused:
        raise DomainError(
            ProductionError.JOB_NOT_ELIGIBLE,
            f"Job {', '.join(map(str, refused))} is not active on {printer.name} or printed on it in the "
            f"last {settings.AUDIT_MAINTENANCE_WINDOW_HOURS} hours with its order still in production.",
            job_ids=refused,
        )
    jobs_note = f"jobs {','.join(map(str, wanted))}" if wanted else "no jobs"
    with transaction.atomic():
        ticket = MaintenanceTicket.objects.create(
            printer=printer, opened_by=actor, description=description[:500]
        )
        ticket.jobs.set(wanted)
        ticket.seal()
        JobEvent.objects.create(
            printer=printer, kind="maintenance_opened", actor=actor, note=f"ticket {ticket.pk}, {jobs_note}"
        )
        _ticket_record(
            ticket=ticket,
            actor=actor,
            action="maintenance.ticket.open",
            note=f"printer {printer.pk}; {jobs_note}; {description}",
        )
    return ticket


def maintenance_ticket_approve(*, ticket_id: int, actor: User) -> MaintenanceTicket:
    """Four eyes: a supervisor other than the opener lets the ticket's jobs be seen at full resolution."""
    if not has_role(actor, *TICKET_APPROVER_ROLES):
        raise PermissionDenied(
            ProductionError.NOT_A_SUPERVISOR, "Only a supervisor approves a maintenance ticket."
        )
    with transaction.atomic():
        ticket = MaintenanceTicket.objects.select_for_update().filter(pk=ticket_id).first()
        if ticket is None:
            raise NotFound(ProductionError.TICKET_NOT_FOUND, "No such maintenance ticket.")
        if not ticket.is_open:
            raise Conflict(ProductionError.TICKET_CLOSED, f"Ticket {ticket.pk} is closed.")
        if ticket.opened_by_id == actor.pk:
            raise PermissionDenied(
                ProductionError.APPROVER_IS_OPENER, "A second person must approve: you opened this ticket."
            )
        if ticket.is_approved:
            raise Conflict(ProductionError.TICKET_APPROVED, f"Ticket {ticket.pk} is already approved.")
        was_sealed = ticket.is_sealed  # a ticket changed in the database alone is not made the lab's again
        ticket.approved_by, ticket.approved_at = actor, timezone.now()
        ticket.save(update_fields=["approved_by", "approved_at"])
        if was_sealed:
            ticket.seal()
        JobEvent.objects.create(
            printer_id=ticket.printer_id,
            kind="maintenance_approved",
            actor=actor,
            note=f"ticket {ticket.pk}: full resolution allowed",
        )
        _ticket_record(
            ticket=ticket, actor=actor, action="maintenance.ticket.approve", note="full resolution allowed"
        )
    return ticket


def maintenance_ticket_close(*, ticket_id: int, actor: User) -> MaintenanceTicket:
    """Closing the ticket ends every photo grant that rested on it (the gate re-checks on each view)."""
    _ticket_access_check(actor)
    with transaction.atomic():
        ticket = MaintenanceTicket.objects.select_for_update().filter(pk=ticket_id).first()
        if ticket is None:
            raise NotFound(ProductionError.TICKET_NOT_FOUND, "No such maintenance ticket.")
        if not ticket.is_open:
            raise Conflict(ProductionError.TICKET_CLOSED, f"Ticket {ticket.pk} is already closed.")
        was_sealed = ticket.is_sealed
        ticket.closed_at = timezone.now()
        ticket.save(update_fields=["closed_at"])
        if was_sealed:
            ticket.seal()
        grants_revoke(context_type="maintenance_ticket", context_id=ticket.pk, reason="ticket_closed")
        JobEvent.objects.create(
            printer_id=ticket.printer_id, kind="maintenance_closed", actor=actor, note=f"ticket {ticket.pk}"
        )
        _ticket_record(ticket=ticket, actor=actor, action="maintenance.ticket.close", note="closed")
    return ticket
