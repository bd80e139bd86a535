"""Reads of the production floor for the staff pages: each page's queries in one place, none in views."""

from __future__ import annotations

from django.db.models import QuerySet

from lab.orders.models import ClarificationCase, Order
from lab.production.models import Alert, JobEvent, MaintenanceTicket, Printer, PrintJob
from lab.production.states import JobStatus


def printers_by_name() -> QuerySet[Printer]:
    return Printer.objects.order_by("name")


def job_for_page(*, job_id: int) -> PrintJob | None:
    return (
        PrintJob.objects.select_related("order", "item__product", "printer", "batch", "reprint_of")
        .filter(pk=job_id)
        .first()
    )


def job_events(*, job: PrintJob) -> QuerySet[JobEvent]:
    return JobEvent.objects.filter(job=job).select_related("actor").order_by("created_at", "pk")


def reroute_targets(*, job: PrintJob) -> list[Printer]:
    """Available printers that hold the job's size and paper, other than its own; and its own for a failed
    job whose printer's destination is the lab's (sealed): sent again there (actions.job_reroute_by_staff)."""
    product = job.item.product
    send_again_here = job.status == JobStatus.FAILED and job.printer is not None
    return [
        printer
        for printer in printers_by_name()
        if (printer.pk != job.printer_id or (send_again_here and printer.destination_is_sealed))
        and printer.is_available
        and printer.holds(size=product.size_label, paper=product.paper)
    ]


def open_tickets_naming(*, job: PrintJob) -> QuerySet[MaintenanceTicket]:
    return MaintenanceTicket.objects.filter(jobs=job, closed_at__isnull=True).order_by("pk")


def open_tickets_on_printer(*, printer_id: int) -> QuerySet[MaintenanceTicket]:
    return (
        MaintenanceTicket.objects.filter(printer_id=printer_id, closed_at__isnull=True)
        .select_related("opened_by", "approved_by")
        .prefetch_related("jobs")
        .order_by("pk")
    )


def open_clarifications(*, order: Order) -> QuerySet[ClarificationCase]:
    return ClarificationCase.objects.filter(order=order, closed_at__isnull=True).order_by("pk")


def order_jobs(*, order: Order) -> QuerySet[PrintJob]:
    # The order too: each job's line shows its ref (one query per job without it).
    jobs = PrintJob.objects.filter(order=order)
    return jobs.select_related("order", "item__product", "printer").order_by("pk")


def alerts_recent(*, limit: int = 20) -> list[Alert]:
    return list(Alert.objects.order_by("-created_at", "-pk")[:limit])
