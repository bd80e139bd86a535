"""Hearing of print-server restarts: a cupsd that restarts sends the job it was sending again from the start,
so that job is marked before anyone reads it, and ends `suspect`, never silently `printed`.

The poll (beat) and the printer-events listener both check a printer's restarts before reading its jobs, at
any moment, in any number of processes. The printer row's cursor (`server_watch_id`,
`server_event_sequence`) is the record of which restarts were heard: the restarts since it are handled and
the cursor moved in one transaction under the printer's row lock, only by the process that still sees the
cursor it started from. So each restart marks one job once, and whoever reads a job after the cursor moved
sees that mark. The printer's server is asked (slow I/O) before the transaction, never inside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from lab.production.backends import backend_for
from lab.production.models import JOB_TITLE_PREFIX, JobEvent, Printer, PrintJob, jobs_titled
from lab.production.silence import SilentServers
from lab.production.states import JobStatus
from printers.base import JobInfo, JobState, PrinterBackend
from printers.errors import PrinterError

logger = logging.getLogger(__name__)
J = JobStatus


# A job in these states may have a backend job at the printer: its handle is saved (submitted), or an attempt
# to send it was cut off after the printer took it and a retry will adopt it (ready, submitting).
_MAY_BE_AT_PRINTER = (J.SUBMITTED, J.SUBMITTING, J.READY)


@dataclass(frozen=True)
class _Seen:
    """The printer's jobs as its server showed them just after the restarts were read."""

    # job pk -> its backend job, for jobs not yet marked restarted: a submitted job's by its handle; a job
    # being retried (ready or submitting after an attempt) by its title, its earliest attempt still alive.
    unfinished: dict[int, JobInfo]
    printed: list[PrintJob]  # printed within the hour: CUPS may have put one back in its queue


def server_restarts_check(printer: Printer, *, silent: SilentServers | None = None) -> bool:
    """Hear of restarts of the printer's server since the printer's cursor; False when that cannot be done now
    (the server does not answer, or another process is handling the same restarts: ask again).

    silent: the round's servers that gave no answer; one of them is not asked (False at once), and a server
    that gives none here joins them, so the round's further calls to it are not made either.

    At a cupsd restart the job it was sending to this printer is sent again from the start (see
    printers/cups_backend.py), and a job it had finished in its last second may come back too: each job that
    may be one of them is marked (`_job_interrupted_by_restart`), and ends `suspect`, not `printed`.
    That job may not be `submitted` yet: a submit that cupsd's stop cut off after it took the document is
    retried, and the retry adopts the job it finds at the printer; the mark is made all the same, and the
    adopted job ends `suspect` too.
    """
    silent = silent if silent is not None else SilentServers()
    if silent.error_for(printer) is not None:
        return False
    current = Printer.objects.filter(pk=printer.pk).values_list("server_watch_id", "server_event_sequence")
    watch, after = current.get()
    backend = backend_for(printer)
    try:
        events = backend.server_events(watch=watch, after=after)
    except PrinterError as error:
        silent.heard(printer, error)
        return False
    starts = list(events.started_at)
    if events.watch_lost:
        starts.append(int(timezone.now().timestamp()))  # restarted at an unknown time: assume just now
    moved = (events.watch, events.last_sequence) != (watch, after)
    if not starts:
        if moved:  # a new watch, or events that are not restarts: move the cursor unless someone else did
            Printer.objects.filter(pk=printer.pk, server_watch_id=watch, server_event_sequence=after).update(
                server_watch_id=events.watch, server_event_sequence=events.last_sequence
            )
        return True
    try:
        seen = _jobs_seen(printer=printer, backend=backend)
    except PrinterError as error:
        silent.heard(printer, error)
        return False  # which job was interrupted cannot be told now: a guess could mark the wrong one
    with transaction.atomic():
        # FOR NO KEY UPDATE: rows that only reference the printer (jobs, events) are not held up by it.
        locked = Printer.objects.select_for_update(no_key=True).filter(pk=printer.pk)
        if locked.values_list("server_watch_id", "server_event_sequence").get() != (watch, after):
            return False  # another process heard these restarts first; its marks are committed now
        for started_at in starts:
            _job_interrupted_by_restart(printer=printer, started_at=started_at, seen=seen)
        if moved:
            locked.update(server_watch_id=events.watch, server_event_sequence=events.last_sequence)
    _printed_jobs_taken_back(backend=backend, printed=seen.printed)
    return True


def _jobs_seen(*, printer: Printer, backend: PrinterBackend) -> _Seen:
    # The jobs that may be at the printer, read in one query before the printer is asked: read in two (the
    # submitted ones, then, after their reads, those being retried), a retry that adopted its earlier attempt
    # in between was in neither, and the job the restart may send again went unmarked.
    jobs = list(
        PrintJob.objects.filter(printer=printer, backend_restarted=False).filter(
            Q(status=J.SUBMITTED) | Q(status__in=[J.READY, J.SUBMITTING], submit_attempts__gt=0)
        )
    )
    unfinished: dict[int, JobInfo] = {}
    for job in (job for job in jobs if job.status == J.SUBMITTED):
        try:
            unfinished[job.pk] = backend.job_info_of(job.backend_job_id, title=job.title)
        except PrinterError as error:
            if not error.is_permanent:
                raise
            continue  # gone from the printer (purged): it cannot be printing
    retried = {job.pk for job in jobs if job.status != J.SUBMITTED}
    unfinished.update(_earlier_attempts(retried=retried, backend=backend, printer=printer))
    printed = list(
        PrintJob.objects.filter(
            printer=printer, status=J.PRINTED, printed_at__gte=timezone.now() - timedelta(hours=1)
        ).exclude(backend_job_id="")
    )
    return _Seen(unfinished=unfinished, printed=printed)


