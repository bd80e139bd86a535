"""Withdrawing a job's earlier sends from its printer before it moves or is sent again under a new title:
refused while a copy printed or prints, copies that may have printed listed for a person."""

from __future__ import annotations

from lab.accounts.models import User
from lab.lib.errors import Conflict, UpstreamError
from lab.production.backends import backend_for, copies_titled
from lab.production.cancellation import (
    copy_may_have_printed,
    copy_over_outcome,
    copy_was_printing,
    late_copies_list,
)
from lab.production.earlier_sends import sends_unaccounted
from lab.production.errors import ProductionError
from lab.production.models import JobEvent, PrintJob
from printers.base import FINAL_JOB_STATES, JobState
from printers.errors import JOB_NOT_CANCELABLE, PermanentPrinterError, PrinterError


def earlier_sends_withdraw(
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
    never arrived (earlier_sends.sends_unaccounted). The job's own retry finds the same and leaves it
    `unknown`, for a person who counts the prints. Recorded under `actor`, the person it is made for."""
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
