"""An expired submit claim (its worker lost between claiming and saving), settled by the reconcile sweep:
found at the printer, taken back when it never began to send, else `unknown`."""

from __future__ import annotations

from django.conf import settings
from django.db.models import F, Q

from lab.production.backends import backend_for, copies_titled
from lab.production.jobs import job_fail, job_move, submit_enqueue
from lab.production.models import PrintJob
from lab.production.send_landed import read_once
from lab.production.silence import SilentServers
from lab.production.states import JobStatus
from printers.base import JobInfo, JobState
from printers.errors import PrinterError

J = JobStatus


def reconcile_submitting(job: PrintJob, *, silent: SilentServers | None = None) -> str:
    """A submit claim whose lease ran out: its worker died (or stalls) between claiming and saving.

    The printer is asked for our title first: a copy that may print or has printed found → `submitted` with
    it (sent by this claim, or by an earlier attempt whose worker was lost before it adopted it; the newest,
    as a retry adopts: `_copy_to_adopt`). None, or only cancelled or aborted ones: if the claim never began
    to send (`sending_claim_at` unset, and the claim made by a worker that sets it: `fence_armed_at`),
    nothing of it can be at the printer, so the job goes back to `ready` and is sent again (and that
    attempt, like every retry, looks for an earlier one at the printer first); if it began, `unknown`, never
    sent again automatically (the printer may have printed it and dropped it from its history). A printer
    that does not answer settles only the claims that never began to send.

    silent: the sweep's round of calls. A server that gave no answer earlier in it is not asked again (a
    stalled cupsd holds each call for libcups' minute: one per expired claim ran the sweep into its time
    limit); its claims are settled as for a printer that does not answer.
    """
    assert job.printer is not None
    silent = silent if silent is not None else SilentServers()
    adopted: JobInfo | None = None
    reachable = silent.error_for(job.printer) is None
    if reachable:
        try:
            adopted = _copy_to_adopt(copies_titled(backend_for(job.printer), job.title))
        except PrinterError as error:
            silent.heard(job.printer, error)
            reachable = False  # the printer does not answer
    if adopted is None and _sent_nothing(job):
        return _claim_take_back_unsent(job)
    if not reachable:
        return "reconcile_unreachable"
    if adopted is not None:
        job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            to_status=J.SUBMITTED,
            kind="reconciled",
            note=f"found backend job {adopted.handle}",
            backend_job_id=adopted.handle,
            claimed_at=None,
            claimed_by="",
        )
        read_once(job.pk, silent=silent)
        return "reconciled"
    job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.UNKNOWN,
        kind="fate_unknown",
        note="worker lost during submit and the printer has no live job with our title",
        claimed_at=None,
        claimed_by="",
    )
    return "unknown"


def _copy_to_adopt(found: list[JobInfo]) -> JobInfo | None:
    """Of the printer's copies with our title (oldest first), the one the job is: the newest that may print or
    has printed; failing that, the newest created without its document (the read that follows the adoption
    cancels it and sends the job again). A cancelled or aborted copy is none: adopted, the job was `failed`
    while a later send of it printed, and could then be neither moved nor cancelled (before, the oldest copy
    was taken, whatever its state: `test_the_reconciler_adopts_the_live_send_not_an_earlier_cancelled_one`).
    """
    alive = [j for j in found if j.state not in (JobState.CANCELED, JobState.ABORTED)]
    with_document = [j for j in alive if not j.is_missing_document]
    candidates = with_document or alive
    return candidates[-1] if candidates else None


def _sent_nothing(job: PrintJob) -> bool:
    """The claim was made by a worker that sets the send fence (this version's), and its fence is unset."""
    return (
        job.sending_claim_at is None and job.claimed_at is not None and job.fence_armed_at == job.claimed_at
    )


def _claim_take_back_unsent(job: PrintJob) -> str:
    """Take back an expired submit claim that sent nothing, unless its worker set the fence meanwhile."""
    where = Q(
        claimed_at=job.claimed_at,
        claimed_by=job.claimed_by,
        sending_claim_at=None,
        fence_armed_at=F("claimed_at"),
    )
    if job.submit_attempts >= settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS:
        # Every claim so far ended with its worker lost before the send (a worker killed each time it reads
        # this raster, say): a person looks, instead of a loop of claims that never ends.
        failed = job_fail(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            kind="submit_failed",
            code="worker_lost",
            message=f"The worker was lost before sending, {job.submit_attempts} times; nothing was sent.",
            is_permanent=False,
            where=where,
        )
        return "failed" if failed else "claim_moved"
    taken = job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.READY,
        kind="claim_expired_unsent",
        note=f"{job.claimed_by}: lease ran out before the send; nothing was sent",
        where=where,
        claimed_at=None,
        claimed_by="",
    )
    if not taken:
        # Its worker set the fence, or the job moved on meanwhile: the next sweep looks again.
        return "claim_moved"
    submit_enqueue(job)
    return "claims_taken_back"
