"""Technician actions on the production floor: printers, batches, reroutes, cancels, reprints, QC.

Each action checks the actor's role, refuses an illegal move with a DomainError before changing anything,
and leaves a JobEvent naming the actor; job statuses are written only through jobs.job_move.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from lab.accounts.models import User
from lab.accounts.roles import FLOOR_ROLES, QC_ROLES, has_role
from lab.lib.errors import CommonError, Conflict, DomainError, NotFound, PermissionDenied, UpstreamError
from lab.lib.tasks import enqueue
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.production import jobs, routing, signals, tracking
from lab.production.backends import backend_for, copies_titled
from lab.production.cancellation import (
    copy_may_have_printed,
    copy_over_outcome,
    copy_was_printing,
    late_copies_list,
    printer_cancels_settle,
)
from lab.production.errors import ProductionError
from lab.production.models import (
    JOB_CANCELLED,
    JOB_CANCELLED_NOTE,
    JOB_REPRINT_REQUESTED,
    TITLE_SUPERSEDED,
    Batch,
    JobEvent,
    Printer,
    PrintJob,
    new_title_token,
)
from lab.production.states import NEEDS_PERSON_JOB_STATUSES, JobStatus, ReprintReason
from lab.production.submission import sends_unaccounted
from printers.base import FINAL_JOB_STATES, JobState
from printers.errors import JOB_NOT_CANCELABLE, PermanentPrinterError, PrinterError

logger = logging.getLogger(__name__)
J = JobStatus

REROUTABLE = frozenset({J.QUEUED, J.READY, J.FAILED})
CANCELLABLE = frozenset(
    {J.NO_PRINTER, J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTED, J.FAILED, J.UNKNOWN, J.SUSPECT}
)
# A reprint goes back into production, so the order must still be on the floor.
REPRINTABLE_ORDER_STATUSES = frozenset({OrderStatus.IN_PRODUCTION, OrderStatus.READY_TO_PACK})


def floor_access_check(actor: User, roles: Collection[str] = FLOOR_ROLES) -> None:
    if not has_role(actor, *roles):
        raise PermissionDenied(CommonError.NOT_ALLOWED, "Your role may not do this on the production floor.")


def _printer(printer_id: int, *, lock: bool = False) -> Printer:
    query = Printer.objects.select_for_update() if lock else Printer.objects.all()
    printer = query.filter(pk=printer_id).first()
    if printer is None:
        raise NotFound(ProductionError.PRINTER_NOT_FOUND, "No such printer.")
    return printer


def _job(job_id: int) -> PrintJob:
    job = PrintJob.objects.select_related("printer", "order", "item__product").filter(pk=job_id).first()
    if job is None:
        raise NotFound(ProductionError.JOB_NOT_FOUND, "No such print job.")
    return job


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


def job_reroute_by_staff(*, job_id: int, actor: User, printer_id: int | None = None) -> PrintJob:
    """Send a job that has not been submitted to another capable printer (least loaded when not named).

    A failed job may also be sent again on its own printer (named, or the one left when no other holds its
    media): before, a failure meant for a person (a job held at the printer, the attempts run out, a job the
    printer aborted or stopped, a destination changed outside the lab) on the only printer with its media
    could only be cancelled with its whole order. Only to a printer whose destination the lab wrote (its
    seal holds): the send would refuse it again otherwise.

    Whatever its printer still holds of an earlier send is withdrawn first (slow I/O, outside any
    transaction); the job then moves only if it is still as it was read: a retry that claimed and sent it
    meanwhile (its send may be at the printer) leaves it where it is, and the person is told to look again.
    """
    floor_access_check(actor)
    job = _job(job_id)
    if job.status not in REROUTABLE:
        raise DomainError(
            ProductionError.JOB_NOT_REROUTABLE,
            f"Job {job.pk} is {job.status}; only queued, ready or failed jobs move.",
        )
    again_here = _may_send_again_here(job, named=printer_id is not None and printer_id == job.printer_id)
    if routing.reroute_target(job, printer_id=printer_id, again_on_its_printer=again_here) is None:
        raise _no_printer_for(job, printer_id=printer_id, again_here=again_here)
    as_read = Q(status=job.status, submit_attempts=job.submit_attempts, printer_id=job.printer_id)
    withdrawn = job.submit_attempts > 0 and _earlier_sends_withdraw(
        job, actor=actor, unaccounted_refuse=job.status == J.READY
    )
    moved = routing.job_reroute(
        job_id=job.pk,
        printer_id=printer_id,
        actor_id=actor.pk,
        earlier_sends_withdrawn=withdrawn,
        again_on_its_printer=again_here,
        as_read=as_read,
    )
    if not moved:
        if PrintJob.objects.filter(as_read, pk=job.pk).exists():
            # Still as read: the printer went away meanwhile.
            raise _no_printer_for(job, printer_id=printer_id, again_here=again_here)
        raise Conflict(ProductionError.JOB_CHANGED, f"Job {job.pk} changed meanwhile; look again and retry.")
    job.refresh_from_db()
    return job


def _may_send_again_here(job: PrintJob, *, named: bool) -> bool:
    """Whether a failed job may be sent again on its own printer; `named`: the person chose that printer,
    refused here with the reason when it may not."""
    printer = job.printer
    if printer is None or job.status != J.FAILED:
        if named:
            raise DomainError(ProductionError.SAME_PRINTER, f"Job {job.pk} is already on that printer.")
        return False
    if not printer.destination_is_sealed:
        # The send refuses an unsealed destination (lab/production/submission.py): the job would fail again.
        if named:
            raise DomainError(ProductionError.NO_CAPABLE_PRINTER, _unsealed_message(job, printer))
        return False
    if named and not printer.is_available:
        state = "paused" if printer.is_paused_by_lab else printer.state
        raise DomainError(
            ProductionError.NO_CAPABLE_PRINTER,
            f"{printer.name} is {state}: send job {job.pk} again there once it is back, or to another "
            "printer.",
        )
    return True


def _unsealed_message(job: PrintJob, printer: Printer) -> str:
    return (
        f"{printer.name}'s destination was changed outside the lab: job {job.pk} is sent again there once a "
        "lab admin has saved the printer on its page."
    )


def _no_printer_for(job: PrintJob, *, printer_id: int | None, again_here: bool) -> DomainError:
    size = job.item.product.size_label
    printer = job.printer
    message = f"No other online printer holds {size} media."
    if printer is not None and printer_id == printer.pk:
        message = f"{printer.name} is not online with {size} media now: send job {job.pk} again once it is."
    elif printer is not None and printer_id is None and job.status == J.FAILED:
        if again_here:
            message = (
                f"No online printer holds {size} media, {printer.name} included: send job {job.pk} again "
                "once one does."
            )
        else:
            message = f"No other online printer holds {size} media, and {_unsealed_message(job, printer)}"
    return DomainError(ProductionError.NO_CAPABLE_PRINTER, message)


def _earlier_sends_withdraw(
    job: PrintJob,
    *,
    actor: User,
    judged_handle: str = "",
    refused: str = "moved",
    unaccounted_refuse: bool = False,
) -> bool:
    """Before a job with a send behind it moves to another printer, or is sent again under a new title: every
    copy of it its printer still holds is cancelled there, so that only the new send prints. Refused (nothing
    `refused`) when the printer does not answer (it may print the copy once it does), has printed one already
    (a new send would print a second), or its device has one right now (`processing`, or a hot folder's
    device took the ticket before the cancel: a cancel may reach the device after the print is made);
    `judged_handle` is a copy a person has judged (the one a `suspect` job is about), which does not refuse.
    Any other copy that may have printed (cancellation.copy_may_have_printed: stopped, put back in the queue,
    impressions made) is cancelled and the move goes ahead, with a MAY_HAVE_PRINTED event that lists the job
    on the board (lab.production.alerts.late_copy_unflagged_events) for a person to count the prints: such a
    copy never finishes by itself, and waiting for it kept the job from ever moving. So is a copy over without
    completing that began at its device (`canceled, began`: cancelled at the CUPS console mid-print), unless
    an earlier event listed it already (cancellation.late_copies_list).

    `unaccounted_refuse` (the move of a `ready` job, between the retries of its send): refused too when an
    attempt may have reached the printer that lists nothing of it, printed and purged from its history or
    never arrived (submission.sends_unaccounted). The job's own retry finds the same and leaves it `unknown`,
    for a person who counts the prints. Recorded under `actor`, the person it is made for."""
    assert job.printer is not None
    backend = backend_for(job.printer)
    try:
        copies = copies_titled(backend, job.title)
        if any(copy.state is JobState.COMPLETED and copy.handle != judged_handle for copy in copies):
            raise Conflict(
                ProductionError.EARLIER_SEND_PRINTED,
                f"Job {job.pk} was printed by {job.printer.name} from an earlier send; it is not sent again. "
                "Count the prints there.",
            )
        if any(copy.state is JobState.PROCESSING and copy.handle != judged_handle for copy in copies):
            # Its device has it: a cancel may reach it after the print is made (CUPS then calls the copy
            # `canceled`), and the new send printed a second. Before, it was cancelled and the job moved.
            raise _earlier_send_printing(job, refused=refused)
        if unaccounted_refuse and sends_unaccounted(job=job, listed=[copy.handle for copy in copies]):
            raise Conflict(
                ProductionError.EARLIER_SEND_PRINTED,
                f"Job {job.pk} may have been printed by {job.printer.name} from an earlier send it no longer "
                "lists; it is not moved. Count the prints there.",
            )
        may_have_printed: dict[str, str] = {}
        for copy in copies:
            if copy.state in FINAL_JOB_STATES:
                # One over without completing that began at its device (cancelled at the CUPS console
                # mid-print) may have printed: before, it was read as over only, and the job was sent again
                # with nothing for a person to count.
                outcome = copy_over_outcome(copy)
                printing = copy_was_printing(outcome)
            else:
                try:
                    backend.cancel(copy.handle)
                except PermanentPrinterError as error:
                    if error.code != JOB_NOT_CANCELABLE:
                        raise
                    # Taken by its device since it was listed (a hot folder's ticket): as `processing`.
                    raise _earlier_send_printing(job, refused=refused) from error
                outcome = f"{copy.handle}:{copy.state}, cancel asked"
                printing = copy_may_have_printed(copy)
            # A copy an earlier move or send again listed is not listed twice (late_copies_list: one alert
            # for one copy).
            if printing and copy.handle != judged_handle:
                may_have_printed[copy.handle] = outcome
    except PrinterError as error:
        raise UpstreamError(
            ProductionError.PRINTER_CANCEL_FAILED,
            f"{job.printer.name} may still hold an earlier send of job {job.pk} and does not answer "
            f"({error.message}); nothing was {refused}. Try again once it answers.",
        ) from error
    # The kind the board lists for a job not cancelled (alerts.late_copy_unflagged_events): a copy at the old
    # printer may have printed, and the job is sent again.
    late_copies_list(job=job, outcomes=may_have_printed, actor_id=actor.pk)
    JobEvent.objects.create(
        job=job,
        kind="earlier_sends_withdrawn",
        actor=actor,
        note=f"{len(copies)} at {job.printer.name}",
    )
    return True


def _earlier_send_printing(job: PrintJob, *, refused: str) -> Conflict:
    assert job.printer is not None
    return Conflict(
        ProductionError.EARLIER_SEND_PRINTING,
        f"{job.printer.name} is printing an earlier send of job {job.pk}; nothing was {refused}. "
        "Wait until it has finished, then count the prints there.",
    )


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
    job = _job(job_id)
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
    rejected = max(original.copies_rejected_at_check, _copies_replaced(original))
    if rejected < original.copies_rejected:
        PrintJob.objects.filter(pk=original.pk).update(copies_rejected=rejected, updated_at=timezone.now())
        JobEvent.objects.create(
            job=original,
            kind="copies_rejected_given_back",
            actor=actor,
            note=f"reprint {reprint.pk} cancelled: {rejected} of {original.copies} copies rejected",
        )


def _order_on_the_floor_check(order: Order, why: str) -> None:
    """Reprints and quality checks are for an order still on the floor (REPRINTABLE_ORDER_STATUSES); `why`
    ends the refusal's message."""
    if order.status not in REPRINTABLE_ORDER_STATUSES:
        raise Conflict(
            ProductionError.ORDER_NOT_IN_PRODUCTION,
            f"Order {order.ref} is {order.get_status_display().lower()}; {why}",
        )


