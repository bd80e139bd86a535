"""Production: release paid orders into print jobs, route them, rasterize, submit, track, reconcile.

Work is claimed with a conditional UPDATE on the job's status before any slow step (healthchecks' pattern),
so a task delivered twice, or two workers, never rasterize or submit one job twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from lab.audit.gate import system_image_access
from lab.audit.grants import grants_revoke
from lab.lib.tasks import enqueue, queue_depth
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_locked, order_transition
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.vault import vault_delete, vault_read, vault_write
from lab.production import raster
from lab.production.backends import backend_for, media_for
from lab.production.models import Batch, JobEvent, Printer, PrintJob
from lab.production.states import ACTIVE_JOB_STATUSES, JOB_MACHINE, JobStatus, PrinterState
from printers.base import JobInfo, JobState, PrinterBackend
from printers.errors import JOB_NOT_FOUND, PrinterError

logger = logging.getLogger(__name__)
J = JobStatus


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def print_queue(printer: Printer) -> str:
    """Print tasks go to the worker on the host attached to the printer (queue per print host)."""
    return f"print.{printer.host}" if printer.host else "print"


def _enqueue_rasterize(job_id: int) -> None:
    enqueue("production.print_job_rasterize", job_id=job_id, queue="raster")


def _enqueue_submit(job: PrintJob, countdown: float | None = None) -> None:
    assert job.printer is not None
    enqueue("production.print_job_submit", job_id=job.pk, queue=print_queue(job.printer), countdown=countdown)


def job_move(
    *,
    job_id: int,
    from_statuses: frozenset[str] | set[str],
    to_status: str,
    kind: str = "status_changed",
    note: str = "",
    actor_id: int | None = None,
    **fields: object,
) -> bool:
    """The one place a job's status is written: a conditional UPDATE, checked against the state machine.

    Returns False (and changes nothing) when the job is no longer in one of `from_statuses`.
    """
    for from_status in from_statuses:
        JOB_MACHINE.check(from_status, to_status)
    with transaction.atomic():
        current = PrintJob.objects.select_for_update().filter(pk=job_id, status__in=from_statuses).first()
        if current is None:
            return False
        PrintJob.objects.filter(pk=job_id).update(status=to_status, updated_at=timezone.now(), **fields)
        JobEvent.objects.create(
            job_id=job_id,
            kind=kind,
            from_status=current.status,
            to_status=to_status,
            note=note[:500],
            actor_id=actor_id,
        )
        if to_status in (J.PRINTED, J.CANCELLED):
            grants_revoke(context_type="print_job", context_id=job_id, reason=f"job_{to_status}")
    logger.info("job status job=%s from=%s to=%s", job_id, current.status, to_status)
    return True


# --- Release and routing ------------------------------------------------------------------------


def _capable_printers(*, size: str, paper: str) -> list[Printer]:
    return [
        p
        for p in Printer.objects.filter(state=PrinterState.ONLINE, is_paused_by_lab=False)
        if p.holds(size=size, paper=paper)
    ]


def _least_loaded(printers: list[Printer], *, exclude: int | None = None) -> Printer | None:
    candidates = [p for p in printers if p.pk != exclude]
    if not candidates:
        return None
    load = Counter(
        PrintJob.objects.filter(printer__in=candidates, status__in=ACTIVE_JOB_STATUSES).values_list(
            "printer_id", flat=True
        )
    )
    return min(candidates, key=lambda p: (load[p.pk], p.name))


def _batch_for(*, printer: Printer, size: str, paper: str) -> Batch:
    batch, _ = Batch.objects.get_or_create(printer=printer, size=size, paper=paper, is_open=True)
    return batch


def _job_media(job: PrintJob) -> tuple[str, str]:
    product = job.item.product
    return product.size_label, product.paper


def order_release(*, order_id: int) -> int:
    """A paid order becomes one print job per item (copies as a count), each routed to a printer."""
    with transaction.atomic():
        order = order_locked(order_id=order_id)
        if order.status != OrderStatus.PAID or PrintJob.objects.filter(order=order).exists():
            return 0  # released already, cancelled, or on hold: a redelivered task does nothing
        jobs = [
            PrintJob.objects.create(order=order, item=item, copies=item.copies, status=J.NO_PRINTER)
            for item in order.items.select_related("product")
        ]
        for job in jobs:
            JobEvent.objects.create(job=job, kind="created", to_status=J.NO_PRINTER)
            job_route(job)
        order_transition(order=order, to_status=OrderStatus.IN_PRODUCTION, note="released to production")
    return len(jobs)


def job_route(job: PrintJob, *, exclude_printer: int | None = None) -> bool:
    """Route a job waiting for a printer to the least loaded capable one; False when none can take it."""
    size, paper = _job_media(job)
    printer = _least_loaded(_capable_printers(size=size, paper=paper), exclude=exclude_printer)
    if printer is None:
        return False
    batch = _batch_for(printer=printer, size=size, paper=paper)
    moved = job_move(
        job_id=job.pk,
        from_statuses={J.NO_PRINTER},
        to_status=J.QUEUED,
        kind="routed",
        note=f"printer={printer.name}",
        printer=printer,
        batch=batch,
    )
    if moved:
        transaction.on_commit(lambda: _enqueue_rasterize(job.pk))
    return moved


def jobs_route_waiting() -> int:
    """Route jobs that were waiting for a capable printer (called when printers change)."""
    routed = 0
    for job in PrintJob.objects.filter(status=J.NO_PRINTER).select_related("item__product"):
        with transaction.atomic():
            routed += int(job_route(job))
    return routed


def job_reroute(
    *, job_id: int, printer_id: int | None = None, actor_id: int | None = None, note: str = ""
) -> bool:
    """Move a job that has not been sent yet to another capable printer (least loaded when not named)."""
    job = PrintJob.objects.select_related("item__product").get(pk=job_id)
    size, paper = _job_media(job)
    capable = _capable_printers(size=size, paper=paper)
    if printer_id is not None:
        capable = [p for p in capable if p.pk == printer_id]
    target = _least_loaded(capable, exclude=job.printer_id)
    if target is None:
        return False
    batch = _batch_for(printer=target, size=size, paper=paper)
    # A raster made for another printer (resolution, profile) is made again for the new one.
    moved = job_move(
        job_id=job.pk,
        from_statuses={J.QUEUED, J.READY, J.FAILED},
        to_status=J.QUEUED,
        kind="rerouted",
        note=note or f"printer={target.name}",
        actor_id=actor_id,
        printer=target,
        batch=batch,
        failure_code="",
        failure_message="",
        failure_is_permanent=False,
    )
    if moved:
        transaction.on_commit(lambda: _enqueue_rasterize(job.pk))
    return moved


# --- Rasterize ----------------------------------------------------------------------------------


def print_job_rasterize(*, job_id: int, worker: str) -> str:
    lease_expired = timezone.now() - timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS)
    with transaction.atomic():
        # The claim and its event commit together: every job transition leaves its event.
        claimed = PrintJob.objects.filter(pk=job_id, status=J.QUEUED).update(
            status=J.RASTERIZING, claimed_at=timezone.now(), claimed_by=worker, updated_at=timezone.now()
        )
        if claimed:
            JobEvent.objects.create(
                job_id=job_id, kind="claimed", from_status=J.QUEUED, to_status=J.RASTERIZING, note=worker
            )
        else:
            claimed = PrintJob.objects.filter(
                pk=job_id, status=J.RASTERIZING, claimed_at__lt=lease_expired
            ).update(claimed_at=timezone.now(), claimed_by=worker, updated_at=timezone.now())
            if claimed:
                JobEvent.objects.create(
                    job_id=job_id,
                    kind="lease_taken_over",
                    from_status=J.RASTERIZING,
                    to_status=J.RASTERIZING,
                    note=worker,
                )
    if not claimed:
        return "not_claimed"
    job = PrintJob.objects.select_related("printer", "order", "item__product", "item__asset__data_key").get(
        pk=job_id
    )
    printer, item = job.printer, job.item
    assert printer is not None
    asset = item.asset
    try:
        system_image_access(asset=asset, job_id=job.pk, order_ref=job.order.ref)
        original = vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
        result = raster.rasterize(
            data=original,
            spec=raster.RasterSpec(
                width_in=float(item.product.width_in),
                height_in=float(item.product.height_in),
                dpi=printer.dpi,
                sizing="fit" if item.sizing == "fit" else "fill",
                output_format="tiff" if printer.output_format == "tiff" else "jpeg",
                output_icc=bytes(printer.icc_profile) if printer.icc_profile else None,
            ),
        )
    except (raster.RasterError, KeyDestroyed, DecryptionFailed, FileNotFoundError) as error:
        code = getattr(error, "code", "asset_unreadable")
        job_move(
            job_id=job.pk,
            from_statuses={J.RASTERIZING},
            to_status=J.FAILED,
            kind="raster_failed",
            note=code,
            failure_code=code,
            failure_message=str(error)[:300],
            failure_is_permanent=True,
        )
        return "failed"
    blob = vault_write(data_key=asset.data_key, plaintext=result.data, purpose="raster")
    old_blob = job.raster_blob
    moved = job_move(
        job_id=job.pk,
        from_statuses={J.RASTERIZING},
        to_status=J.READY,
        kind="rasterized",
        note=f"{result.width_px}x{result.height_px} {result.engine}",
        raster_blob=blob,
        raster_sha256=hashlib.sha256(result.data).hexdigest(),
        raster_width_px=result.width_px,
        raster_height_px=result.height_px,
        raster_printer=printer,
        raster_engine=result.engine,
        claimed_at=None,
        claimed_by="",
    )
    if not moved:
        vault_delete(name=blob)  # someone else finished (or cancelled) it meanwhile
        return "superseded"
    if old_blob:
        vault_delete(name=old_blob)
    _enqueue_submit(job)
    return "ready"


# --- Submit -------------------------------------------------------------------------------------


def _retry_delay(attempt: int) -> float:
    base = settings.PRODUCTION_RETRY_BASE_SECONDS
    return float(min(base * 2 ** max(attempt - 1, 0), settings.PRODUCTION_RETRY_CAP_SECONDS))


def print_job_submit(*, job_id: int, worker: str) -> str:
    """Claim the job, send the raster, save the backend's handle. Never sends one job twice."""
    job = PrintJob.objects.select_related("printer", "batch", "item__asset__data_key", "item__product").get(
        pk=job_id
    )
    printer = job.printer
    if job.status != J.READY or printer is None:
        return "not_ready"
    if job.raster_printer_id != printer.pk:
        job_move(job_id=job.pk, from_statuses={J.READY}, to_status=J.QUEUED, kind="re_raster")
        transaction.on_commit(lambda: _enqueue_rasterize(job.pk))
        return "re_raster"
    if not printer.is_available or (job.batch is not None and job.batch.is_held):
        return "waiting"  # printer_poll enqueues it again when the printer is back or the batch released
    if Order.objects.filter(pk=job.order_id, status=OrderStatus.ON_HOLD).exists():
        return "waiting"  # the customer is asked first; the poll sends it once the hold is released
    size, _ = _job_media(job)
    try:
        media = media_for(size)
    except ValueError as error:
        # Nothing was sent: a size with no printer media fails here with its reason, never as `unknown`.
        job_move(
            job_id=job.pk,
            from_statuses={J.READY},
            to_status=J.FAILED,
            kind="submit_failed",
            note="media_unknown",
            failure_code="media_unknown",
            failure_message=str(error)[:300],
            failure_is_permanent=True,
        )
        return "failed"
    with transaction.atomic():
        # Not for an order put on hold (or cancelled) since the check above: the claim itself re-checks.
        claimed = (
            PrintJob.objects.filter(pk=job_id, status=J.READY)
            .exclude(order__status__in=[OrderStatus.ON_HOLD, OrderStatus.CANCELLED])
            .update(
                status=J.SUBMITTING,
                claimed_at=timezone.now(),
                claimed_by=worker,
                submit_attempts=F("submit_attempts") + 1,
                updated_at=timezone.now(),
            )
        )
        if claimed:
            # The claim and its event commit together: every job transition leaves its event.
            JobEvent.objects.create(
                job=job, kind="claimed", from_status=J.READY, to_status=J.SUBMITTING, note=worker
            )
    if not claimed:
        return "not_claimed"
    job.refresh_from_db()
    asset = job.item.asset
    backend = backend_for(printer)
    try:
        if job.submit_attempts > 1:
            # An earlier attempt failed on the way (connection dropped, cupsd restarting): it may still have
            # reached the printer. Look before sending again, so a retry never makes a second copy.
            adopted = _earlier_attempt_at_printer(job=job)
            if adopted is not None:
                return _submitted(job=job, handle=adopted.handle, kind="adopted", backend=backend)
        with tempfile.TemporaryDirectory(prefix="lab-print-") as folder:
            path = Path(folder) / f"{job.title}.{'tif' if printer.output_format == 'tiff' else 'jpg'}"
            path.write_bytes(vault_read(data_key=asset.data_key, name=job.raster_blob, purpose="raster"))
            path.chmod(0o644)  # CUPS filters run as `lp` and must read it
            Path(folder).chmod(0o755)
            handle = backend.submit(
                path=path,
                title=job.title,
                media=media,
                copies=job.copies,
                attributes={"lab-job-id": str(job.pk)},
            )
    except PrinterError as error:
        return _submit_failed(job=job, error=error)
    except (KeyDestroyed, DecryptionFailed, FileNotFoundError) as error:
        # Nothing was sent: a raster that is gone or does not authenticate fails here, not as `unknown`.
        job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            to_status=J.FAILED,
            kind="submit_failed",
            failure_code="raster_unreadable",
            failure_message=str(error)[:300],
            failure_is_permanent=True,
        )
        return "failed"
    return _submitted(job=job, handle=handle, kind="submitted", backend=backend)


