"""An earlier attempt at the printer: the copy with the job's title a retry adopts (began-then-ended
copies listed for a person), the attempts that may have reached the printer unaccounted for by what it
lists, and the claim that ends `unknown` for them."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from lab.production.backends import backend_for, copies_titled
from lab.production.cancellation import copy_listed_already, copy_over_outcome, late_copies_list
from lab.production.jobs import job_move
from lab.production.models import JobEvent, PrintJob
from lab.production.spool import DISCARDED_COPY_NOTE_PREFIX, PRINTER_COPY_DISCARDED
from lab.production.states import JobStatus
from printers.base import JobInfo, JobState
from printers.errors import PRINTER_NOT_ACCEPTING_JOBS, QUEUE_NOT_FOUND, PrinterError
from printers.registry import KIND_HOTFOLDER

logger = logging.getLogger(__name__)
J = JobStatus


@dataclass(frozen=True)
class _Look:
    """What the printer holds with the job's title: the copy of an earlier attempt that is the job's (it may
    still print, printed, or may have printed), and the handles of every job with the title it lists
    (cancelled, aborted and empty ones too)."""

    alive: JobInfo | None  # the copy to adopt
    listed: tuple[str, ...]  # the handles of every job with the title it lists


def earlier_attempt_at_printer(*, job: PrintJob) -> _Look:
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


def raised_before_sending(error: PrinterError) -> bool:
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


def fate_unknown(*, job: PrintJob, kind: str, note: str) -> str:
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
