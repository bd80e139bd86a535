"""A person's decision on a job nobody knows the outcome of (`unknown`) or that may have printed twice
(`suspect`): printed, or not printed and sent again under a new title."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from lab.accounts.models import User
from lab.lib.errors import Conflict, DomainError
from lab.lib.tasks import enqueue
from lab.production import jobs, tracking
from lab.production.errors import ProductionError
from lab.production.floor_access import floor_access_check, floor_job
from lab.production.models import TITLE_SUPERSEDED, JobEvent, PrintJob, new_title_token
from lab.production.states import NEEDS_PERSON_JOB_STATUSES, JobStatus
from lab.production.withdrawals import earlier_sends_withdraw

J = JobStatus


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
    job = floor_job(job_id)
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
            earlier_sends_withdraw(job, actor=actor, judged_handle=judged, refused="changed")
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