def _earlier_attempt_at_printer(*, job: PrintJob) -> JobInfo | None:
    """The printer's job with our title from an earlier attempt that it still may print (or printed).

    An earlier attempt that created the job but never delivered its document (the connection or cupsd went
    away between Create-Job and Send-Document) cannot print: it is cancelled here and the raster sent anew.
    """
    assert job.printer is not None
    backend = backend_for(job.printer)
    found = [j for j in backend.find_jobs(title_prefix=job.title) if j.title == job.title]
    for empty in [j for j in found if j.is_missing_document]:
        backend.cancel(empty.handle)
        JobEvent.objects.create(
            job_id=job.pk, kind="empty_attempt_cancelled", note=f"backend job {empty.handle} had no document"
        )
    alive = [
        j for j in found if j.state not in (JobState.CANCELED, JobState.ABORTED) and not j.is_missing_document
    ]
    return alive[-1] if alive else None


def _submitted(*, job: PrintJob, handle: str, kind: str, backend: PrinterBackend) -> str:
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
    # Cancelled (a supervisor's cancel) while we were sending: take back what we sent, now. Any other move
    # meanwhile (the reconciler found this very job by its title after our lease ran out) is left alone.
    if not PrintJob.objects.filter(pk=job.pk, status=J.CANCELLED).update(backend_job_id=handle):
        logger.warning("job moved on during a slow submit, left to the reconciler job=%s", job.pk)
        return "superseded"
    try:
        backend.cancel(handle)
    except PrinterError as error:
        logger.warning(
            "job cancelled during submit, printer cancel pending job=%s code=%s", job.pk, error.code
        )
        return "cancel_pending"  # cancel_at_printer stays set: the poll cancels it
    with transaction.atomic():
        if PrintJob.objects.filter(pk=job.pk, cancel_at_printer=True).update(
            cancel_at_printer=False, claimed_at=None, claimed_by=""
        ):
            JobEvent.objects.create(
                job_id=job.pk, kind="printer_cancelled", note=f"{handle}: sent, then cancelled"
            )
    return "cancelled"


