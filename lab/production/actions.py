"""Technician actions on the production floor: printers, batches, cancels.

Each action checks the actor's role, refuses an illegal move with a DomainError before changing anything,
and leaves a JobEvent naming the actor; job statuses are written only through jobs.job_move. The other
floor actions, on the same terms: reroutes (lab.production.reroutes), reprints and the quality check
(lab.production.reprints), a person's decision on an unknown or suspect job (lab.production.resolutions);
the withdrawal of a job's earlier sends before it moves is lab.production.withdrawals.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from lab.accounts.models import User
from lab.lib.errors import Conflict, DomainError, NotFound, UpstreamError
from lab.lib.tasks import enqueue
from lab.orders.transitions import order_locked
from lab.production import jobs, routing, tracking
from lab.production.backends import backend_for
from lab.production.cancellation import printer_cancels_settle
from lab.production.errors import ProductionError
from lab.production.floor_access import floor_access_check, floor_job
from lab.production.models import JOB_CANCELLED, JOB_CANCELLED_NOTE, Batch, JobEvent, Printer, PrintJob
from lab.production.reprints import copies_replaced
from lab.production.states import JobStatus
from printers.errors import PrinterError

logger = logging.getLogger(__name__)
J = JobStatus

CANCELLABLE = frozenset(
    {J.NO_PRINTER, J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTED, J.FAILED, J.UNKNOWN, J.SUSPECT}
)


def _printer(printer_id: int, *, lock: bool = False) -> Printer:
    query = Printer.objects.select_for_update() if lock else Printer.objects.all()
    printer = query.filter(pk=printer_id).first()
    if printer is None:
        raise NotFound(ProductionError.PRINTER_NOT_FOUND, "No such printer.")
    return printer


def _poll_after_commit() -> None:
    # The poll task kicks ready jobs of available printers and unheld batches, outside this request.
    transaction.on_commit(lambda: enqueue("production.printer_poll"))


# --- Printers -----------------------------------------------------------------------------------


def printer_pause(*, printer_id: int, actor: User) -> Printer:
    """Stop sending jobs to a printer; its queued and ready jobs stay with it."""
    floor_access_check(actor)
    with transaction.atomic():
        printer = _printer(printer_id, lock=True)
        if printer.is_paused_by_lab:
            raise DomainError(
                ProductionError.PRINTER_ALREADY_PAUSED, f"Printer {printer.name} is already paused."
            )
        Printer.objects.filter(pk=printer.pk).update(is_paused_by_lab=True)
        JobEvent.objects.create(printer=printer, kind="printer_paused", actor=actor)
    logger.info("printer paused printer=%s actor=%s", printer.name, actor.pk)
    printer.refresh_from_db()
    return printer


def printer_resume(*, printer_id: int, actor: User) -> Printer:
    """Send jobs to a paused printer again: route waiting jobs, then let the poll kick its ready jobs."""
    floor_access_check(actor)
    with transaction.atomic():
        printer = _printer(printer_id, lock=True)
        if not printer.is_paused_by_lab:
            raise DomainError(ProductionError.PRINTER_NOT_PAUSED, f"Printer {printer.name} is not paused.")
        Printer.objects.filter(pk=printer.pk).update(is_paused_by_lab=False)
        JobEvent.objects.create(printer=printer, kind="printer_resumed", actor=actor)
        _poll_after_commit()
    routing.jobs_route_waiting()
    logger.info("printer resumed printer=%s actor=%s", printer.name, actor.pk)
    printer.refresh_from_db()
    return printer


# --- Batches ------------------------------------------------------------------------------------


def _batch_set_held(*, batch_id: int, actor: User, is_held: bool) -> Batch:
    floor_access_check(actor)
    with transaction.atomic():
        batch = Batch.objects.select_for_update().select_related("printer").filter(pk=batch_id).first()
        if batch is None:
            raise NotFound(ProductionError.BATCH_NOT_FOUND, "No such batch.")
        if batch.is_held == is_held:
            state = "held" if is_held else "not held"
            raise DomainError(ProductionError.BATCH_HOLD_UNCHANGED, f"The batch is {state}.", is_held=is_held)
        Batch.objects.filter(pk=batch.pk).update(is_held=is_held)
        JobEvent.objects.create(
            printer=batch.printer,
            kind="batch_held" if is_held else "batch_released",
            actor=actor,
            note=f"batch={batch.pk} {batch.size} {batch.paper}",
        )
        if not is_held:
            _poll_after_commit()
    batch.refresh_from_db()
    return batch


def batch_hold(*, batch_id: int, actor: User) -> Batch:
    """Keep a batch's ready jobs from being sent (e.g. while paper is changed)."""
    return _batch_set_held(batch_id=batch_id, actor=actor, is_held=True)