def _copies_replaced(original: PrintJob) -> int:
    """How many of a job's prints its reprints replace (those not cancelled)."""
    return int(
        PrintJob.objects.filter(reprint_of=original)
        .exclude(status=J.CANCELLED)
        .aggregate(n=Sum("copies"))["n"]
        or 0
    )


def job_reprint(
    *,
    job_id: int,
    actor: User,
    reason: str,
    copies: int,
    note: str = "",
    request_key: str = "",
    last_reprint_seen: int | None = None,
) -> PrintJob:
    """A new job for `copies` more prints of a printed job, routed like a released one.

    `request_key` is the reprint form's one-time key: the same request sent again (a double click, a resend
    after a slow answer) returns the reprint it made, and nothing prints twice. `last_reprint_seen` is the
    newest reprint of the job when the form was opened (0: none): a reprint made since (another tab, another
    technician, each with its own key) refuses this one, so the same damaged prints are reprinted once.
    """
    floor_access_check(actor)
    if reason not in ReprintReason.values:
        raise DomainError(
            ProductionError.INVALID_REPRINT_REASON, f"Choose a reprint reason: {', '.join(ReprintReason)}."
        )
    original = _job(job_id)
    if original.status != J.PRINTED:
        raise DomainError(
            ProductionError.JOB_NOT_PRINTED,
            f"Job {original.pk} is {original.status}; only printed jobs are reprinted.",
        )
    if not 1 <= copies <= original.copies:
        raise DomainError(
            ProductionError.INVALID_COPIES,
            f"Reprint between 1 and {original.copies} copies of job {original.pk}.",
        )
    with transaction.atomic():
        order = order_locked(order_id=original.order_id)
        # Under the order's lock, so a request sent twice at once finds the reprint its first copy made.
        made = (
            PrintJob.objects.filter(reprint_of=original, reprint_request_key=request_key).first()
            if request_key
            else None
        )
        if made is not None:
            logger.info("reprint request replayed job=%s reprint=%s", original.pk, made.pk)
            return made
        _order_on_the_floor_check(order, "reprints are for orders still on the floor.")
        # A reprint replaces prints of the original: together, never more than it printed. Two tabs (each
        # with its own form key) or two technicians asking for the same damaged prints make one reprint; a
        # reprint that is damaged in turn is reprinted itself.
        replaced = _copies_replaced(original)
        if replaced + copies > original.copies:
            raise Conflict(
                ProductionError.REPRINT_EXCEEDS_COPIES,
                f"{replaced} of job {original.pk}'s {original.copies} copies are already being reprinted; "
                f"at most {original.copies - replaced} more. A damaged reprint is reprinted from its job.",
            )
        if last_reprint_seen is not None:
            # Part of the prints: within the copies, the cap above lets both through (before, a bent print
            # asked for from two tabs was reprinted twice, and two of three prints counted rejected).
            newer = (
                PrintJob.objects.filter(reprint_of=original, pk__gt=last_reprint_seen).order_by("pk").first()
            )
            if newer is not None:
                raise Conflict(
                    ProductionError.JOB_CHANGED,
                    f"Another reprint of job {original.pk} was made since you opened this page (job "
                    f"{newer.pk}, {newer.copies} copies); nothing was reprinted. "
                    "Look again before reprinting.",
                )
        reprint = PrintJob.objects.create(
            order=order,
            item=original.item,
            copies=copies,
            status=J.NO_PRINTER,
            reprint_of=original,
            reprint_reason=reason,
            reprint_request_key=request_key,
        )
        JobEvent.objects.create(
            job=reprint,
            kind=JOB_REPRINT_REQUESTED,
            to_status=J.NO_PRINTER,
            actor=actor,
            note=f"reprint of job {original.pk}: {reason} {note}".strip()[:500],
        )
        # The copies this reprint replaces are no longer counted good: an item the packer counted before it is
        # counted again, with the replacement (before, the earlier count stood and the order could be packed
        # with the rejected prints and without the reprint). Under the order's lock, as the packer's count.
        # They are rejected prints from now on: no later count (the packer's, the quality check's) makes
        # them good again.
        verified, rejected, packed = (
            PrintJob.objects.filter(pk=original.pk)
            .values_list("copies_verified", "copies_rejected", "copies_packed")
            .get()
        )
        # Rejected: at least the prints its reprints replace (a print the quality check rejected is the one
        # reprinted, not another one). Counted good: at most the prints not rejected, by the check as by the
        # packer (copies_packed, the station's count, which only the packer raises again).
        rejected = max(rejected, replaced + copies)
        still_counted = min(verified, original.copies - rejected)
        PrintJob.objects.filter(pk=original.pk).update(
            copies_verified=still_counted,
            copies_packed=min(packed, original.copies - rejected),
            copies_rejected=rejected,
            updated_at=timezone.now(),
        )
        if verified:
            JobEvent.objects.create(
                job=original,
                kind="copies_verified",
                actor=actor,
                note=f"reprint {reprint.pk}: {still_counted} of {original.copies} still counted",
            )
        if order.status == OrderStatus.READY_TO_PACK:
            order_transition(
                order=order,
                to_status=OrderStatus.IN_PRODUCTION,
                actor=actor,
                actor_kind="staff",
                note=f"reprint of job {original.pk}: {reason}",
            )
        # No capable printer online: the reprint waits as no_printer and is routed when one appears.
        routing.job_route(PrintJob.objects.select_related("item__product").get(pk=reprint.pk))
        signals.reprint_made.send(sender=PrintJob, reprint=reprint, reason=reason)  # the order as it is now
    logger.info("reprint requested job=%s reprint=%s reason=%s", original.pk, reprint.pk, reason)
    reprint.refresh_from_db()
    return reprint


