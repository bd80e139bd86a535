"""Release and routing: a paid order becomes print jobs, each sent to the least loaded capable printer."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count, Q

from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.production.jobs import job_move, jobs_create, rasterize_enqueue
from lab.production.models import Batch, Printer, PrintJob
from lab.production.states import ACTIVE_JOB_STATUSES, JobStatus, PrinterState

logger = logging.getLogger(__name__)
J = JobStatus


def _capable_printers(*, size: str, paper: str) -> list[Printer]:
    # Only what routing reads: a lab's printers carry ICC profiles (hundreds of KB each), read per job here.
    online = Printer.objects.filter(state=PrinterState.ONLINE, is_paused_by_lab=False).only(
        "id", "name", "media_sizes", "papers"
    )
    return [p for p in online if p.holds(size=size, paper=paper)]


class _Router:
    """Least-loaded routing for several jobs at once (an order's release): the capable printers of each media
    and their loads are read once, and each job routed here counts on its printer for the next one. One job
    or many, the choice is the same as routing them one by one."""

    def __init__(self) -> None:
        self._capable: dict[tuple[str, str], list[Printer]] = {}
        self._load: dict[int, int] = {}
        self._batches: dict[tuple[int, str, str], Batch] = {}

    def least_loaded(
        self, *, size: str, paper: str, exclude: int | None = None, only: int | None = None
    ) -> Printer | None:
        """The capable printer with the fewest active jobs (by name on a tie), but `exclude`; of `only`
        when given (None when that one cannot take the media)."""
        capable = self._capable.get((size, paper))
        if capable is None:
            capable = self._capable[(size, paper)] = _capable_printers(size=size, paper=paper)
        candidates = [p for p in capable if p.pk != exclude and only in (None, p.pk)]
        if not candidates:
            return None
        unknown = [p.pk for p in candidates if p.pk not in self._load]
        if unknown:
            # Counted in the database: one row per printer, not one per active job (a backlog is thousands).
            self._load |= dict.fromkeys(unknown, 0) | dict(
                PrintJob.objects.filter(printer__in=unknown, status__in=ACTIVE_JOB_STATUSES)
                .values("printer_id")
                .annotate(active=Count("id"))
                .values_list("printer_id", "active")
            )
        return min(candidates, key=lambda p: (self._load[p.pk], p.name))

    def batch_for(self, *, printer: Printer, size: str, paper: str) -> Batch:
        key = (printer.pk, size, paper)
        batch = self._batches.get(key)
        if batch is None:
            batch, _ = Batch.objects.get_or_create(printer=printer, size=size, paper=paper, is_open=True)
            self._batches[key] = batch
        return batch

    def routed(self, printer: Printer) -> None:
        self._load[printer.pk] += 1


def job_media(job: PrintJob) -> tuple[str, str]:
    product = job.item.product
    return product.size_label, product.paper


def order_release(*, order_id: int) -> int:
    """A paid order becomes one print job per item (copies as a count), each routed to a printer: the
    printers and their loads are read once for the whole order, and the jobs written in one go
    (`jobs_create`), in a handful of statements for any number of items."""
    with transaction.atomic():
        order = order_locked(order_id=order_id)
        if order.status != OrderStatus.PAID or PrintJob.objects.filter(order=order).exists():
            return 0  # released already, cancelled, or on hold: a redelivered task does nothing
        router = _Router()
        placements: list[tuple[PrintJob, Printer | None, Batch | None]] = []
        for item in order.items.select_related("product"):
            size, paper = item.product.size_label, item.product.paper
            printer = router.least_loaded(size=size, paper=paper)
            batch = None
            if printer is not None:
                batch = router.batch_for(printer=printer, size=size, paper=paper)
                router.routed(printer)
            job = PrintJob(order=order, item=item, copies=item.copies, status=J.NO_PRINTER)
            placements.append((job, printer, batch))
        jobs = jobs_create(placements)
        order_transition(order=order, to_status=OrderStatus.IN_PRODUCTION, note="released to production")
    return len(jobs)


def job_route(job: PrintJob, *, exclude_printer: int | None = None, router: _Router | None = None) -> bool:
    """Route a job waiting for a printer to the least loaded capable one; False when none can take it.
    `router`: one shared by several jobs routed in a row (their printers and loads read once)."""
    size, paper = job_media(job)
    router = router if router is not None else _Router()
    printer = router.least_loaded(size=size, paper=paper, exclude=exclude_printer)
    if printer is None:
        return False
    batch = router.batch_for(printer=printer, size=size, paper=paper)
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
        router.routed(printer)
        transaction.on_commit(lambda: rasterize_enqueue(job.pk))
    return moved


def jobs_route_waiting() -> int:
    """Route jobs that were waiting for a capable printer (called when printers change, in the technician's
    request when a printer is resumed). One router for them all: the printers and their loads are read once,
    not per job (a backlog of a size no printer holds cost a query per job and routed none)."""
    routed = 0
    router = _Router()
    for job in PrintJob.objects.filter(status=J.NO_PRINTER).select_related("item__product"):
        size, paper = job_media(job)
        if router.least_loaded(size=size, paper=paper) is None:
            continue  # still no printer for it: no transaction (a savepoint inside a request) opened for it
        with transaction.atomic():
            routed += int(job_route(job, router=router))
    return routed


def reroute_target(
    job: PrintJob, *, printer_id: int | None = None, again_on_its_printer: bool = False
) -> Printer | None:
    """Where a reroute sends the job: the least loaded capable printer other than its own (`printer_id`
    when named). With `again_on_its_printer` (a failed job, sent again), its own printer is the one left
    when no other can take it, or when it is the one named; judged as any routing is (online, not paused,
    holding the media)."""
    size, paper = job_media(job)
    router = _Router()
    target = router.least_loaded(size=size, paper=paper, exclude=job.printer_id, only=printer_id)
    its_own = job.printer_id is not None and printer_id in (None, job.printer_id)
    if target is None and again_on_its_printer and its_own:
        target = router.least_loaded(size=size, paper=paper, only=job.printer_id)
    return target


def job_reroute(
    *,
    job_id: int,
    printer_id: int | None = None,
    actor_id: int | None = None,
    note: str = "",
    earlier_sends_withdrawn: bool = False,
    again_on_its_printer: bool = False,
    as_read: Q | None = None,
) -> bool:
    """Move a job that has not been sent yet to another capable printer (least loaded when not named); False
    when none can take it, or when the job no longer matches `as_read` (what the caller read of it before
    it withdrew the earlier sends: a retry that claimed and sent it meanwhile leaves it where it is).

    `again_on_its_printer`: a failed job may go back to its own printer (see reroute_target), for a lab with
    one printer holding its media: sent again there, as a new send (after the caller withdrew the earlier
    sends, as for a move).

    A job with a send attempt behind it (`submit_attempts`: back to `ready` or `failed` after a transient
    error) may still be held by its printer, which prints it once it comes back: moved, it was sent to the
    other printer too, and both printed while the job ended `printed`. Such a job moves only when the caller
    has withdrawn the earlier sends from the old printer (`earlier_sends_withdrawn`); otherwise it stays and
    its retry looks for the earlier send there first.

    What the job knew of a send to its old printer (its handle, state, start, restart mark) is cleared: the
    old printer's copies are over or withdrawn, and a cancel given the old handle looked for it at the new
    printer, missed the send held there and let it print (tests/production/test_cancel_after_reroute.py).
    """
    job = PrintJob.objects.select_related("item__product").get(pk=job_id)
    target = reroute_target(job, printer_id=printer_id, again_on_its_printer=again_on_its_printer)
    if target is None:
        return False
    size, paper = job_media(job)
    batch = _Router().batch_for(printer=target, size=size, paper=paper)
    where = as_read or Q()
    if not earlier_sends_withdrawn:
        where &= Q(submit_attempts=0)
    again = target.pk == job.printer_id
    # A raster made for another printer (resolution, profile) is made again for the new one; sent again on
    # the same printer, it is made again too (a raster that failed to read is the reason, at times).
    moved = job_move(
        job_id=job.pk,
        from_statuses={J.FAILED} if again else {J.QUEUED, J.READY, J.FAILED},
        to_status=J.QUEUED,
        kind="rerouted",
        note=note or f"{'sent again on ' if again else ''}printer={target.name}",
        actor_id=actor_id,
        where=where,
        printer=target,
        batch=batch,
        failure_code="",
        failure_message="",
        failure_is_permanent=False,
        submit_attempts=0,
        backend_job_id="",
        backend_state="",
        backend_started_at=None,
        backend_restarted=False,
    )
    if moved:
        transaction.on_commit(lambda: rasterize_enqueue(job.pk))
    return moved