def batch_release(*, batch_id: int, actor: User) -> Batch:
    return _batch_set_held(batch_id=batch_id, actor=actor, is_held=False)


# --- Jobs ---------------------------------------------------------------------------------------


def _item_keeps_a_print(job: PrintJob) -> None:
    """A job may be cancelled only while another job of its item is not cancelled (printed, on its way, or
    waiting for a person): a reprint not needed after all, say. Cancelling an item's last job made the order
    ready to pack without that item, where it could be neither packed, reprinted, held nor cancelled."""
    others = PrintJob.objects.filter(item_id=job.item_id).exclude(pk=job.pk)
    if not others.exclude(status=J.CANCELLED).exists():
        raise Conflict(
            ProductionError.JOB_NOT_CANCELLABLE,
            f"Job {job.pk} is the only print of its item: cancelling it would leave the item unmade. "
            "Send it to another printer, or have a supervisor cancel the whole order.",
        )


def job_cancel(*, job_id: int, actor: User, note: str = "") -> PrintJob:
    """Cancel a job; one already at the printer is cancelled there first, so the database never lies."""
    floor_access_check(actor)
    job = floor_job(job_id)
    if job.status not in CANCELLABLE:
        raise DomainError(
            ProductionError.JOB_NOT_CANCELLABLE, f"Job {job.pk} is {job.status} and cannot be cancelled."
        )
    _item_keeps_a_print(job)  # checked before the printer is asked, and again under the order's lock
    if job.status == J.SUBMITTED:
        assert job.printer is not None
        # Recorded before the printer is asked, under the person it is for: the listener may move the job
        # meanwhile (to `failed`, say), the move below then fails, and the cancel made at the printer would
        # otherwise be nobody's.
        JobEvent.objects.create(
            job=job,
            printer=job.printer,
            kind="printer_cancel_requested",
            actor=actor,
            note=f"{job.backend_job_id} at {job.printer.name}"[:500],
        )
        try:
            # slow I/O, outside any transaction
            backend_for(job.printer).cancel_of(job.backend_job_id, title=job.title)
        except PrinterError as error:
            raise UpstreamError(
                ProductionError.PRINTER_CANCEL_FAILED,
                f"The printer did not cancel job {job.pk}: {error.message}",
            ) from error
    with transaction.atomic():
        order_locked(order_id=job.order_id)  # two people cancelling an item's two jobs at once: one wins
        _item_keeps_a_print(job)
        # A job back in `ready`/`failed` after a transient error may have its earlier send held at the
        # printer: cancelled there too (by its title), or it prints after all.
        earlier_send = job.status != J.SUBMITTED and job.submit_attempts > 0
        moved = jobs.job_move(
            job_id=job.pk,
            from_statuses={job.status},
            # Decided from the job as read, before the lock: a send by the worker since then (back in `ready`
            # after a transient error, its copy held at the printer) is a change, not a job never sent.
            where=Q(submit_attempts=job.submit_attempts),
            to_status=J.CANCELLED,
            kind=JOB_CANCELLED,
            note=note or JOB_CANCELLED_NOTE,
            actor_id=actor.pk,
            cancel_at_printer=earlier_send,
        )
        if moved and job.reprint_of_id is not None:
            _rejection_given_back(original_id=job.reprint_of_id, actor=actor, reprint=job)
    if not moved:
        raise Conflict(ProductionError.JOB_CHANGED, f"Job {job.pk} changed meanwhile; look again and retry.")
    if earlier_send:
        printer_cancels_settle(order_id=job.order_id)
    # The order may now be complete: everything else of it printed.
    tracking.order_check_printed(order_id=job.order_id)
    job.refresh_from_db()
    return job


def _rejection_given_back(*, original_id: int, actor: User, reprint: PrintJob) -> None:
    """A reprint cancelled as not needed: the prints it alone had rejected on its original are no longer
    rejected (before, they stayed so, and the station refused the item's full count until someone reprinted
    prints nobody had found bad). What the quality check rejected, and what other reprints replace, stays
    rejected. Under the order's lock (the caller's), as reprints and checks."""
    original = PrintJob.objects.get(pk=original_id)
    rejected = max(original.copies_rejected_at_check, copies_replaced(original))
    if rejected < original.copies_rejected:
        PrintJob.objects.filter(pk=original.pk).update(copies_rejected=rejected, updated_at=timezone.now())
        JobEvent.objects.create(
            job=original,
            kind="copies_rejected_given_back",
            actor=actor,
            note=f"reprint {reprint.pk} cancelled: {rejected} of {original.copies} copies rejected",
        )