def job_resolve_unknown(
    *, job_id: int, actor: User, was_printed: bool, title_token: str | None = None
) -> PrintJob:
    """A person decides what happened to a job whose outcome nobody knows (unknown), or that CUPS may have
    printed twice (suspect): printed (extra copies discarded), or not printed and sent again.

    `title_token` is the send the person judged (the job's title token when the page was opened): a job sent
    again since under a new title (another person answered "not printed", and that send is unknown in turn)
    refuses, as the prints counted were of the earlier send (before, "it printed" marked it printed while the
    new send could still print, and "send again" made a third send)."""
    floor_access_check(actor)
    job = _job(job_id)
    if job.status not in NEEDS_PERSON_JOB_STATUSES:
        raise DomainError(
            ProductionError.JOB_NOT_UNKNOWN,
            f"Job {job.pk} is {job.status}; only unknown or suspect jobs are resolved.",
        )
    as_judged = Q() if title_token is None else Q(title_token=title_token)
    if title_token is not None and job.title_token != title_token:
        raise Conflict(
            ProductionError.JOB_CHANGED,
            f"Job {job.pk} changed since you opened this page: it was sent again since. Nothing was changed; "
            "look again and count its prints.",
        )
    if was_printed:
        moved = jobs.job_move(
            job_id=job.pk,
            from_statuses={job.status},
            to_status=J.PRINTED,
            kind="resolved_printed",
            actor_id=actor.pk,
            where=as_judged,
            printed_at=timezone.now(),
        )
        if moved:
            tracking.order_check_printed(order_id=job.order_id)
    else:
        if job.printer is not None:
            # What the printer still holds under the title given up is cancelled first (slow I/O, outside any
            # transaction): before, a copy waiting there (a send that reached it while its submit failed)
            # printed along with the new send, and the job ended `printed` with nothing to say so. The
            # completed copy a `suspect` job is about is the one the person rejected; any other completed
            # since refuses, as a reroute: the person counts again.
            judged = job.backend_job_id if job.status == J.SUSPECT else ""
            _earlier_sends_withdraw(job, actor=actor, judged_handle=judged, refused="changed")
        with transaction.atomic():
            # A person counted no good copy: whatever the printer holds of earlier sends is not this job's
            # print. A new title, and the attempts and restart marks cleared, so the next send is a first one
            # and no retry adopts an earlier copy by its title (before, "send again" on a `suspect` job
            # adopted the completed copy the person had just rejected, and the job was `suspect` again with
            # nothing sent). The title given up is recorded with it: the copies sent under it are still this
            # job's, and the spool sweep erases them once over at the printer (lab/production/spool.py).
            given_up = (
                PrintJob.objects.select_for_update().values_list("title_token", flat=True).get(pk=job.pk)
            )
            moved = jobs.job_move(
                job_id=job.pk,
                from_statuses={job.status},
                to_status=J.READY,
                kind="resolved_not_printed",
                actor_id=actor.pk,
                where=as_judged,
                next_attempt_at=None,
                title_token=new_title_token(),
                submit_attempts=0,
                backend_job_id="",
                backend_state="",
                backend_started_at=None,
                backend_restarted=False,
            )
            if moved:
                JobEvent.objects.create(
                    job_id=job.pk,
                    printer_id=job.printer_id,
                    kind=TITLE_SUPERSEDED,
                    actor=actor,
                    note=given_up,
                )
            if moved and job.printer is not None:
                queue = jobs.print_queue(job.printer)
                transaction.on_commit(
                    lambda: enqueue("production.print_job_submit", job_id=job.pk, queue=queue)
                )
    if not moved:
        raise Conflict(ProductionError.JOB_CHANGED, f"Job {job.pk} changed meanwhile; look again and retry.")
    job.refresh_from_db()
    return job


