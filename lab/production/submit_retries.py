"""A submit attempt that failed on the way: `failed` for a permanent error, else back to `ready` with
backoff (`submit_retry` when it may have reached the printer, `submit_retry_unsent` when not), and the
last attempt allowed settled by asking the printer once more."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from lab.lib.backoff import backoff_delay
from lab.production.backends import backend_for
from lab.production.earlier_sends import (
    SUBMIT_RETRY,
    SUBMIT_RETRY_UNSENT,
    earlier_attempt_at_printer,
    fate_unknown,
    sends_unaccounted,
)
from lab.production.jobs import job_fail, job_move, submit_enqueue
from lab.production.models import PrintJob
from lab.production.send_landed import read_once, submitted
from lab.production.states import JobStatus
from printers.errors import PrinterError

logger = logging.getLogger(__name__)
J = JobStatus


def _retry_delay(attempt: int) -> float:
    return backoff_delay(
        attempt=attempt,
        first=timedelta(seconds=settings.PRODUCTION_RETRY_BASE_SECONDS),
        cap=timedelta(seconds=settings.PRODUCTION_RETRY_CAP_SECONDS),
    ).total_seconds()


def submit_failed(*, job: PrintJob, error: PrinterError, may_have_reached: bool) -> str:
    """`may_have_reached`: anything of this attempt may have reached the printer (recorded on its event:
    `submit_retry`, else `submit_retry_unsent`), so that a later look that finds nothing of it there does not
    take that for "never arrived"."""
    if error.is_permanent:
        job_fail(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            kind="submit_failed",
            code=error.code,
            message=error.message,
        )
        logger.warning("job submit failed permanently job=%s code=%s", job.pk, error.code)
        return "failed"
    if job.submit_attempts >= settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS:
        return _last_attempt_failed(job=job, error=error, may_have_reached=may_have_reached)
    delay = _retry_delay(job.submit_attempts)
    job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.READY,
        kind=SUBMIT_RETRY if may_have_reached else SUBMIT_RETRY_UNSENT,
        note=f"{error.code}; retry in {delay:.0f}s"
        + ("" if may_have_reached else "; nothing reached the printer"),
        failure_code=error.code,
        failure_message=error.message[:300],
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        claimed_at=None,
        claimed_by="",
    )
    logger.info("job submit transient failure job=%s code=%s retry_in=%s", job.pk, error.code, delay)
    submit_enqueue(job, countdown=delay)
    return "retry"


def _last_attempt_failed(*, job: PrintJob, error: PrinterError, may_have_reached: bool) -> str:
    """The last attempt allowed failed on the way. Its send (or an earlier one) may have reached the printer
    all the same: a transient error can follow a send that got through (cupsd stopping as the document was
    confirmed). `failed` would then be a dead end — no way to `printed`, a reroute or cancel refused while
    the copy prints — so the printer is asked for our title once more: found → adopted like any retry's find;
    the printer answers without it → `failed` only when every attempt that may have reached it is accounted
    for by what it lists (`sends_unaccounted`: nothing of ours can have printed, a reroute is safe), else
    `unknown` (printed and forgotten by the printer, or never arrived); the printer does not answer →
    `unknown`, for a person who counts the prints and decides."""
    try:
        look = earlier_attempt_at_printer(job=job)
    except PrinterError as look_error:
        moved = job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            to_status=J.UNKNOWN,
            kind="submit_outcome_unknown",
            note=f"{error.code} after {job.submit_attempts} attempts; the printer could not be asked whether"
            f" a send reached it ({look_error.code})",
            claimed_at=None,
            claimed_by="",
        )
        return "unknown" if moved else "superseded"
    if look.alive is not None:
        assert job.printer is not None  # the look above asked it
        outcome = submitted(
            job=job, handle=look.alive.handle, kind="adopted", backend=backend_for(job.printer)
        )
        if outcome == "adopted":
            read_once(job.pk)
        return outcome
    unaccounted = sends_unaccounted(job=job, listed=look.listed, this_attempt=may_have_reached)
    if unaccounted:
        return fate_unknown(
            job=job,
            kind="submit_outcome_unknown",
            note=f"{error.code} after {job.submit_attempts} attempts; {unaccounted} of them may have reached"
            " the printer, which lists no copy of them (printed and purged from its history, or never"
            " arrived)",
        )
    job_fail(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        kind="submit_failed",
        code=error.code,
        message=error.message,
        is_permanent=False,
        note=f"{error.code} after {job.submit_attempts} attempts",
    )
    return "failed"
