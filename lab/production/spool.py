"""Print documents left at printers after their jobs are over are erased, so that no customer image outlives
its job outside the encrypted vault.

A printer keeps what it was sent: CUPS keeps each job's document in its spool for a day after the job ends
(PreserveJobFiles, 86400 s by default), in the clear; a hot folder's device moves the print file into
`done/` with its ticket and keeps it there. The sweep asks each printer for our jobs that are over at the
printer and erases their documents (CUPS: the job is purged, document and all; hot folder: the print file,
the ticket stays), but only when nothing here will look at that job again:
- its print job is `printed` or `cancelled` (and no cancel at the printer is pending);
- or the printer's job was cancelled or aborted and is not the one its print job is tracking (an earlier,
  superseded attempt);
- or it carries a title its print job gave up when a person sent it again (models.jobs_formerly_titled):
  nothing looks for a copy by that title any more.
A job the printer completed while its print job still waits (`submitted` not yet read, `ready` for a retry
that looks for an earlier attempt, `suspect` or `unknown` for a person) is kept: the retry must find it so
that it is not printed twice, and the technician may need it. A printer that cannot be read, or a document
that cannot be erased, or a database error at one printer, is counted and logged, and the sweep goes on
with the next.

A copy discarded while its print job is not over leaves its trace in the job's history (a
PRINTER_COPY_DISCARDED event, at that printer): a retry counts the copies each attempt that may have reached
the printer left there (earlier_sends.sends_unaccounted), and a superseded attempt's copy erased here (the
empty job of a send cupsd cut off, aborted or cancelled) accounts for its attempt as a listed one does.
Before, a routine cupsd restart in the middle of a send ended with the job `unknown` once the sweep had run.
The event is written before the purge: a sweep killed between the two leaves a trace beside a copy still there
(counted once), never a purged copy with no trace.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import NamedTuple

from django.db import DatabaseError

from lab.production.backends import PrinterTargetRefused, backend_for, printer_target
from lab.production.models import (
    JOB_TITLE_PREFIX,
    JobEvent,
    Printer,
    PrintJob,
    jobs_formerly_titled,
    jobs_titled,
)
from lab.production.silence import SilentServers
from lab.production.states import FINAL_JOB_STATUSES
from printers.base import JobInfo, JobState, PrinterBackend
from printers.errors import PrinterError

logger = logging.getLogger(__name__)

_ENDED_WITHOUT_PRINTING = frozenset({JobState.CANCELED, JobState.ABORTED})

# The kind of the event a copy discarded while its print job was not over leaves, and how its note begins
# (the handle follows): earlier_sends.sends_unaccounted reads them.
PRINTER_COPY_DISCARDED = "printer_copy_discarded"
DISCARDED_COPY_NOTE_PREFIX = "backend job "


# A send older than this is over, whatever happened to it: the print task's hard time limit is 120 s
# (workers/tasks.py), so a file left by a send that long ago has no send behind it any more.
UNFINISHED_SEND_SECONDS = 15 * 60


def printer_documents_discard() -> dict[str, int]:
    """Erase the documents of our jobs that are over at every printer, and what sends cut off before they
    became jobs left there; counts of what happened."""
    counts: Counter[str] = Counter()
    older_than = time.time() - UNFINISHED_SEND_SECONDS
    # One round of printer calls, as the poll's: a server that gave no answer (a stalled cupsd holds a call
    # for libcups' minute) is not asked again for its other printers. Before, it was asked once per printer,
    # and five printers on a stalled cupsd ran the sweep into its time limit every run: the printers after
    # them (other servers, hot folders) never had their documents erased.
    silent = SilentServers()
    for printer in Printer.objects.order_by("pk"):
        if not destination_is_swept(printer):
            counts["printers_refused"] += 1
            continue
        if (silent_error := silent.error_for(printer)) is not None:
            logger.info(
                "printer documents not checked printer=%s error=%s", printer.pk, _error_name(silent_error)
            )
            counts["printers_unreachable"] += 1
            continue
        backend = backend_for(printer)
        try:
            counts["unfinished_sends_discarded"] += backend.unfinished_sends_discard(older_than=older_than)
        except (PrinterError, OSError) as error:
            if isinstance(error, PrinterError):
                silent.heard(printer, error)
            logger.info("unfinished sends not checked printer=%s error=%s", printer.pk, type(error).__name__)
        if silent.error_for(printer) is not None:
            counts["printers_unreachable"] += 1
            continue
        try:
            printer_copies_discard(printer, counts, backend=backend)
        except (PrinterError, OSError) as error:
            # One printer that cannot be read (unreachable, a folder the device re-owned) must not keep the
            # sweep from the printers after it, run after run.
            if isinstance(error, PrinterError):
                silent.heard(printer, error)
            logger.info("printer documents not checked printer=%s error=%s", printer.pk, _error_name(error))
            counts["printers_unreachable"] += 1
        except DatabaseError as error:
            # The database failed to read this printer's jobs or to record a copy before its purge (the copy
            # is kept, for the next sweep): the printers after it are swept all the same. Before, the error
            # ended the sweep, and took the copy already purged with it, untraced.
            logger.warning(
                "printer documents not discarded, database error printer=%s error=%s",
                printer.pk,
                type(error).__name__,
            )
            counts["printers_database_failed"] += 1
    if counts["discarded"] or counts["unfinished_sends_discarded"]:
        logger.info(
            "printer documents discarded count=%d unfinished_sends=%d",
            counts["discarded"],
            counts["unfinished_sends_discarded"],
        )
    return {name: count for name, count in counts.items() if count}


def destination_is_swept(printer: Printer) -> bool:
    """Whether files may be erased at the printer's destination: the lab's own (sealed), and for a hot folder
    one strictly under HOTFOLDER_ROOT. The sweep erases files by their names alone, and a folder elsewhere (a
    vault shard: blobs/<2 hex>/<32 hex>, a row written by a DBA or a target from before the check) is no
    printer's to clear. Logged with the printer's id only."""
    if not printer.destination_is_sealed:
        logger.warning("printer documents not checked, destination not sealed printer=%s", printer.pk)
        return False
    try:
        printer_target(printer)
    except PrinterTargetRefused:
        logger.warning("printer documents not checked, folder outside HOTFOLDER_ROOT printer=%s", printer.pk)
        return False
    return True


def printer_copies_discard(
    printer: Printer, counts: Counter[str], *, backend: PrinterBackend | None = None
) -> None:
    """Erase at one printer, at its destination as `printer` holds it (the sweep's, and a lab admin's move
    for the old destination: lab/staff/admin/production.py), the documents of our jobs that are over there
    and that nothing here looks at again; adds to `counts` (`discarded`, `already_gone`, `failed`, `kept`).
    Raises PrinterError or OSError when the printer cannot be read, DatabaseError when the database fails
    (a copy whose event could not be written is not purged)."""
    backend = backend or backend_for(printer)
    over = backend.jobs_holding_documents(title_prefix=JOB_TITLE_PREFIX)
    tracked = _print_jobs(over)
    given_up = jobs_formerly_titled(job.title for job in over if job.title not in tracked)
    for job in over:
        if not _may_discard(job, tracked.get(job.title), is_title_given_up=job.title in given_up):
            counts["kept"] += 1
            continue
        print_job = tracked.get(job.title)
        if print_job is not None and print_job.status not in FINAL_JOB_STATUSES:
            # The trace first, the purge after: a sweep killed (or a database gone) between the two must not
            # leave a purged copy with no trace, which a retry reads as an attempt that reached the printer
            # and left nothing there (the job `unknown` though nothing printed). A trace beside a copy still
            # listed (the purge failed or never ran) counts that copy once, and the next sweep's trace of the
            # same copy adds nothing (earlier_sends.sends_unaccounted counts handles).
            _copy_discarded_record(printer=printer, job=job, print_job=print_job)
        try:
            discarded = backend.discard_document(job.handle)
        except (PrinterError, OSError) as error:
            # The customer's image stays at the printer in the clear: someone must hear of it.
            logger.warning(
                "printer document not discarded printer=%s handle=%s error=%s",
                printer.pk,
                job.handle,
                _error_name(error),
            )
            counts["failed"] += 1
            continue
        counts["discarded" if discarded else "already_gone"] += 1


class _Tracked(NamedTuple):
    """The state of the print job of ours that a printer's job carries the title of."""

    pk: int
    status: str
    backend_job_id: str
    cancel_pending: bool