def _submit_failed(*, job: PrintJob, error: PrinterError) -> str:
    if error.is_permanent:
        job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            to_status=J.FAILED,
            kind="submit_failed",
            note=error.code,
            failure_code=error.code,
            failure_message=error.message[:300],
            failure_is_permanent=True,
        )
        logger.warning("job submit failed permanently job=%s code=%s", job.pk, error.code)
        return "failed"
    if job.submit_attempts >= settings.PRODUCTION_MAX_SUBMIT_ATTEMPTS:
        job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            to_status=J.FAILED,
            kind="submit_failed",
            note=f"{error.code} after {job.submit_attempts} attempts",
            failure_code=error.code,
            failure_message=error.message[:300],
            failure_is_permanent=False,
        )
        return "failed"
    delay = _retry_delay(job.submit_attempts)
    job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.READY,
        kind="submit_retry",
        note=f"{error.code}; retry in {delay:.0f}s",
        failure_code=error.code,
        failure_message=error.message[:300],
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        claimed_at=None,
        claimed_by="",
    )
    logger.info("job submit transient failure job=%s code=%s retry_in=%s", job.pk, error.code, delay)
    _enqueue_submit(job, countdown=delay)
    return "retry"


# --- Tracking -----------------------------------------------------------------------------------


def printer_poll() -> dict[str, int]:
    """Refresh printer states and the state of every submitted job; move orders on when all printed."""
    counts: Counter[str] = Counter()
    watched: set[int] = set()
    for printer in Printer.objects.all():
        counts[_printer_refresh(printer)] += 1
        if _server_restarts_check(printer):
            watched.add(printer.pk)
    touched_orders: set[int] = set()
    for job in PrintJob.objects.filter(status=J.SUBMITTED).select_related("printer"):
        if job.printer_id not in watched:
            # A job is read only after its server's restarts are: else a job CUPS re-sent after a restart
            # that we have not heard of yet could complete here as a plain `printed`.
            counts["server_unchecked"] += 1
            continue
        outcome = _job_refresh(job)
        counts[outcome] += 1
        if outcome == "printed":
            touched_orders.add(job.order_id)
    for order_id in touched_orders:
        order_check_printed(order_id=order_id)
    return dict(counts)


