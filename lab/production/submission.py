"""Submitting: a claimed raster goes to its printer once; a retry first looks for an earlier attempt."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from lab.lib.backoff import backoff_delay
from lab.lib.clock import database_now
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.privacy.crypto import DecryptionFailed, KeyDestroyed
from lab.privacy.vault import vault_read
from lab.production.backends import (
    PRINTER_TARGET_REFUSED,
    PrinterTargetRefused,
    backend_for,
    copies_titled,
    media_for,
    printer_target,
)
from lab.production.cancellation import (
    ALREADY_PRINTED,
    LATE_COPY_NOT_CANCELLED,
    MAY_HAVE_PRINTED,
    cancel_note,
    copies_listed_record,
    copy_cancel,
    copy_cancel_refused,
    copy_listed_already,
    copy_over_outcome,
    copy_was_printing,
    copy_withdrawn,
    late_copies_list,
    printer_cancel_refused,
    printer_cancels_settle,
)
from lab.production.jobs import (
    job_claim_take_back,
    job_fail,
    job_move,
    job_photo_changed_outside_the_lab,
    rasterize_enqueue,
    submit_enqueue,
)
from lab.production.models import DESTINATION_FIELDS, Batch, JobEvent, Printer, PrintJob
from lab.production.restarts import server_restarts_check
from lab.production.routing import job_media
from lab.production.silence import SilentServers
from lab.production.spool import DISCARDED_COPY_NOTE_PREFIX, PRINTER_COPY_DISCARDED, UNFINISHED_SEND_SECONDS
from lab.production.states import JobStatus
from lab.production.tracking import jobs_track
from printers.base import JobInfo, JobState, PrinterBackend
from printers.errors import (
    PRINTER_NOT_ACCEPTING_JOBS,
    QUEUE_NOT_FOUND,
    PrinterError,
    TransientPrinterError,
)
from printers.registry import KIND_HOTFOLDER

logger = logging.getLogger(__name__)
J = JobStatus

# The sends' folders root is not safe to decrypt a raster into (print_folders_root): transient, nothing sent.
PRINT_FOLDER_UNSAFE = "print_folder_unsafe"
# A system call of the send's own file steps failed before anything was handed to the printer: the raster
# could not be read from the photo store (EIO, ESTALE), or its copy not written on the print host (a full
# /tmp): transient, nothing sent.
RASTER_STORE_UNREADABLE = "raster_store_unreadable"
PRINT_FOLDER_UNWRITABLE = "print_folder_unwritable"


def _retry_delay(attempt: int) -> float:
    return backoff_delay(
        attempt=attempt,
        first=timedelta(seconds=settings.PRODUCTION_RETRY_BASE_SECONDS),
        cap=timedelta(seconds=settings.PRODUCTION_RETRY_CAP_SECONDS),
    ).total_seconds()


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
            look = _earlier_attempt_at_printer(job=job)
            if look.alive is not None:
                outcome = _submitted(job=job, handle=look.alive.handle, kind="adopted", backend=backend)
                if outcome == "adopted":
                    _read_once(job.pk)
                return outcome
            unaccounted = sends_unaccounted(job=job, listed=look.listed)
            if unaccounted:
                # An earlier attempt may have reached the printer, which lists nothing of it: printed and
                # forgotten (its history purged), or never arrived; no one can tell which from here.
                return _fate_unknown(
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
        reached = handed_over and not _raised_before_sending(error)
        return _submit_failed(job=job, error=error, may_have_reached=reached)
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
        return _submit_failed(
            job=job,
            error=TransientPrinterError(
                code=file_step, message=f"{name}: {where}; nothing was sent", nothing_sent=True
            ),
            may_have_reached=False,
        )
    return _submitted(job=job, handle=handle, kind="submitted", backend=backend, claimed_at=claimed_at)


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


def print_folders_root() -> Path:
    """Where sends put the decrypted raster for the printer, one folder per send (removed after it), and
    where a send killed before its folder was removed (SIGKILL, the OOM killer) left one: each send first
    removes the folders older than any send can be, on its own host, so a plain raster never outlives its
    send by much more than that, wherever no later send comes.

    The root is the worker user's alone (0700), and so are each send's folder (mkdtemp's 0700) and the raster
    (0600): nothing on the print host but the worker itself reads them. Our own root left open to others (an
    older version's 0755) is closed first (0700: from then on nobody else may look inside, whatever they
    opened before; each send's folder is a new mkdtemp in it). A root that is not ours or not a folder (made
    first by another user of a shared /tmp, a symlink) is not used, nor any other place instead: the send
    raises a transient error (the job is sent again later) and the error log names the folder, for someone to
    remove it."""
    system_temporary = Path(tempfile.gettempdir())
    root = system_temporary / f"printlab-print-{os.geteuid()}"  # one per user: another user's is not ours
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)  # the umask may only take more away
    found = os.lstat(root)
    if stat.S_ISDIR(found.st_mode) and found.st_uid == os.geteuid() and found.st_mode & 0o077:
        logger.warning(
            "print folders root was open to others, closed path=%s mode=%o", root, found.st_mode & 0o777
        )
        os.chmod(root, 0o700, follow_symlinks=False)
        found = os.lstat(root)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
        logger.error(
            "print folders root not ours or open to others, nothing decrypted path=%s uid=%s mode=%o",
            root,
            found.st_uid,
            stat.S_IMODE(found.st_mode),
        )
        raise TransientPrinterError(
            code=PRINT_FOLDER_UNSAFE,
            message=f"{root} is not the print worker's own folder, closed to others: nothing was decrypted",
        )
    older_than = time.time() - UNFINISHED_SEND_SECONDS
    with os.scandir(root) as entries:
        for entry in entries:
            try:
                is_stale = entry.stat(follow_symlinks=False).st_mtime < older_than
            except FileNotFoundError:
                continue  # its own send removed it meanwhile
            if is_stale:
                shutil.rmtree(entry.path, ignore_errors=True)
    return root


def _send_begin(*, job_id: int, worker: str, claimed_at: datetime) -> bool:
    """Set the claim's send fence, if the claim is still this worker's: the last statement before the raster
    goes to the printer. Conditional like the reconciler's take-back (`_claim_take_back_unsent`), so of a
    worker that wakes late and the reconciler exactly one wins: the worker sends, or the job is sent again.
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


@dataclass(frozen=True)
class _Look:
    """What the printer holds with the job's title: the copy of an earlier attempt that is the job's (it may
    still print, printed, or may have printed), and the handles of every job with the title it lists
    (cancelled, aborted and empty ones too)."""

    alive: JobInfo | None  # the copy to adopt
    listed: tuple[str, ...]  # the handles of every job with the title it lists


def _earlier_attempt_at_printer(*, job: PrintJob) -> _Look:
    """The printer's job with our title from an earlier attempt that it still may print (or printed), else one
    over without completing after it began at its device (cancelled at the CUPS console mid-print, or by our
    own cancel whose record was lost): it may have printed, as a `processing` copy that stopped. Adopted, the
    read that follows makes the job `suspect` (tracking: `began_then_ended`), for a person to count the
    prints. Before, it was read as over only and the job sent again unflagged: two prints, nobody told.
    Another such copy of the job, not the one adopted, is listed for a person (`late_copy_not_cancelled`,
    MAY_HAVE_PRINTED, at this printer), unless an earlier event listed it already. A copy over that an
    earlier event listed is not adopted either: a person was told to count its prints already (a move away
    wrote it, and the job came back under the same title), so the retry sends anew. Before, it was adopted:
    nothing sent, the job `suspect` on it, a person asked again, and an answer of "printed" moved the order
    on without its print.

    An earlier attempt that created the job but never delivered its document (the connection or cupsd went
    away between Create-Job and Send-Document) cannot print: it is cancelled here and the raster sent anew.
    """
    assert job.printer is not None
    backend = backend_for(job.printer)
    found = copies_titled(backend, job.title)
    for empty in [j for j in found if j.is_missing_document]:
        backend.cancel(empty.handle)
        JobEvent.objects.create(
            job_id=job.pk, kind="empty_attempt_cancelled", note=f"backend job {empty.handle} had no document"
        )
    alive = [
        j for j in found if j.state not in (JobState.CANCELED, JobState.ABORTED) and not j.is_missing_document
    ]
    over = (JobState.CANCELED, JobState.ABORTED)
    began = [j for j in found if j.state in over and j.began and not j.is_missing_document]
    unlisted = [
        j for j in began if not copy_listed_already(job_id=job.pk, printer_id=job.printer.pk, handle=j.handle)
    ]
    adopted = alive[-1] if alive else (unlisted[-1] if unlisted else None)
    _began_copies_list(job=job, copies=[j for j in began if j is not adopted])
    return _Look(alive=adopted, listed=tuple(j.handle for j in found))


def _began_copies_list(*, job: PrintJob, copies: list[JobInfo]) -> None:
    """List the copies over that began at their device and are not the job's copy, unless an earlier event
    listed them already (cancellation.late_copies_list): each may have printed."""
    event = late_copies_list(job=job, outcomes={copy.handle: copy_over_outcome(copy) for copy in copies})
    if event is not None:
        logger.warning("earlier copies began then ended, listed job=%s", job.pk)


def _late_copy_note(handle: str, outcome: str, what: str) -> str:
    """A `late_copy_not_cancelled` note naming the copy as `handle:state…` after a MAY_HAVE_PRINTED (or, for a
    copy that completed, ALREADY_PRINTED) prefix, as lab.production.actions writes it, for people; the copy
    itself is recorded as listed with the event (cancellation.copies_listed_record), so that a later move or
    cancel does not list it again. `outcome`: copy_cancel's (`handle:…`), or a printer error's code."""
    copy = outcome if outcome.startswith(f"{handle}:") else f"{handle}:{outcome}"
    prefix = ALREADY_PRINTED if copy.endswith(f":{JobState.COMPLETED}") else MAY_HAVE_PRINTED
    return f"{prefix}: {copy}, {what}"


# The errors a submit raises before anything of it can have reached the printer: the queue refused the job
# (Create-Job answered not-accepting; the queue does not exist), or the backend says nothing was sent
# (`PrinterError.nothing_sent`: the connection to the print server refused, a full cupsd's refused
# Create-Job). Any other error may follow a send that got through: the answer to Send-Document lost, the
# connection reset as the document was confirmed.
_REFUSED_UNSENT_CODES = frozenset({PRINTER_NOT_ACCEPTING_JOBS, QUEUE_NOT_FOUND})
# The kinds of the events that end an attempt whose send may have reached the printer (`submit_retry`, also
# every one written before attempts were told apart), and of one that reached nothing.
SUBMIT_RETRY = "submit_retry"
SUBMIT_RETRY_UNSENT = "submit_retry_unsent"
# The events that count a job's attempts from 0 again (routing.job_reroute; a person's "not printed", which
# gives the job a new title): attempts before them are not the current printer's and title's.
_ATTEMPTS_RESET = ("rerouted", "resolved_not_printed")


def _raised_before_sending(error: PrinterError) -> bool:
    """The submit's error was raised before anything of it could reach the printer."""
    return error.nothing_sent or error.code in _REFUSED_UNSENT_CODES


def sends_unaccounted(*, job: PrintJob, listed: Collection[str], this_attempt: bool = False) -> int:
    """How many of the job's attempts on its printer under its title may have reached the printer beyond the
    `listed` jobs with the title the printer lists (a look that found no live copy: their handles) and the
    copies of it the spool sweep discarded there: 0 when a send again (or elsewhere) is safe.

    A print server forgets a job once it is over and purged from its history (CUPS: PreserveJobHistory off or
    short, MaxJobs reached, the queue deleted and added again, a wiped spool): a send that reached it, printed
    and was purged looks exactly like one that never arrived. Each attempt that reached cupsd left a job
    there (a cancelled or empty one too), so as many jobs listed as attempts that may have reached it
    account for them all, and so does one the spool sweep erased (a superseded attempt's cancelled or
    aborted copy: the empty job of a send cupsd cut off), which its PRINTER_COPY_DISCARDED event at this
    printer keeps (lab/production/spool.py); one still listed (the sweep erased it after the look) counts
    once. A hot folder keeps every ticket it took, in its state folders: what it lists is the whole answer.
    `this_attempt`: the attempt ending now may have reached the printer too."""
    assert job.printer is not None
    if job.printer.backend == KIND_HOTFOLDER:
        return 0
    events = JobEvent.objects.filter(job_id=job.pk)
    reset = events.filter(kind__in=_ATTEMPTS_RESET).order_by("-pk").values_list("pk", flat=True).first()
    if reset is not None:
        events = events.filter(pk__gt=reset)
    may_have_reached = events.filter(kind=SUBMIT_RETRY).count() + (1 if this_attempt else 0)
    listed_handles = set(listed)
    discarded = {
        _discarded_handle(note)
        for note in events.filter(kind=PRINTER_COPY_DISCARDED, printer_id=job.printer.pk).values_list(
            "note", flat=True
        )
    } - {""}
    accounted = len(listed_handles) + len(discarded - listed_handles)
    return max(0, may_have_reached - accounted)


def _discarded_handle(note: str) -> str:
    """The handle a PRINTER_COPY_DISCARDED event's note names ("" for a note not of that form)."""
    head, separator, _ = note.partition(":")
    return (
        head.removeprefix(DISCARDED_COPY_NOTE_PREFIX)
        if separator and head.startswith(DISCARDED_COPY_NOTE_PREFIX)
        else ""
    )


def _fate_unknown(*, job: PrintJob, kind: str, note: str) -> str:
    """The claim ends with the job `unknown`, on the board for a person who counts the prints and decides
    (sent again under a new title, or printed)."""
    moved = job_move(
        job_id=job.pk,
        from_statuses={J.SUBMITTING},
        to_status=J.UNKNOWN,
        kind=kind,
        note=note,
        claimed_at=None,
        claimed_by="",
    )
    if moved:
        logger.warning("job fate unknown, not sent again job=%s kind=%s", job.pk, kind)
    return "unknown" if moved else "superseded"


def _read_once(job_id: int, *, silent: SilentServers | None = None) -> None:
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


def _submitted(
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
        _read_once(job.pk)
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


def _submit_failed(*, job: PrintJob, error: PrinterError, may_have_reached: bool) -> str:
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
        look = _earlier_attempt_at_printer(job=job)
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
        outcome = _submitted(
            job=job, handle=look.alive.handle, kind="adopted", backend=backend_for(job.printer)
        )
        if outcome == "adopted":
            _read_once(job.pk)
        return outcome
    unaccounted = sends_unaccounted(job=job, listed=look.listed, this_attempt=may_have_reached)
    if unaccounted:
        return _fate_unknown(
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
        _read_once(job.pk, silent=silent)
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
