"""Submitting: a claimed raster goes to its printer once; a retry first looks for an earlier attempt.

The submit task's entry, its claim and its send fence (the last statement before the raster goes to the
printer). What the send reaches is saved in lab.production.send_landed, a failed attempt retried in
lab.production.submit_retries, the look for an earlier attempt in lab.production.earlier_sends, the
decrypted raster's folders in lab.production.print_folders, and an expired claim settled in
lab.production.submit_reconcile."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path

from django.db import DatabaseError, transaction
from django.db.models import Exists, F, OuterRef, Q

from lab.lib.clock import database_now
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.vault import vault_read
from lab.production.backends import (
    PRINTER_TARGET_REFUSED,
    PrinterTargetRefused,
    backend_for,
    media_for,
    printer_target,
)
from lab.production.cancellation import printer_cancels_settle
from lab.production.earlier_sends import (
    earlier_attempt_at_printer,
    fate_unknown,
    raised_before_sending,
    sends_unaccounted,
)
from lab.production.jobs import (
    job_claim_take_back,
    job_fail,
    job_move,
    job_photo_changed_outside_the_lab,
    rasterize_enqueue,
    submit_enqueue,
)
from lab.production.models import DESTINATION_FIELDS, Batch, Printer, PrintJob
from lab.production.print_folders import print_folders_root
from lab.production.restarts import server_restarts_check
from lab.production.routing import job_media
from lab.production.send_landed import read_once, submitted
from lab.production.states import JobStatus
from lab.production.submit_retries import submit_failed
from printers.errors import PrinterError, TransientPrinterError

logger = logging.getLogger(__name__)
J = JobStatus


# A system call of the send's own file steps failed before anything was handed to the printer: the raster
# could not be read from the photo store (EIO, ESTALE), or its copy not written on the print host (a full
# /tmp): transient, nothing sent.
RASTER_STORE_UNREADABLE = "raster_store_unreadable"
PRINT_FOLDER_UNWRITABLE = "print_folder_unwritable"


def print_job_submit(*, job_id: int, worker: str) -> str:
    """Claim the job, send the raster, save the backend's handle. Never sends one job twice."""
    job = PrintJob.objects.select_related(
        "printer", "batch", "order", "item__asset__data_key", "item__product"
    ).get(pk=job_id)
    printer = job.printer
    if job.status != J.READY or printer is None:
        return "not_ready"
    if job.raster_printer_id != printer.pk:
        job_move(job_id=job.pk, from_statuses={J.READY}, to_status=J.QUEUED, kind="re_raster")
        transaction.on_commit(lambda: rasterize_enqueue(job.pk))
        return "re_raster"
    if not printer.is_available or (job.batch is not None and job.batch.is_held):
        return "waiting"  # printer_poll enqueues it again when the printer is back or the batch released
    if Order.objects.filter(pk=job.order_id, status=OrderStatus.ON_HOLD).exists():
        return "waiting"  # the customer is asked first; the poll sends it once the hold is released
    if _target_is_refused(printer):
        # A hot folder outside HOTFOLDER_ROOT (an absolute path elsewhere, a `..`, a symlink out): the
        # decrypted raster is not written there. A lab admin gives the printer a folder under the root; a
        # person resends.
        logger.error("printer folder outside HOTFOLDER_ROOT printer=%s job=%s", printer.pk, job.pk)
        return _refused_unsent(
            job,
            code=PRINTER_TARGET_REFUSED,
            message="The printer's hot folder does not lie under HOTFOLDER_ROOT; nothing was sent.",
        )
    if printer.server_watch_id is None and not server_restarts_check(printer):
        # The restarts of its server are watched from before the printer's first send: a watch begun later
        # takes a restart that came meanwhile for history, and a copy cupsd sent again for printed once.
        return "waiting"  # the poll starts the watch (or finds the server back) and sends it again
    if not printer.destination_is_sealed:
        # Its CUPS server, queue, folder or host was written in the database, not by the lab: the decrypted
        # raster is not sent there. A person looks at the printer (the lab admin saves it again) and resends.
        logger.error("printer destination changed outside the lab printer=%s job=%s", printer.pk, job.pk)
        return _refused_unsent(
            job,
            code="printer_changed_outside_the_lab",
            message="The printer's destination was changed outside the lab; nothing was sent.",
        )
    size, _ = job_media(job)
    try:
        media = media_for(size)
    except ValueError as error:
        # Nothing was sent: a size with no printer media fails here with its reason, never as `unknown`.
        return _refused_unsent(job, code="media_unknown", message=str(error))
    if job_photo_changed_outside_the_lab(job, from_status=J.READY, kind="submit_failed"):
        return "failed"
    asset = job.item.asset
    # The claim and its read-back in one transaction: a database that goes away between the two leaves the job
    # `ready` (sent again), not claimed with nothing sent, which the reconciler could only call `unknown`
    # (a fault run crashed PostgreSQL exactly there).
    claimed_at = database_now()  # the lease is judged on the clock every host shares (lab/lib/clock.py)
    try:
        with transaction.atomic():
            # The printer's row locked first (before the job's: the restart check's order), and compared with
            # the copy read above, which the raster goes to: the lab admin's move of the printer
            # (lab/staff/admin/production.py, which locks the row and then counts the jobs that may be at its
            # destination) either committed before this (the destination differs: nothing is claimed, the
            # job is sent again at the new one) or waits for this claim's commit and then finds the job
            # `submitting`, which refuses the move. Before, a ready job read at A was claimed after the admin
            # pointed the printer at B and sent to A: read and cancelled at B, it printed at A all the same.
            destination_moved = not _destination_as_read(printer)
            claimed = not destination_moved and job_move(
                job_id=job_id,
                from_statuses={J.READY},
                to_status=J.SUBMITTING,
                kind="claimed",
                note=worker,
                # Not for an order put on hold (or cancelled) since the check above: the claim re-checks.
                # Nor for a job moved meanwhile (the poll's reroute, a person's): the raster goes to the
                # printer read above, so the claim holds only while the job and its raster are still there.
                # Before, a task read at A claimed the job rerouted to B and sent it to A; a transient error
                # there, and its retry at B found no earlier attempt at B: A's held copy and B's both printed.
                where=~Q(order__status__in=[OrderStatus.ON_HOLD, OrderStatus.CANCELLED])
                & Q(printer_id=printer.pk, raster_printer_id=printer.pk),
                claimed_at=claimed_at,
                claimed_by=worker,
                sending_claim_at=None,
                fence_armed_at=claimed_at,
                submit_attempts=F("submit_attempts") + 1,
            )
            if claimed:
                job.refresh_from_db()
    except DatabaseError:
        # The COMMIT may have been applied with its answer lost (the server went away as it answered).
        # Nothing was sent: take the claim back, or the reconciler, finding nothing at the printer, calls
        # the job `unknown`.
        if job_claim_take_back(
            job_id=job.pk, claimed=J.SUBMITTING, back_to=J.READY, worker=worker, claimed_at=claimed_at
        ):
            submit_enqueue(job)
        raise
    if destination_moved:
        return _destination_moved(job)
    if not claimed:
        return "not_claimed"
    backend = backend_for(printer)
    handed_over = False  # whether anything of this attempt may have reached the printer
    # The send's file step under way, for an OSError it raises (None: not one of them, the error not caught).
    file_step: str | None = None
    try:
        if job.submit_attempts > 1:
            # An earlier attempt failed on the way (connection dropped, cupsd restarting): it may still have
            # reached the printer. Look before sending again, so a retry never makes a second copy.
            look = earlier_attempt_at_printer(job=job)
            if look.alive is not None:
                outcome = submitted(job=job, handle=look.alive.handle, kind="adopted", backend=backend)
                if outcome == "adopted":
                    read_once(job.pk)
                return outcome
            unaccounted = sends_unaccounted(job=job, listed=look.listed)
            if unaccounted:
                # An earlier attempt may have reached the printer, which lists nothing of it: printed and
                # forgotten (its history purged), or never arrived; no one can tell which from here.
                return fate_unknown(
                    job=job,
                    kind="earlier_send_unaccounted",
                    note=f"{unaccounted} earlier attempt(s) may have reached the printer, which lists no copy"
                    " of them (printed and purged from its history, or never arrived): not sent again",
                )
        file_step = PRINT_FOLDER_UNWRITABLE
        with tempfile.TemporaryDirectory(prefix="lab-print-", dir=print_folders_root()) as folder:
            # The worker's user's alone, as the folder mkdtemp made (0700): libcups reads the file in this
            # process and streams it to cupsd (whose filters read cupsd's own spool copy), and the hot folder
            # copies it itself. No one else on the print host needs to read it, so no one else may.
            path = Path(folder) / f"{job.title}.{'tif' if printer.output_format == 'tiff' else 'jpg'}"
            file_step = RASTER_STORE_UNREADABLE
            raster = vault_read(data_key=asset.data_key, name=job.raster_blob, purpose="raster")
            file_step = PRINT_FOLDER_UNWRITABLE
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as writer:
                writer.write(raster)
            file_step = None
            try:
                fenced = _send_begin(job_id=job.pk, worker=worker, claimed_at=claimed_at)
            except DatabaseError:
                # The fence's UPDATE may have been applied with its answer lost (PostgreSQL went away as it
                # answered), or not at all; either way nothing was sent. Left, a fence set with no copy at the
                # printer reads to the reconciler as a send whose fate is unknown (a person decides), and an
                # unset one waits out the whole lease: the claim is taken back, fence and all, now.
                if _unsent_claim_take_back(job_id=job.pk, worker=worker, claimed_at=claimed_at):
                    submit_enqueue(job)
                raise
            if not fenced:
                return _fence_refused(job=job, worker=worker, claimed_at=claimed_at)
            handed_over = True
            handle = backend.submit(
                path=path,
                title=job.title,
                media=media,
                copies=job.copies,
                attributes={"lab-job-id": str(job.pk)},
            )
    except PrinterError as error:
        reached = handed_over and not raised_before_sending(error)
        return submit_failed(job=job, error=error, may_have_reached=reached)
    except (KeyDestroyed, DecryptionFailed, FileNotFoundError) as error:
        # Nothing was sent: a raster that is gone or does not authenticate fails here, not as `unknown`.
        job_fail(
            job_id=job.pk,
            from_statuses={J.SUBMITTING},
            kind="submit_failed",
            code="raster_unreadable",
            message=str(error),
        )
        return "failed"
    except OSError as error:
        if handed_over or file_step is None or error.errno is None:
            # Not one of the send's file steps before the hand-over: the claim stays, for the reconciler,
            # which asks the printer (something may have reached it) before it sends anything again.
            raise
        # Nothing reached the printer: a transient failure like any other before the send (back to `ready`
        # with the backoff, `submit_retry_unsent`), so a store or /tmp that stays full ends, after
        # PRODUCTION_MAX_SUBMIT_ATTEMPTS, `failed` with its own code, not each attempt waiting out its lease
        # and the last one `worker_lost`. The errno's name only: the error's text holds the file's path.
        name = errno.errorcode.get(error.errno, type(error).__name__)
        where = (
            "the raster could not be read from the photo store"
            if file_step == RASTER_STORE_UNREADABLE
            else "the raster's copy could not be written on the print host"
        )
        logger.warning(
            "submit file step failed, nothing sent job=%s code=%s errno=%s", job.pk, file_step, name
        )
        return submit_failed(
            job=job,
            error=TransientPrinterError(
                code=file_step, message=f"{name}: {where}; nothing was sent", nothing_sent=True
            ),
            may_have_reached=False,
        )
    return submitted(job=job, handle=handle, kind="submitted", backend=backend, claimed_at=claimed_at)


