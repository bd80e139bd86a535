"""What a send reached at the printer: the handle saved (`submitted`, `adopted`), read once, and a send
that landed after the job was cancelled or moved on without it (cancelled at the printer, or listed
as a copy that may have printed)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from lab.production.cancellation import (
    ALREADY_PRINTED,
    LATE_COPY_NOT_CANCELLED,
    MAY_HAVE_PRINTED,
    cancel_note,
    copies_listed_record,
    copy_cancel,
    copy_cancel_refused,
    copy_was_printing,
    copy_withdrawn,
    printer_cancel_refused,
)
from lab.production.jobs import job_move
from lab.production.models import JobEvent, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.silence import SilentServers
from lab.production.states import JobStatus
from lab.production.tracking import jobs_track
from printers.base import JobState, PrinterBackend
from printers.errors import PrinterError

logger = logging.getLogger(__name__)
J = JobStatus


def _late_copy_note(handle: str, outcome: str, what: str) -> str:
    """A `late_copy_not_cancelled` note naming the copy as `handle:state…` after a MAY_HAVE_PRINTED (or, for a
    copy that completed, ALREADY_PRINTED) prefix, as lab.production.actions writes it, for people; the copy
    itself is recorded as listed with the event (cancellation.copies_listed_record), so that a later move or
    cancel does not list it again. `outcome`: copy_cancel's (`handle:…`), or a printer error's code."""
    copy = outcome if outcome.startswith(f"{handle}:") else f"{handle}:{outcome}"
    prefix = ALREADY_PRINTED if copy.endswith(f":{JobState.COMPLETED}") else MAY_HAVE_PRINTED
    return f"{prefix}: {copy}, {what}"


def read_once(job_id: int, *, silent: SilentServers | None = None) -> None:
    """Read a job just found at its printer (adopted, reconciled) and move it on, its server's restarts heard
    first. No event may ever come for it: it may have completed already, or a cupsd restart may have put it
    back in its queue before we knew its handle, where CUPS leaves it unscheduled (printers/cups_backend.py);
    read now, the first is printed and the second cancelled before a re-send, without waiting for the poll.
    silent: the caller's round of calls (the reconciler's), whose silent servers are not asked."""
    job = PrintJob.objects.select_related("printer").get(pk=job_id)
    silent = silent if silent is not None else SilentServers()
    if (
        job.status == J.SUBMITTED
        and job.printer is not None
        and server_restarts_check(job.printer, silent=silent)
    ):
        jobs_track([job], silent=silent)


def submitted(
    *, job: PrintJob, handle: str, kind: str, backend: PrinterBackend, claimed_at: datetime | None = None
) -> str:
    """Save the handle of what reached the printer. `claimed_at`: the claim that sent it itself (not one that
    adopted an earlier attempt), whose send may land after the job moved on without it."""
    moved = job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.SUBMITTED,
        kind=kind,
        note=f"backend job {handle}",
        backend_job_id=handle,
        claimed_at=None,
        claimed_by="",
        failure_code="",
        failure_message="",
    )
    if moved:
        return kind
    if claimed_at is not None:
        late = _late_send_landed(job=job, handle=handle, backend=backend, claimed_at=claimed_at)
        if late is not None:
            return late
    # Cancelled (a supervisor's cancel) while we were sending: take back what we sent, now. Any other move
    # meanwhile (the reconciler found this very job by its title after our lease ran out) is left alone.
    # The handle is saved and the printer cancel flagged again in one UPDATE: the cancel may have been
    # settled at the printer before this send landed (our lease ran out, or the reconciler had made the job
    # `unknown`: the printer held no copy then, and the settle cleared the flag). Before, the flag stayed
    # cleared, and a copy the cancel below could not stop printed for a cancelled order with no trace.
    if not PrintJob.objects.filter(pk=job.pk, status=J.CANCELLED).update(
        backend_job_id=handle, cancel_at_printer=True
    ):
        logger.warning("job moved on during a slow submit, left to the reconciler job=%s", job.pk)
        return "superseded"
    # Its state read first (copy_cancel): CUPS takes a job to its device at once, and cancels a `processing`
    # one without an error while the device prints it. Before, that copy was recorded as cleanly "sent, then
    # cancelled", and a print of a cancelled, refunded order was on neither the board nor an alert.
    try:
        outcome = copy_cancel(backend, handle, title=job.title)
    except PrinterError as error:
        if error.is_permanent:
            return _cancelled_copy_not_cancelled(job=job, handle=handle, reason=error.code)
        logger.warning(
            "job cancelled during submit, printer cancel pending job=%s code=%s", job.pk, error.code
        )
        return "cancel_pending"  # cancel_at_printer is set: the poll cancels it and records how it ended
    if not copy_withdrawn(outcome) and not copy_was_printing(outcome):
        return _cancelled_copy_not_cancelled(job=job, handle=handle, reason=outcome)  # printed, or gone
    note = (
        f"{handle}: sent, then cancelled"
        if outcome == f"{handle}:cancelled"
        else cancel_note([outcome], f"{outcome}, sent after the job was cancelled")
    )
    if copy_cancel_refused(outcome):
        # Its device has the copy and would not give it back: pending until the copy is over, as the poll's
        # cancel leaves it (listed as may have printed).
        printer_cancel_refused(job=job, note=note)
        return "cancel_pending"
    with transaction.atomic():
        if PrintJob.objects.filter(pk=job.pk, cancel_at_printer=True).update(
            cancel_at_printer=False, claimed_at=None, claimed_by=""
        ):
            JobEvent.objects.create(job_id=job.pk, kind="printer_cancelled", note=note[:500])
    return "cancelled"


def _cancelled_copy_not_cancelled(*, job: PrintJob, handle: str, reason: str) -> str:
    """Our send reached the printer after the job was cancelled, and it printed first (`reason` its
    copy_cancel outcome, completed or gone from the printer's history), or the printer refuses for good to
    cancel it (`reason` the error's code). Asked again it refuses again: the printer cancel is settled now,
    the job's history saying that its copy may have printed for a cancelled order. Unless the poll settled
    it meanwhile (the flag cleared), which recorded what it found."""
    note = _late_copy_note(handle, reason, "sent after the job was cancelled, not cancelled")
    logger.warning("copy sent after the cancel not cancelled job=%s reason=%s", job.pk, reason)
    assert job.printer is not None
    with transaction.atomic():
        if PrintJob.objects.filter(pk=job.pk, cancel_at_printer=True).update(
            cancel_at_printer=False, claimed_at=None, claimed_by=""
        ):
            event = JobEvent.objects.create(
                job_id=job.pk, printer=job.printer, kind=LATE_COPY_NOT_CANCELLED, note=note[:500]
            )
            copies_listed_record(event=event, printer_id=job.printer.pk, handles=[handle])
    return LATE_COPY_NOT_CANCELLED


def _late_send_landed(
    *, job: PrintJob, handle: str, backend: PrinterBackend, claimed_at: datetime
) -> str | None:
    """Our own send landed after our lease ran out and the job moved on without it. None: cancelled, or the
    reconciler found this very copy (the caller's cases).

    - The reconciler found no copy at the printer then and left the job `unknown` for a person: this is the
      copy it was waiting for, so the job is `submitted` with it (the fence names our claim).
    - A person decided meanwhile (sent it again, or called it printed): ours is a second copy, cancelled at
      the printer; if it cannot be (the printer does not answer, it printed already, or its device is
      printing it: a cancel CUPS accepts then does not stop the print), a `submitted` job is flagged
      `suspect` (may have printed twice), and in any other state the job's history says so.
    """
    current = PrintJob.objects.filter(pk=job.pk).values("status", "backend_job_id").first()
    if current is None or current["status"] == J.CANCELLED or current["backend_job_id"] == handle:
        return None
    if current["status"] == J.UNKNOWN and job_move(
        job_id=job.pk,
        from_statuses={J.UNKNOWN},
        to_status=J.SUBMITTED,
        kind="late_send_landed",
        note=f"backend job {handle}: the send its worker began reached the printer after its lease",
        where=Q(sending_claim_at=claimed_at),
        backend_job_id=handle,
    ):
        read_once(job.pk)
        return "late_send_landed"
    # Its state read first (copy_cancel): one its device prints is not withdrawn by a cancel CUPS accepts.
    # Before, it was `late_copy_cancelled`, and two prints went unseen.
    try:
        outcome = copy_cancel(backend, handle, title=job.title)
    except PrinterError as error:
        outcome = error.code
    if not copy_withdrawn(outcome):
        note = _late_copy_note(handle, outcome, "a late second copy the printer did not cancel")[:500]
        logger.warning("late second copy not cancelled job=%s outcome=%s", job.pk, outcome)
        assert job.printer is not None
        with transaction.atomic():
            if job_move(
                job_id=job.pk,
                from_statuses={J.SUBMITTED},
                to_status=J.SUSPECT,
                kind=LATE_COPY_NOT_CANCELLED,
                note=note,
            ):
                # The move's event: the job's last move to `suspect` of this kind, its row locked by the move
                # until this commits (no other move of it in between).
                event = JobEvent.objects.filter(
                    job_id=job.pk, kind=LATE_COPY_NOT_CANCELLED, to_status=J.SUSPECT
                ).latest("pk")
            else:
                event = JobEvent.objects.create(
                    job_id=job.pk, printer=job.printer, kind=LATE_COPY_NOT_CANCELLED, note=note
                )
            # At the printer the copy was sent to: a job_move's event names the job's printer now.
            copies_listed_record(event=event, printer_id=job.printer.pk, handles=[handle])
        return LATE_COPY_NOT_CANCELLED
    JobEvent.objects.create(
        job_id=job.pk,
        kind="late_copy_cancelled",
        note=f"backend job {handle}: sent after the job was decided without it, cancelled at the printer",
    )
    logger.warning("late second copy cancelled at the printer job=%s", job.pk)
    return "late_copy_cancelled"