def _server_restarts_check(printer: Printer) -> bool:
    """Hear of restarts of the printer's server since the last look; False when it cannot be asked now.

    At a cupsd restart the job it was sending to this printer is sent again from the start (see
    printers/cups_backend.py). CUPS prints one job at a time per queue, oldest first, so that job is our
    oldest one that was unfinished when cupsd started again: it is marked, and ends `suspect`, not `printed`.
    """
    try:
        events = backend_for(printer).server_events(
            watch=printer.server_watch_id, after=printer.server_event_sequence
        )
    except PrinterError:
        return False
    starts = list(events.started_at)
    if events.watch_lost:
        starts.append(int(timezone.now().timestamp()))  # restarted at an unknown time: assume just now
    for started_at in starts:
        _job_interrupted_by_restart(printer=printer, started_at=started_at)
    if (events.watch, events.last_sequence) != (printer.server_watch_id, printer.server_event_sequence):
        Printer.objects.filter(pk=printer.pk).update(
            server_watch_id=events.watch, server_event_sequence=events.last_sequence
        )
    return True


def _job_interrupted_by_restart(*, printer: Printer, started_at: int) -> None:
    backend = backend_for(printer)
    # A job cupsd had finished just before it stopped can come back `pending` (its control file still said
    # processing) and be sent again at a later restart: take such a printed job back at the printer.
    for job in PrintJob.objects.filter(
        printer=printer, status=J.PRINTED, printed_at__gte=timezone.now() - timedelta(hours=1)
    ).exclude(backend_job_id=""):
        try:
            if backend.job_info(job.backend_job_id).was_requeued:
                backend.cancel(job.backend_job_id)
                JobEvent.objects.create(
                    job_id=job.pk, kind="printer_requeued_printed_job", note="cancelled before a second print"
                )
        except PrinterError:
            continue
    unfinished: list[tuple[int, PrintJob]] = []
    for job in PrintJob.objects.filter(printer=printer, status=J.SUBMITTED, backend_restarted=False):
        try:
            info = backend.job_info(job.backend_job_id)
        except PrinterError:
            continue
        created_before = info.created_at is None or info.created_at <= started_at
        finished_before = info.completed_at is not None and info.completed_at < started_at
        if created_before and not finished_before and job.backend_job_id.isdigit():
            unfinished.append((int(job.backend_job_id), job))
    if not unfinished:
        return
    _, job = min(unfinished, key=lambda pair: pair[0])
    with transaction.atomic():
        PrintJob.objects.filter(pk=job.pk).update(backend_restarted=True)
        JobEvent.objects.create(
            job_id=job.pk,
            kind="printer_restarted_job",
            note=f"the print server restarted at {started_at} while this job was its oldest unfinished one",
        )
    logger.warning("print server restart may re-send job=%s printer=%s", job.pk, printer.name)


