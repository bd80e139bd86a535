"""A person's move of a job that has not been submitted to another capable printer, or its send again on
its own printer after a failure (its earlier sends withdrawn first: lab.production.withdrawals)."""

from __future__ import annotations

from django.db.models import Q

from lab.accounts.models import User
from lab.lib.errors import Conflict, DomainError
from lab.production import routing
from lab.production.errors import ProductionError
from lab.production.floor_access import floor_access_check, floor_job
from lab.production.models import Printer, PrintJob
from lab.production.states import JobStatus
from lab.production.withdrawals import earlier_sends_withdraw

J = JobStatus

REROUTABLE = frozenset({J.QUEUED, J.READY, J.FAILED})


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
    job = floor_job(job_id)
    if job.status not in REROUTABLE:
        raise DomainError(
            ProductionError.JOB_NOT_REROUTABLE,
            f"Job {job.pk} is {job.status}; only queued, ready or failed jobs move.",
        )
    again_here = _may_send_again_here(job, named=printer_id is not None and printer_id == job.printer_id)
    if routing.reroute_target(job, printer_id=printer_id, again_on_its_printer=again_here) is None:
        raise _no_printer_for(job, printer_id=printer_id, again_here=again_here)
    as_read = Q(status=job.status, submit_attempts=job.submit_attempts, printer_id=job.printer_id)
    withdrawn = job.submit_attempts > 0 and earlier_sends_withdraw(
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
