"""Reprints of a printed job's damaged prints, and the quality check's count of its good prints, while its
order is on the floor."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from lab.accounts.models import User
from lab.accounts.roles import FLOOR_ROLES, QC_ROLES, has_role
from lab.lib.errors import CommonError, Conflict, DomainError, PermissionDenied
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.production import routing, signals
from lab.production.errors import ProductionError
from lab.production.floor_access import floor_access_check, floor_job
from lab.production.models import JOB_REPRINT_REQUESTED, JobEvent, PrintJob
from lab.production.states import JobStatus, ReprintReason

logger = logging.getLogger(__name__)
J = JobStatus

# A reprint goes back into production, so the order must still be on the floor.
REPRINTABLE_ORDER_STATUSES = frozenset({OrderStatus.IN_PRODUCTION, OrderStatus.READY_TO_PACK})


def _order_on_the_floor_check(order: Order, why: str) -> None:
    """Reprints and quality checks are for an order still on the floor (REPRINTABLE_ORDER_STATUSES); `why`
    ends the refusal's message."""
    if order.status not in REPRINTABLE_ORDER_STATUSES:
        raise Conflict(
            ProductionError.ORDER_NOT_IN_PRODUCTION,
            f"Order {order.ref} is {order.get_status_display().lower()}; {why}",
        )


def copies_replaced(original: PrintJob) -> int:
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
    original = floor_job(job_id)
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
        replaced = copies_replaced(original)
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


def job_verify_copies(*, job_id: int, actor: User, copies: int) -> PrintJob:
    """Quality check: a person counted `copies` good prints of a printed job."""
    floor_access_check(actor, QC_ROLES)
    job = floor_job(job_id)
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
        replaced = copies_replaced(job)
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
