"""Release and routing: a paid order becomes print jobs, each sent to the least loaded capable printer."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count

from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.production.jobs import job_move, rasterize_enqueue
from lab.production.models import Batch, JobEvent, Printer, PrintJob
from lab.production.states import ACTIVE_JOB_STATUSES, JobStatus, PrinterState

logger = logging.getLogger(__name__)
J = JobStatus


def _capable_printers(*, size: str, paper: str) -> list[Printer]:
    # Only what routing reads: a lab's printers carry ICC profiles (hundreds of KB each), read per job here.
    online = Printer.objects.filter(state=PrinterState.ONLINE, is_paused_by_lab=False).only(
        "id", "name", "media_sizes", "papers"
    )
    return [p for p in online if p.holds(size=size, paper=paper)]


def _least_loaded(printers: list[Printer], *, exclude: int | None = None) -> Printer | None:
    candidates = [p for p in printers if p.pk != exclude]
    if not candidates:
        return None
    # Counted in the database: one row per printer, not one per active job (a backlog is thousands).
    load = dict(
        PrintJob.objects.filter(printer__in=candidates, status__in=ACTIVE_JOB_STATUSES)
        .values("printer_id")
        .annotate(active=Count("id"))
        .values_list("printer_id", "active")
    )
    return min(candidates, key=lambda p: (load.get(p.pk, 0), p.name))


def _batch_for(*, printer: Printer, size: str, paper: str) -> Batch:
    batch, _ = Batch.objects.get_or_create(printer=printer, size=size, paper=paper, is_open=True)
    return batch


def job_media(job: PrintJob) -> tuple[str, str]:
    product = job.item.product
    return product.size_label, product.paper


def order_release(*, order_id: int) -> int:
    """A paid order becomes one print job per item (copies as a count), each routed to a printer."""
    with transaction.atomic():
        order = order_locked(order_id=order_id)
        if order.status != OrderStatus.PAID or PrintJob.objects.filter(order=order).exists():
            return 0  # released already, cancelled, or on hold: a redelivered task does nothing
        jobs = [
            PrintJob.objects.create(order=order, item=item, copies=item.copies, status=J.NO_PRINTER)
            for item in order.items.select_related("product")
        ]
        for job in jobs:
            JobEvent.objects.create(job=job, kind="created", to_status=J.NO_PRINTER)
            job_route(job)
        order_transition(order=order, to_status=OrderStatus.IN_PRODUCTION, note="released to production")
    return len(jobs)


def job_route(job: PrintJob, *, exclude_printer: int | None = None) -> bool:
    """Route a job waiting for a printer to the least loaded capable one; False when none can take it."""
    size, paper = job_media(job)
    printer = _least_loaded(_capable_printers(size=size, paper=paper), exclude=exclude_printer)
    if printer is None:
        return False
    batch = _batch_for(printer=printer, size=size, paper=paper)
    moved = job_move(
        job_id=job.pk,
        from_statuses={J.NO_PRINTER},
        to_status=J.QUEUED,
        kind="routed",
        note=f"printer={printer.name}",
        printer=printer,
        batch=batch,
    )
    if moved:
        transaction.on_commit(lambda: rasterize_enqueue(job.pk))
    return moved


def jobs_route_waiting() -> int:
    """Route jobs that were waiting for a capable printer (called when printers change)."""
    routed = 0
    for job in PrintJob.objects.filter(status=J.NO_PRINTER).select_related("item__product"):
        with transaction.atomic():
            routed += int(job_route(job))
    return routed


def job_reroute(
    *, job_id: int, printer_id: int | None = None, actor_id: int | None = None, note: str = ""
) -> bool:
    """Move a job that has not been sent yet to another capable printer (least loaded when not named)."""
    job = PrintJob.objects.select_related("item__product").get(pk=job_id)
    size, paper = job_media(job)
    capable = _capable_printers(size=size, paper=paper)
    if printer_id is not None:
        capable = [p for p in capable if p.pk == printer_id]
    target = _least_loaded(capable, exclude=job.printer_id)
    if target is None:
        return False
    batch = _batch_for(printer=target, size=size, paper=paper)
    # A raster made for another printer (resolution, profile) is made again for the new one.
    moved = job_move(
        job_id=job.pk,
        from_statuses={J.QUEUED, J.READY, J.FAILED},
        to_status=J.QUEUED,
        kind="rerouted",
        note=note or f"printer={target.name}",
        actor_id=actor_id,
        printer=target,
        batch=batch,
        failure_code="",
        failure_message="",
        failure_is_permanent=False,
    )
    if moved:
        transaction.on_commit(lambda: rasterize_enqueue(job.pk))
    return moved
