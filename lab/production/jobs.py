"""Print jobs' one write path and hand-offs: new jobs are written by `jobs_create`, every status change goes
through `job_move` (checked against the state machine, its JobEvent in the same transaction), failures
through `job_fail`, and the next step is sent by name after the commit (`rasterize_enqueue`,
`submit_enqueue`).

Work is claimed with a conditional move on the job's status before any slow step (healthchecks' pattern),
so a task delivered twice, or two workers, never rasterize or submit one job twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from lab.audit.grants import grants_revoke
from lab.lib.tasks import enqueue
from lab.production.models import Batch, JobEvent, Printer, PrintJob
from lab.production.states import JOB_MACHINE, JobStatus

logger = logging.getLogger(__name__)
J = JobStatus


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def print_queue(printer: Printer) -> str:
    """Print tasks go to the worker on the host attached to the printer (queue per print host)."""
    return f"print.{printer.host}" if printer.host else "print"


def rasterize_enqueue(job_id: int) -> None:
    enqueue("production.print_job_rasterize", job_id=job_id, queue="raster")


def submit_enqueue(job: PrintJob, countdown: float | None = None) -> None:
    assert job.printer is not None
    enqueue("production.print_job_submit", job_id=job.pk, queue=print_queue(job.printer), countdown=countdown)


def jobs_create(placements: list[tuple[PrintJob, Printer | None, Batch | None]]) -> list[PrintJob]:
    """Write new jobs (unsaved, `no_printer`), each placed on its printer and batch when it has one: such a
    job is written `queued`, with the events a job routed afterwards gets (`created`, then `routed`), and its
    raster is asked for after the commit. The rows are new in the caller's transaction, so nobody else can
    hold them: no lock and no conditional move are needed, and any number of jobs costs two inserts."""
    JOB_MACHINE.check(J.NO_PRINTER, J.QUEUED)
    jobs: list[PrintJob] = []
    for job, printer, batch in placements:
        if printer is not None:
            job.status, job.printer, job.batch = J.QUEUED, printer, batch
        jobs.append(job)
    PrintJob.objects.bulk_create(jobs)
    events: list[JobEvent] = []
    for job in jobs:
        events.append(JobEvent(job=job, kind="created", to_status=J.NO_PRINTER))
        if job.printer is not None:
            events.append(
                JobEvent(
                    job=job,
                    printer=job.printer,  # where it waits, as job_move records it (the supervisor's figures)
                    kind="routed",
                    from_status=J.NO_PRINTER,
                    to_status=J.QUEUED,
                    note=f"printer={job.printer.name}",
                )
            )
    JobEvent.objects.bulk_create(events)
    queued = [job.pk for job in jobs if job.status == J.QUEUED]

    def rasterize_all() -> None:
        for job_id in queued:
            rasterize_enqueue(job_id)

    transaction.on_commit(rasterize_all)
    for job_id in queued:
        logger.info("job status job=%s from=%s to=%s", job_id, J.NO_PRINTER, J.QUEUED)
    return jobs


def job_move(
    *,
    job_id: int,
    from_statuses: frozenset[str] | set[str],
    to_status: str,
    kind: str = "status_changed",
    note: str = "",
    actor_id: int | None = None,
    where: Q | None = None,
    **fields: object,
) -> bool:
    """The one place a job's status is written, claims included: checked against the state machine, the row
    locked, the UPDATE and its JobEvent in one transaction.

    Returns False (and changes nothing) when the job is no longer in one of `from_statuses` or does not
    match `where` (a claim's extra condition, e.g. an expired lease or an order that is not on hold).
    """
    for from_status in from_statuses:
        JOB_MACHINE.check(from_status, to_status)
    with transaction.atomic():
        current = (
            PrintJob.objects.select_for_update(of=("self",))
            .filter(where or Q(), pk=job_id, status__in=from_statuses)
            .first()
        )
        if current is None:
            return False
        PrintJob.objects.filter(pk=job_id).update(status=to_status, updated_at=timezone.now(), **fields)
        # The facts of the moment, on the event: the job's printer and failure code change later (a reroute
        # moves it and clears the code), and the supervisor's figures count each event where it happened.
        # The printer is the one the job is at after the move (a routing move names its new one).
        printer_after = fields.get("printer", fields.get("printer_id", current.printer_id))
        if isinstance(printer_after, Printer):
            printer_after = printer_after.pk
        JobEvent.objects.create(
            job_id=job_id,
            printer_id=printer_after if isinstance(printer_after, int) else None,
            kind=kind,
            from_status=current.status,
            to_status=to_status,
            failure_code=str(fields.get("failure_code", "")) if to_status == J.FAILED else "",
            note=note[:500],
            actor_id=actor_id,
        )
        if to_status in (J.PRINTED, J.CANCELLED):
            grants_revoke(context_type="print_job", context_id=job_id, reason=f"job_{to_status}")
    logger.info("job status job=%s from=%s to=%s", job_id, current.status, to_status)
    return True


def job_claim_take_back(
    *,
    job_id: int,
    claimed: str,
    back_to: str,
    worker: str,
    claimed_at: datetime,
    note: str = "the database went away as the claim committed; none of the work was done",
    **fields: Any,
) -> bool:
    """Undo a claim whose COMMIT raised, if it was applied after all (the database went away as it answered),
    once the database answers again. The worker got an error, so it did none of the work: the job goes back
    to wait for it. True when it was taken back (the caller sends the job's message again).

    Tried for half the claim's lease (a minute at most), so that the reconciler, which acts on a claim only
    once its lease ran out, does not act on it meanwhile; both moves are conditional, so only one happens.
    `fields`: set with the move (the send fence's take-back also clears the fence).
    """
    deadline = time.monotonic() + min(settings.PRODUCTION_CLAIM_LEASE_SECONDS / 2, 60)
    while True:
        close_old_connections()  # the connection that failed is closed and a new one opened
        try:
            released = job_move(
                job_id=job_id,
                from_statuses={claimed},
                to_status=back_to,
                kind="claim_released",
                note=note,
                where=Q(claimed_by=worker, claimed_at=claimed_at),
                claimed_at=None,
                claimed_by="",
                **fields,
            )
        except DatabaseError:
            if time.monotonic() > deadline:
                logger.warning("claim not taken back, left to the reconciler job=%s", job_id)
                return False
            time.sleep(0.5)
            continue
        if released:
            logger.info("claim taken back after the database went away job=%s", job_id)
        return released


def job_photo_changed_outside_the_lab(job: PrintJob, *, from_status: str, kind: str) -> bool:
    """True, and the job failed, when its photo's row no longer holds its seal or is not its order's, or
    its item is not its order's: it was re-pointed in the database alone (another customer's photo under
    this order, another photo's key and file under this one, or a job lent to the order whose photo its
    item was pointed at, to be given back to its own order to pack). Nothing is read, made or sent from it;
    a person looks. The rasterizer asks before it reads the photo, and the send before it decrypts the
    raster (an item re-pointed after its raster was made, with the other photo's raster named on the job,
    decrypts under that photo's key)."""
    asset = job.item.asset
    if asset.is_sealed and asset.belongs_to(job.order) and job.item.order_id == job.order_id:
        return False
    logger.error("photo changed outside the lab job=%s asset=%s", job.pk, asset.pk)
    job_fail(
        job_id=job.pk,
        from_statuses={from_status},
        kind=kind,
        code="photo_changed_outside_the_lab",
        message="The photo's record was changed outside the lab; nothing was read, printed or sent.",
    )
    return True


def job_fail(
    *,
    job_id: int,
    from_statuses: frozenset[str] | set[str],
    kind: str,
    code: str,
    message: str,
    is_permanent: bool = True,
    note: str | None = None,
    where: Q | None = None,
    **fields: object,
) -> bool:
    """Move a job to `failed` with its reason: a stable code for the board and a short message (`where`: a
    claim's extra condition, as in job_move)."""
    return job_move(
        job_id=job_id,
        from_statuses=from_statuses,
        to_status=J.FAILED,
        kind=kind,
        note=code if note is None else note,
        failure_code=code,
        failure_message=message[:300],
        failure_is_permanent=is_permanent,
        # Given explicitly, so that `**fields` can only be columns, never the actor or the claim condition.
        actor_id=None,
        where=where,
        **fields,
    )
