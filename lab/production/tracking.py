"""Tracking: read submitted jobs at their printers and move them on (printed, failed, suspect), and move
printed orders to packing; for the poll (every printer, each interval) and the printer-events listener."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from lab.lib.tasks import enqueue, queue_depth
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.production.backends import backend_for
from lab.production.jobs import job_fail, job_move, print_queue, submit_enqueue
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.routing import job_reroute, jobs_route_waiting
from lab.production.silence import SilentServers
from lab.production.states import JobStatus, PrinterState
from printers.base import JobInfo, JobState
from printers.errors import JOB_NOT_FOUND, PrinterError

logger = logging.getLogger(__name__)
J = JobStatus


def printer_poll(*, silent: SilentServers | None = None) -> dict[str, int]:
    """Refresh printer states and the state of every submitted job; move orders on when all printed.

    The safety net under the printer-events listener (lab/production/listener.py), which reads a job as soon
    as its server says it changed: a lost event, a listener that is down, or a backend without events (hot
    folders) costs at most one poll interval.

    silent: the round's servers that gave no answer, for the caller to go on with (the poll task settles
    the printer cancels in the same round).
    """
    counts: Counter[str] = Counter()
    watched: set[int] = set()
    silent = silent if silent is not None else SilentServers()
    printers = list(Printer.objects.all())
    for printer in printers:
        counts[_printer_refresh(printer, silent)] += 1
        if server_restarts_check(printer, silent=silent):
            watched.add(printer.pk)
    if requeued := _kick_ready_jobs([printer for printer in printers if printer.is_available]):
        counts["submit_requeued"] += requeued
    checked: list[PrintJob] = []
    for job in PrintJob.objects.filter(status=J.SUBMITTED).select_related("printer"):
        if job.printer_id not in watched:
            # A job is read only after its server's restarts are: else a job CUPS re-sent after a restart
            # that we have not heard of yet could complete here as a plain `printed`.
            counts["server_unchecked"] += 1
            continue
        checked.append(job)
    counts.update(jobs_track(checked, silent=silent))
    return dict(counts)


def jobs_track(jobs: Iterable[PrintJob], *, silent: SilentServers | None = None) -> Counter[str]:
    """Read each submitted job at its printer and move it on; an order whose jobs all printed goes to packing.

    The caller has heard of each job's server restarts first (`server_restarts_check` of its printer).
    Safe to run for the same job in two processes at once: every move is conditional (`job_move`).
    """
    counts: Counter[str] = Counter()
    touched_orders: set[int] = set()
    silent = silent or SilentServers()
    for job in jobs:
        outcome = _job_refresh(job, silent)
        counts[outcome] += 1
        if outcome == "printed":
            touched_orders.add(job.order_id)
    for order_id in sorted(touched_orders):
        order_check_printed(order_id=order_id)
    return counts


def _printer_refresh(printer: Printer, silent: SilentServers) -> str:
    error = silent.error_for(printer)  # not asked again: its server gave no answer earlier in this round
    if error is None:
        try:
            status = backend_for(printer).printer_status()
        except PrinterError as raised:
            silent.heard(printer, raised)
            error = raised
        else:
            state, reasons, message = str(status.state), list(status.reasons), status.message
    if error is not None:
        state, reasons, message = PrinterState.OFFLINE, [error.code], error.message
    changed = state != printer.state or reasons != printer.state_reasons
    if changed:
        was_available = printer.is_available
        fields: dict[str, Any] = {"state": state, "state_reasons": reasons, "state_message": message[:300]}
        if _stretch(state) != _stretch(printer.state):
            # Only a new stretch moves it: the printer-down alert's key carries it (one alert per outage), and
            # a printer down for one reason and then another (a missing folder, then an unwritable one;
            # offline, then in error) is one outage, which used to restart with each reason and go unalerted.
            fields["state_changed_at"] = timezone.now()
        Printer.objects.filter(pk=printer.pk).update(**fields)
        JobEvent.objects.create(
            printer=printer, kind="printer_state", to_status=state, note=",".join(reasons)[:500]
        )
        logger.info("printer state printer=%s state=%s reasons=%s", printer.name, state, ",".join(reasons))
        printer.refresh_from_db()
        if printer.is_available and not was_available:
            jobs_route_waiting()
    if printer.state in (PrinterState.OFFLINE, PrinterState.ERROR):  # an available one is kicked by the round
        _reroute_waiting_jobs(printer)
    return "printer_changed" if changed else "printer_same"


def _stretch(state: str) -> str:
    """Offline and error are one stretch for the supervisor: both are down, and alerted alike."""
    return "down" if state in (PrinterState.OFFLINE, PrinterState.ERROR) else state


def _kick_ready_jobs(printers: list[Printer]) -> int:
    """Send the submit of the `ready` jobs of these (available) printers again, only as many per print queue
    as the queue lacks against them, newest first, as the reconciler does for rasters; how many were sent.

    The nudge is for a submit message that was lost (a broker restarted without persistence, a message sent
    after a commit that never came). Every poll used to send one for every ready job: a queue nobody takes
    from (a host no print worker serves, a worker stopped or crash-looping) gained a message a job every
    poll, 8,640 a job a day in the Redis that holds the cache too, which the worker then worked through as
    no-ops before any new work. A message waiting is a submit still to come, so a lost one shows as fewer
    messages than jobs, and is sent again once the queue holds fewer than its jobs: later, never lost.
    Not a job of a held batch or of an order on hold (its submit would only answer `waiting`; once the hold
    is released, the next poll sends it), nor one waiting for its retry (`next_attempt_at`: that message is
    scheduled already).
    """
    now = timezone.now()
    by_queue: dict[str, list[PrintJob]] = {}
    for job in (
        PrintJob.objects.filter(printer__in=printers, status=J.READY)
        .exclude(batch__is_held=True)  # not a join that drops a job without a batch
        .exclude(order__status=OrderStatus.ON_HOLD)
        .exclude(next_attempt_at__gt=now)
        .select_related("printer")
        .order_by("-updated_at", "-pk")
    ):
        assert job.printer is not None
        by_queue.setdefault(print_queue(job.printer), []).append(job)
    sent = 0
    for queue, ready in sorted(by_queue.items()):
        # Newest first: messages a print worker has taken and not started (its prefetch) are the oldest
        # jobs'. None when the broker cannot say (down, restarting; an empty queue, which Redis does not
        # keep): every one, as before.
        depth = queue_depth(queue)
        resend = ready if depth is None else ready[: max(len(ready) - depth, 0)]
        for job in resend:
            submit_enqueue(job)
        sent += len(resend)
    return sent


def _reroute_waiting_jobs(printer: Printer) -> None:
    # Not a job with a send behind it: the printer may hold that send and print it when it comes back
    # (routing.job_reroute); it waits for its printer, whose retry looks for the send there first.
    for job in PrintJob.objects.filter(printer=printer, status__in=[J.QUEUED, J.READY], submit_attempts=0):
        job_reroute(job_id=job.pk, note=f"printer {printer.name} is {printer.state}")


def _job_refresh(job: PrintJob, silent: SilentServers) -> str:
    assert job.printer is not None
    if silent.error_for(job.printer) is not None:
        return "unreachable"
    try:
        info = backend_for(job.printer).job_info_of(job.backend_job_id, title=job.title)
    except PrinterError as error:
        silent.heard(job.printer, error)
        if error.code == JOB_NOT_FOUND:
            # The printer has no record of it: it may have printed it and dropped it from its history (a CUPS
            # MaxJobs rollover, a device reset) before this read, or lost it. Not found proves nothing, so a
            # person counts and decides, printed or send again (`unknown`). As `failed` it could only be sent
            # to another printer, a second print if the first had printed, and never called printed.
            if not job_move(
                job_id=job.pk,
                from_statuses={J.SUBMITTED},
                to_status=J.UNKNOWN,
                kind="job_lost",
                note=f"the printer has no record of backend job {job.backend_job_id}",
                where=Q(backend_job_id=job.backend_job_id),  # not a send superseded since the read
            ):
                return "moved_meanwhile"
            return "unknown"
        if error.is_permanent:
            if not job_fail(
                job_id=job.pk,
                from_statuses={J.SUBMITTED},
                kind="job_lost",
                code=error.code,
                message=error.message,
                is_permanent=False,  # the print is lost, not the job: a reprint can work
                where=Q(backend_job_id=job.backend_job_id),
            ):
                return "moved_meanwhile"
            return "failed"
        return "unreachable"
    restarted = _record_backend_progress(job=job, info=info)
    # Every move below is of the send just read: a read of a handle superseded meanwhile (a `no_document`
    # resend in another process) must not fail or finish the job while its new send prints.
    this_send = Q(backend_job_id=job.backend_job_id)
    if info.was_requeued:
        # cupsd restarted (or the queue was disabled) while the job was processing: CUPS put it back and will
        # send the whole document again. Take it back before it does; the device may have printed it once.
        if (
            _cancel_then_move(
                job,
                to_status=J.SUSPECT,
                kind="requeued_by_printer",
                note="CUPS put the job back mid-print; its re-send was cancelled: check whether it printed",
                backend_state=str(JobState.CANCELED),
            )
            is None
        ):
            return "unreachable"
        return "suspect"
    if info.is_missing_document:
        # Created at CUPS but its document never arrived (the submit was cut off): nothing can have printed.
        moved = _cancel_then_move(
            job,
            to_status=J.READY,
            kind="no_document",
            note=f"backend job {job.backend_job_id} has no document: cancelled, sent again",
            backend_job_id="",
            backend_state="",
            backend_started_at=None,
            next_attempt_at=None,
        )
        if moved is None:
            return "unreachable"
        if moved:
            submit_enqueue(job)
        return "resubmitted"
    stuck_since = timezone.now() - timedelta(seconds=settings.PRODUCTION_STUCK_JOB_SECONDS)
    if info.state is JobState.HELD and info.processing_started_at is None and job.updated_at < stuck_since:
        # Held at the printer and never started: nothing printed; a technician reroutes or reprints it.
        if (
            _cancel_then_move(
                job,
                to_status=J.FAILED,
                kind="backend_failed",
                note="held at the printer past the limit; cancelled there",
                failure_code="printer_held_job",
                failure_message=(info.message or ",".join(info.reasons))[:300],
            )
            is None
        ):
            return "unreachable"
        return "failed"
    if info.state is JobState.COMPLETED:
        if restarted or info.has_more_impressions_than(job.copies):
            # The document reached the device more than once: a person counts the prints.
            if not job_move(
                job_id=job.pk,
                from_statuses={J.SUBMITTED},
                to_status=J.SUSPECT,
                kind="printed_more_than_once",
                note=(
                    f"CUPS sent the job again after a restart (impressions {info.completed_impressions} "
                    f"for {job.copies} copies): count the prints"
                ),
                backend_state=str(info.state),
                where=this_send,
            ):
                return "moved_meanwhile"
            return "suspect"
        # The caller heard the server's restarts before this read, but one may have come between that check
        # and the read: CUPS then sent the job again, and it completed. Heard now, it marks this job (not the
        # next one, at a later check); unheard (no answer, or another process is hearing it), the job stays
        # submitted for the next round. One request per completed job, none per job still printing.
        if not server_restarts_check(job.printer, silent=silent):
            return "unreachable"
        # CUPS "completed" means sent to the device, not a good print: a person verifies the copies later.
        if not job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTED},
            to_status=J.PRINTED,
            kind="printed",
            printed_at=timezone.now(),
            backend_state=str(info.state),
            # A restart mark committed since the read (the check just above makes it): `suspect` next read.
            where=this_send & Q(backend_restarted=False),
        ):
            return "moved_meanwhile"
        return "printed"
    # CUPS stopped the job (e.g. a filter could not read the file): it will not finish by itself. Cancel it
    # at the printer so it cannot print later behind a technician's back; show it as failed.
    if info.state is JobState.STOPPED and not _backend_cancel(job):
        return "unreachable"
    if info.state in (JobState.ABORTED, JobState.CANCELED, JobState.STOPPED):
        if job.backend_started_at is not None or info.began:
            # It may have printed: cancelled at the CUPS console mid-print, or put back by CUPS and cancelled
            # by a tracker whose move to `suspect` was lost (killed, PostgreSQL gone, the other one first).
            # As `failed` it would be sent again unflagged. Judged from the start stored before any cancel.
            if not job_move(
                job_id=job.pk,
                from_statuses={J.SUBMITTED},
                to_status=J.SUSPECT,
                kind="began_then_ended",
                note=f"began at the device, then {info.state}: count the prints; {info.message}",
                backend_state=str(info.state),
                where=this_send,
            ):
                return "moved_meanwhile"
            return "suspect"
        if not job_fail(
            job_id=job.pk,
            from_statuses={J.SUBMITTED},
            kind="backend_failed",
            code=f"printer_{info.state}",
            message=info.message or ",".join(info.reasons),
            is_permanent=False,
            note=f"{info.state}: {info.message}",
            backend_state=str(info.state),
            where=this_send,
        ):
            return "moved_meanwhile"
        return "failed"
    return "waiting"


def _record_backend_progress(*, job: PrintJob, info: JobInfo) -> bool:
    """Save what the printer says of the job; True when it has started the job again since first seen."""
    # The caller's row may predate a restart mark committed since it was loaded (by another process, or by
    # the caller's own restart check just before): the mark is read from the database, not the row.
    marked = job.backend_restarted or PrintJob.objects.filter(pk=job.pk, backend_restarted=True).exists()
    restarted = marked or info.restarted_since(job.backend_started_at)
    fields: dict[str, object] = {}
    if str(info.state) != job.backend_state:
        fields["backend_state"] = str(info.state)
    if job.backend_started_at is None and info.processing_started_at is not None:
        fields["backend_started_at"] = info.processing_started_at
    if restarted and not marked:
        fields["backend_restarted"] = True
    if fields:
        with transaction.atomic():
            # Onto the send that was read only: a superseded send's times would read as a restart of the new.
            updated = PrintJob.objects.filter(pk=job.pk, backend_job_id=job.backend_job_id).update(**fields)
            if updated and "backend_restarted" in fields:
                JobEvent.objects.create(
                    job_id=job.pk,
                    kind="printer_restarted_job",
                    note=f"processing started again at {info.processing_started_at}",
                )
    return restarted


def _cancel_then_move(job: PrintJob, *, to_status: str, kind: str, **fields: Any) -> bool | None:
    """Take a submitted job back at the printer, then move it; None while the printer cannot be reached."""
    if not _backend_cancel(job):
        return None
    return job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTED},
        to_status=to_status,
        kind=kind,
        where=Q(backend_job_id=job.backend_job_id),  # the send that was read, not one that superseded it
        **fields,
    )


def _backend_cancel(job: PrintJob) -> bool:
    assert job.printer is not None
    try:
        backend_for(job.printer).cancel_of(job.backend_job_id, title=job.title)
    except PrinterError as error:
        if error.code == JOB_NOT_FOUND:
            return True
        logger.warning("printer cancel failed job=%s code=%s", job.pk, error.code)
        return False
    return True


def order_check_printed(*, order_id: int) -> bool:
    """When every job of an order that still counts is printed, the order is ready to pack."""
    with transaction.atomic():
        order = order_locked(order_id=order_id)
        if order.status != OrderStatus.IN_PRODUCTION:
            return False
        statuses = set(
            PrintJob.objects.filter(order=order).exclude(status=J.CANCELLED).values_list("status", flat=True)
        )
        if statuses != {J.PRINTED}:
            return False
        order_transition(order=order, to_status=OrderStatus.READY_TO_PACK, note="all jobs printed")
        transaction.on_commit(lambda: enqueue("packing.slip_render", order_id=order_id))
    return True