def _print_jobs(jobs: list[JobInfo]) -> dict[str, _Tracked]:
    """By backend title: the state of the print job of ours that has exactly that title."""
    titled = jobs_titled(job.title for job in jobs)
    states = {
        pk: _Tracked(pk, status, backend_job_id, cancel_pending)
        for pk, status, backend_job_id, cancel_pending in PrintJob.objects.filter(
            pk__in=set(titled.values())
        ).values_list("pk", "status", "backend_job_id", "cancel_at_printer")
    }
    return {title: states[pk] for title, pk in titled.items() if pk in states}


def _copy_discarded_record(*, printer: Printer, job: JobInfo, print_job: _Tracked) -> None:
    """The job's history keeps the copy the sweep takes from the printer: which one, in what state, whether it
    held a document (when the printer said). Written before the purge, committed on its own: a copy both
    listed and recorded counts once (earlier_sends.sends_unaccounted counts each handle once, listed or
    recorded, however many events name it), so an event beside a copy the purge then missed is harmless,
    while a purge with no event would leave its attempt unaccounted for."""
    if job.document_count is None:
        document = "unknown whether it held a document"
    else:
        document = "held no document" if job.document_count == 0 else "held its document"
    head = f"{DISCARDED_COPY_NOTE_PREFIX}{job.handle}:"
    recorded = JobEvent.objects.filter(
        job_id=print_job.pk, printer_id=printer.pk, kind=PRINTER_COPY_DISCARDED, note__startswith=head
    )
    if recorded.exists():
        # A copy whose purge failed, or was cut off, at an earlier sweep: once in the history is enough.
        return
    JobEvent.objects.create(
        job_id=print_job.pk,
        printer_id=printer.pk,
        kind=PRINTER_COPY_DISCARDED,
        note=f"{head} {job.state.value}, {document}; discarded by the spool sweep"[:500],
    )


def _error_name(error: Exception) -> str:
    # The code or the exception's class only: an OSError's message names the file, and so the job.
    return error.code if isinstance(error, PrinterError) else type(error).__name__


def _may_discard(job: JobInfo, tracked: _Tracked | None, *, is_title_given_up: bool) -> bool:
    if is_title_given_up:
        # A copy sent under a title its print job gave up (a person judged it not printed and sent the job
        # again under a new one): no retry, reconciler or person looks for a copy by that title, so it goes
        # once over at the printer, whatever its print job does now.
        return job.state.is_final
    if tracked is None:
        # Not a print job of this database (a title that only starts like ours, another installation's job
        # of the same id on the same print host, a job erased with its order): not ours to judge; CUPS drops
        # its files in a day.
        return False
    _, status, backend_job_id, cancel_pending = tracked
    if status in FINAL_JOB_STATUSES and not cancel_pending:
        return True
    return job.state in _ENDED_WITHOUT_PRINTING and job.handle != backend_job_id