def _destination_as_read(printer: Printer) -> bool:
    """Lock the printer's row (FOR NO KEY UPDATE: rows that only reference it are not held up) and say whether
    its destination is still the one `printer` was read with, sealed by the lab."""
    locked = Printer.objects.select_for_update(no_key=True).filter(pk=printer.pk).first()
    return (
        locked is not None
        and all(getattr(locked, field) == getattr(printer, field) for field in DESTINATION_FIELDS)
        and locked.destination_is_sealed
    )


def _destination_moved(job: PrintJob) -> str:
    """The printer was pointed elsewhere after the submit read it: nothing was claimed or sent. The job stays
    `ready` and is sent again, to the destination as it is now (its print host's queue too)."""
    logger.info("printer destination changed before the claim, nothing sent job=%s", job.pk)
    current = PrintJob.objects.select_related("printer").filter(pk=job.pk, status=J.READY).first()
    if current is not None and current.printer is not None:
        submit_enqueue(current)
    return "moved"


def _target_is_refused(printer: Printer) -> bool:
    try:
        printer_target(printer)
    except PrinterTargetRefused:
        return True
    return False


def _refused_unsent(job: PrintJob, *, code: str, message: str) -> str:
    """A ready job that is not sent, for a reason no retry changes: `failed`, for a person."""
    job_fail(job_id=job.pk, from_statuses={J.READY}, kind="submit_failed", code=code, message=message)
    return "failed"