def _printer_refresh(printer: Printer) -> str:
    try:
        status = backend_for(printer).printer_status()
        state, reasons, message = str(status.state), list(status.reasons), status.message
    except PrinterError as error:
        state, reasons, message = PrinterState.OFFLINE, [error.code], error.message
    changed = state != printer.state or reasons != printer.state_reasons
    if changed:
        was_available = printer.is_available
        Printer.objects.filter(pk=printer.pk).update(
            state=state, state_reasons=reasons, state_message=message[:300], state_changed_at=timezone.now()
        )
        JobEvent.objects.create(
            printer=printer, kind="printer_state", to_status=state, note=",".join(reasons)[:500]
        )
        logger.info("printer state printer=%s state=%s reasons=%s", printer.name, state, ",".join(reasons))
        printer.refresh_from_db()
        if printer.is_available and not was_available:
            jobs_route_waiting()
    if printer.is_available:
        _kick_ready_jobs(printer)
    elif printer.state in (PrinterState.OFFLINE, PrinterState.ERROR):
        _reroute_waiting_jobs(printer)
    return "printer_changed" if changed else "printer_same"


def _kick_ready_jobs(printer: Printer) -> None:
    now = timezone.now()
    for job in PrintJob.objects.filter(printer=printer, status=J.READY, batch__is_held=False).exclude(
        next_attempt_at__gt=now
    ):
        _enqueue_submit(job)