def _earlier_attempts(*, retried: set[int], backend: PrinterBackend, printer: Printer) -> dict[int, JobInfo]:
    """The printer's backend jobs of our jobs being retried (one request for all), the earliest attempt of
    each that could still print; an attempt without its document cannot have been printing."""
    if not retried:
        return {}
    try:
        found = backend.find_jobs(title_prefix=JOB_TITLE_PREFIX)
    except PrinterError as error:
        if not error.is_permanent:
            raise
        # The printer will not show them (CUPS hiding job names): check with the submitted jobs alone rather
        # than never; the reconciler reports the same error to a person.
        logger.warning("restart check without retried jobs printer=%s code=%s", printer.name, error.code)
        return {}
    attempts: dict[int, JobInfo] = {}
    ours = jobs_titled(info.title for info in found)
    for info in found:
        job_id = ours.get(info.title)
        if (
            job_id in retried
            and info.state not in (JobState.CANCELED, JobState.ABORTED)
            and info.document_count != 0
        ):
            attempts.setdefault(job_id, info)  # find_jobs answers oldest first
    return attempts


def _job_interrupted_by_restart(*, printer: Printer, started_at: int, seen: _Seen) -> None:
    """Mark every job of the printer that its server may send again because it started at `started_at`.

    CUPS sends one job at a time per queue, oldest first, and keeps whole seconds. Read after the start:
    - a job that had begun before the restart (time-at-processing before it, or in its second and back in
      the queue) and was not over before it: the job being sent when cupsd stopped, or one it had finished
      in that very second and put back in its queue. All are marked: one second cannot tell them apart, and
      a mark only makes a person count the prints.
    - a job begun since the restart that is older than one of those: CUPS began it before them, so before
      the restart, and is sending it again.
    - with none of the first kind, the oldest job begun since the restart: the one cupsd was sending when
      it stopped, if any, already being sent again (the mark is then one too many if the queue was idle);
      jobs begun and over within the restart's second are marked with it and do not stand for it.
    A job over before the restart (completed in an earlier second, or final with its last start before
    the restart) and a job never begun are not marked.
    """
    begun_before: list[tuple[int, PrintJob]] = []
    begun_since: list[tuple[int, PrintJob]] = []
    for job in PrintJob.objects.filter(
        printer=printer,
        status__in=_MAY_BE_AT_PRINTER,
        backend_restarted=False,
        pk__in=list(seen.unfinished),
    ):
        info = seen.unfinished[job.pk]
        began = info.processing_started_at
        created_before = info.created_at is None or info.created_at <= started_at
        over_before = (info.completed_at is not None and info.completed_at < started_at) or (
            info.state.is_final and began is not None and began < started_at
        )
        # A backend job without its document was never being sent to the device.
        if not created_before or over_before or began is None or info.document_count == 0:
            continue
        if not info.handle.isdigit():
            continue
        # Begun in the restart's own second: before it only if put back in the queue since (was_requeued); a
        # job being sent (or done) then was begun after the start, or stopped and begun again within that
        # second, which the rules for jobs begun since the restart cover.
        before = began < started_at or (began == started_at and info.was_requeued)
        (begun_before if before else begun_since).append((int(info.handle), job))
    marked = [job for _, job in begun_before]
    if begun_before:
        newest = max(handle for handle, _ in begun_before)
        marked += [job for handle, job in begun_since if handle < newest]
    else:
        # The oldest begun since, and before it any job also over within the restart's second: one begun and
        # finished then, before the stop or after the start, cannot be told from the one sent again.
        for _, job in sorted(begun_since, key=lambda pair: pair[0]):
            marked.append(job)
            completed = seen.unfinished[job.pk].completed_at
            if completed is None or completed > started_at:
                break
    for job in marked:
        PrintJob.objects.filter(pk=job.pk).update(backend_restarted=True)
        JobEvent.objects.create(
            job_id=job.pk,
            kind="printer_restarted_job",
            note=f"the print server restarted at {started_at} while this job may have been at the device",
        )
        logger.warning("print server restart may re-send job=%s printer=%s", job.pk, printer.name)


def _printed_jobs_taken_back(*, backend: PrinterBackend, printed: list[PrintJob]) -> None:
    """A job cupsd had finished just before it stopped can come back `pending` (its control file still said
    processing) and be sent again at a later restart: take such a printed job back at the printer."""
    for job in printed:
        try:
            if backend.job_info_of(job.backend_job_id, title=job.title).was_requeued:
                backend.cancel_of(job.backend_job_id, title=job.title)
                JobEvent.objects.create(
                    job_id=job.pk, kind="printer_requeued_printed_job", note="cancelled before a second print"
                )
        except PrinterError:
            continue