def job_verify_copies(*, job_id: int, actor: User, copies: int) -> PrintJob:
    """Quality check: a person counted `copies` good prints of a printed job."""
    floor_access_check(actor, QC_ROLES)
    job = _job(job_id)
    if job.status != J.PRINTED:
        raise DomainError(
            ProductionError.JOB_NOT_PRINTED, f"Job {job.pk} is {job.status}; only printed jobs are checked."
        )
    if not 0 <= copies <= job.copies:
        raise DomainError(
            ProductionError.INVALID_COPIES, f"Job {job.pk} has {job.copies} copies; you entered {copies}."
        )
    with transaction.atomic():
        # Under the order's lock, as reprints and the packer's count: a check is for an order on the floor,
        # and the prints a reprint replaces are not good, whatever a form opened before it says.
        order = order_locked(order_id=job.order_id)
        _order_on_the_floor_check(order, "copies are checked while it is on the floor.")
        replaced = _copies_replaced(job)
        if copies > job.copies - replaced:
            raise DomainError(
                ProductionError.INVALID_COPIES,
                f"{replaced} of job {job.pk}'s {job.copies} copies are replaced by reprints; "
                f"at most {job.copies - replaced} of its prints are good.",
            )
        current = PrintJob.objects.get(pk=job.pk)  # the check as it stands, under the order's lock
        if copies > current.copies - current.copies_rejected and not has_role(actor, *FLOOR_ROLES):
            # A packer records checks too, but does not overrule the floor's: a print rejected at a check is
            # called good again only by a technician or supervisor (before, the packer's own check wiped the
            # rejection, and the box was packed with the rejected print).
            raise PermissionDenied(
                CommonError.NOT_ALLOWED,
                f"{current.copies_rejected} of job {job.pk}'s prints were rejected at a quality check; only a"
                " technician or supervisor can count them good.",
            )
        # The prints its reprints replace are rejected by them, not by this check (it cannot count them good):
        # a reprint cancelled as not needed gives them back (before, the check recorded them as its own, and
        # the station refused the item until prints nobody had found bad were reprinted). What an earlier
        # check rejected stays rejected unless this one counts it good: it may be among the prints replaced,
        # which this check cannot look at (before, a check after the reprint wiped it, and cancelling the
        # reprint let the print the first check rejected be packed).
        earlier = min(current.copies_rejected_at_check, job.copies - copies)
        at_check = max(job.copies - copies - replaced, earlier)
        # The packer's count (copies_packed) is the packer's: a check never raises it (before, a check of a
        # reprint at the printer confirmed its item at the station, and the box was packed without the
        # replacement counted); it lowers it to the prints it found good.
        updated = PrintJob.objects.filter(pk=job.pk, status=J.PRINTED).update(
            copies_verified=copies,
            copies_packed=min(current.copies_packed, copies),
            copies_rejected=job.copies - copies,
            copies_rejected_at_check=max(0, at_check),
            updated_at=timezone.now(),
        )
        if not updated:
            raise Conflict(ProductionError.JOB_CHANGED, f"Job {job.pk} changed meanwhile.")
        JobEvent.objects.create(
            job=job, kind="copies_verified", actor=actor, note=f"{copies} of {job.copies} copies good"
        )
    job.refresh_from_db()
    return job