def _reroute_waiting_jobs(printer: Printer) -> None:
    for job in PrintJob.objects.filter(printer=printer, status__in=[J.QUEUED, J.READY]):
        job_reroute(job_id=job.pk, note=f"printer {printer.name} is {printer.state}")


def _job_refresh(job: PrintJob) -> str:
    assert job.printer is not None
    try:
        info = backend_for(job.printer).job_info(job.backend_job_id)
    except PrinterError as error:
        if error.is_permanent:
            job_move(
                job_id=job.pk,
                from_statuses={J.SUBMITTED},
                to_status=J.FAILED,
                kind="job_lost",
                note=error.code,
                failure_code=error.code,
                failure_message=error.message[:300],
            )
            return "failed"
        return "unreachable"
    restarted = _record_backend_progress(job=job, info=info)
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
            _enqueue_submit(job)
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
            job_move(
                job_id=job.pk,
                from_statuses={J.SUBMITTED},
                to_status=J.SUSPECT,
                kind="printed_more_than_once",
                note=(
                    f"CUPS sent the job again after a restart (impressions {info.completed_impressions} "
                    f"for {job.copies} copies): count the prints"
                ),
                backend_state=str(info.state),
            )
            return "suspect"
        # CUPS "completed" means sent to the device, not a good print: a person verifies the copies later.
        job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTED},
            to_status=J.PRINTED,
            kind="printed",
            printed_at=timezone.now(),
            backend_state=str(info.state),
        )
        return "printed"
    # CUPS stopped the job (e.g. a filter could not read the file): it will not finish by itself. Cancel it
    # at the printer so it cannot print later behind a technician's back; show it as failed.
    if info.state is JobState.STOPPED and not _backend_cancel(job):
        return "unreachable"
    if info.state in (JobState.ABORTED, JobState.CANCELED, JobState.STOPPED):
        job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTED},
            to_status=J.FAILED,
            kind="backend_failed",
            note=f"{info.state}: {info.message}",
            failure_code=f"printer_{info.state}",
            failure_message=(info.message or ",".join(info.reasons))[:300],
            backend_state=str(info.state),
        )
        return "failed"
    return "waiting"