def _send_begin(*, job_id: int, worker: str, claimed_at: datetime) -> bool:
    """Set the claim's send fence, if the claim is still this worker's: the last statement before the raster
    goes to the printer. Conditional like the reconciler's take-back (submit_reconcile's
    `_claim_take_back_unsent`), so of a worker that wakes late and the reconciler exactly one wins: the worker
    sends, or the job is sent again.
    Also only while the printer is not paused, the job's batch not held and its order not on hold: a person
    who paused the printer, held the batch (to change paper) or held the order (a question to the customer; a
    refund or dispute at Stripe) before this point gets no print from a claim made before they did."""
    # The pause and the hold as EXISTS on the job's own row, not as joins: Django turns an UPDATE with a join
    # into `WHERE id IN (SELECT …)`, whose conditions PostgreSQL does not check again on the row version it
    # gets after waiting for the row's lock, and a take-back committed meanwhile would not stop this fence.
    paused = Printer.objects.filter(pk=OuterRef("printer_id"), is_paused_by_lab=True)
    held = Batch.objects.filter(pk=OuterRef("batch_id"), is_held=True)
    order_held = Order.objects.filter(pk=OuterRef("order_id"), status=OrderStatus.ON_HOLD)
    return bool(
        PrintJob.objects.filter(
            ~Exists(paused),
            ~Exists(held),
            ~Exists(order_held),
            pk=job_id,
            status=J.SUBMITTING,
            claimed_by=worker,
            claimed_at=claimed_at,
            sending_claim_at=None,
        ).update(sending_claim_at=claimed_at)
    )