def _record_backend_progress(*, job: PrintJob, info: JobInfo) -> bool:
    """Save what the printer says of the job; True when it has started the job again since first seen."""
    restarted = job.backend_restarted or info.restarted_since(job.backend_started_at)
    fields: dict[str, object] = {}
    if str(info.state) != job.backend_state:
        fields["backend_state"] = str(info.state)
    if job.backend_started_at is None and info.processing_started_at is not None:
        fields["backend_started_at"] = info.processing_started_at
    if restarted and not job.backend_restarted:
        fields["backend_restarted"] = True
    if fields:
        with transaction.atomic():
            PrintJob.objects.filter(pk=job.pk).update(**fields)
            if "backend_restarted" in fields:
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
    return job_move(job_id=job.pk, from_statuses={J.SUBMITTED}, to_status=to_status, kind=kind, **fields)


def _backend_cancel(job: PrintJob) -> bool:
    assert job.printer is not None
    try:
        backend_for(job.printer).cancel(job.backend_job_id)
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


def production_reconcile() -> dict[str, int]:
    """Recover from lost messages and dead workers; the database, not the broker, is the truth.

    Every hand-off of the flow is a state in the database, and each one is swept here, so work whose message
    was lost (broker restarted, worker killed before it acknowledged) moves on within one interval:
    - an order `paid` with no jobs is released (directly, no broker needed);
    - `queued` jobs are sent to the raster queue again when the queue holds fewer messages than them;
    - a `rasterizing` or `submitting` claim whose worker died is taken over or settled once its lease ends;
    - `ready` jobs are kicked by every printer poll; an order whose jobs all printed moves to packing, and a
      `ready_to_pack` order without its slip gets one.
    """
    now = timezone.now()
    lease = timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS)
    grace = timedelta(seconds=settings.PRODUCTION_HANDOFF_GRACE_SECONDS)
    counts: Counter[str] = Counter()
    for order_id in Order.objects.filter(
        status=OrderStatus.PAID, updated_at__lt=now - grace, print_jobs__isnull=True
    ).values_list("pk", flat=True):
        counts["orders_released"] += int(order_release(order_id=order_id) > 0)
    queued = list(
        PrintJob.objects.filter(status=J.QUEUED, updated_at__lt=now - grace).values_list("pk", flat=True)
    )
    if queued:
        depth = queue_depth("raster")
        if depth is None or depth < len(queued):
            for job_id in queued:
                _enqueue_rasterize(job_id)
            counts["rasterize_requeued"] += len(queued)
    for job in PrintJob.objects.filter(status=J.RASTERIZING, claimed_at__lt=now - lease):
        _enqueue_rasterize(job.pk)  # the claim takes over an expired lease
        counts["rasterize_taken_over"] += 1
    for job in PrintJob.objects.filter(status=J.SUBMITTING, claimed_at__lt=now - lease).select_related(
        "printer"
    ):
        counts[_reconcile_submitting(job)] += 1
    jobs_route_waiting()
    for order_id in (
        Order.objects.filter(status=OrderStatus.IN_PRODUCTION, updated_at__lt=now - grace)
        .exclude(print_jobs__status__in=[s for s in J.values if s not in (J.PRINTED, J.CANCELLED)])
        .values_list("pk", flat=True)
    ):
        counts["orders_ready_to_pack"] += int(order_check_printed(order_id=order_id))
    for order_id in Order.objects.filter(
        status=OrderStatus.READY_TO_PACK, updated_at__lt=now - grace, packing_slip__isnull=True
    ).values_list("pk", flat=True):
        enqueue("packing.slip_render", order_id=order_id)
        counts["slips_requested"] += 1
    return dict(counts)


def _reconcile_submitting(job: PrintJob) -> str:
    """A worker died between claiming and saving: find our job at the printer by title, or ask a person."""
    assert job.printer is not None
    try:
        found = [
            j for j in backend_for(job.printer).find_jobs(title_prefix=job.title) if j.title == job.title
        ]
    except PrinterError:
        return "reconcile_unreachable"
    if found:
        job_move(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            to_status=J.SUBMITTED,
            kind="reconciled",
            note=f"found backend job {found[0].handle}",
            backend_job_id=found[0].handle,
            claimed_at=None,
            claimed_by="",
        )
        return "reconciled"
    job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.UNKNOWN,
        kind="fate_unknown",
        note="worker lost during submit and the printer has no job with our title",
        claimed_at=None,
        claimed_by="",
    )
    return "unknown"