def _unsent_claim_take_back(*, job_id: int, worker: str, claimed_at: datetime) -> bool:
    """Take back this worker's claim, whose send fence raised: nothing was sent, whether or not the fence was
    set. As `job_claim_take_back` (once the database answers again, for half the lease at most, conditional
    on the claim being this worker's), and the fence cleared with it. True when taken back (the caller sends
    the job's message again)."""
    return job_claim_take_back(
        job_id=job_id,
        claimed=J.SUBMITTING,
        back_to=J.READY,
        worker=worker,
        claimed_at=claimed_at,
        note="the database went away as the send fence was set; nothing was sent",
        sending_claim_at=None,
        submit_attempts=F("submit_attempts") - 1,  # nothing went out: the next claim is no retry
    )


def _fence_refused(*, job: PrintJob, worker: str, claimed_at: datetime) -> str:
    """The claim is no longer this worker's to send, and nothing was sent from here.

    Cancelled meanwhile (a supervisor's cancel): the printer side is settled now, without waiting for this
    claim's lease (an earlier attempt may still be at the printer, found by its title). Otherwise the lease
    ran out while this worker was slow (stalled, swapped out) and the reconciler took the claim back;
    another worker may be sending the job now.
    """
    if PrintJob.objects.filter(
        pk=job.pk, status=J.CANCELLED, claimed_by=worker, claimed_at=claimed_at
    ).update(claimed_at=None, claimed_by=""):
        logger.info("job cancelled before its send, nothing sent job=%s", job.pk)
        printer_cancels_settle(order_id=job.order_id)
        return "cancelled_before_send"
    if job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.READY,
        kind="claim_released",
        note="printer paused, batch or order held before the send; nothing was sent",
        where=Q(claimed_by=worker, claimed_at=claimed_at, sending_claim_at=None),
        claimed_at=None,
        claimed_by="",
        submit_attempts=F("submit_attempts") - 1,  # nothing went out: the next claim is no retry
    ):
        # Still this worker's claim, so a pause or a hold refused the fence: the job waits, and the poll sends
        # it once the printer is resumed, the batch or the order released.
        logger.info("printer paused, batch or order held before the send, nothing sent job=%s", job.pk)
        return "waiting"
    logger.warning("claim taken back before the send, nothing sent job=%s", job.pk)
    return "superseded"
