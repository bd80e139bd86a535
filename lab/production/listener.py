"""The printer-events listener (`manage.py printer_events`): a job's completion at its printer arrives as an
event, not with the next poll round. One thread per event source pulls its events and reads exactly the jobs
they name.

The sources are each CUPS server of a printer (a `printers.cups_events.CupsEventFeed`: one Get-Notifications
request per pull, whatever the number of queues and jobs) and the hot folders (one
`printers.hotfolder_events.HotFolderEventFeed` for all of them: a stat() per state folder per pull). For every
job an event names, a thread
1. hears of its printer's server restarts first (`restarts.server_restarts_check`), as the poll does, so a
   job cupsd sent again after a restart ends `suspect`, never `printed`;
2. reads the job at the printer and moves it on (`tracking.jobs_track`), the order to packing when all
   printed.
A cupsd restart, a replaced subscription or dropped events make the batch incomplete: the thread then looks
at every submitted job of that source (a sweep). The beat poll stays the safety net for anything missed
while the listener was down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import DatabaseError, connection

from lab.production.backends import PrinterTargetRefused, printer_server, printer_target
from lab.production.models import Printer, PrintJob, jobs_titled
from lab.production.restarts import server_restarts_check
from lab.production.silence import SilentServers
from lab.production.states import JobStatus
from lab.production.sweeps import PRINTER_EVENTS, sweep_record
from lab.production.tracking import jobs_track
from printers.base import EventBatch, EventFeed, JobNotice
from printers.cups_events import CupsEventFeed
from printers.errors import PrinterError
from printers.hotfolder_events import HotFolderEventFeed
from printers.registry import KIND_CUPS, KIND_HOTFOLDER

logger = logging.getLogger(__name__)
J = JobStatus

# How often the set of event sources (the printers' servers and hot folders) is read again.
SOURCE_REFRESH_SECONDS = 5.0
# A job named by an event that cannot be read yet (its submit has not saved the handle, or its server's
# restarts cannot be checked right now) is looked at again on each pull for this long, then left to the poll.
RETRY_SECONDS = 30.0
# After a server (re)start the jobs it held are looked at again (a sweep) until none of them is still
# `submitted`: cupsd loses the events it kept at a restart, puts back, re-sends and finishes the jobs it was
# sending while the new subscription is being made, and a change made in between is in no event. A fault run
# under load showed that a fixed follow-up period is a guess: two jobs finished after it, unheard. So the
# follow-ups last as long as those jobs do: every AFTER_RESTART_SWEEP_EVERY seconds for the first
# AFTER_RESTART_SWEEP_SECONDS, then every AFTER_RESTART_SWEEP_SLOW_EVERY, for AFTER_RESTART_SWEEP_LIMIT at
# most (then the poll, the safety net, has them).
AFTER_RESTART_SWEEP_SECONDS, AFTER_RESTART_SWEEP_EVERY = 20.0, 1.0
AFTER_RESTART_SWEEP_SLOW_EVERY, AFTER_RESTART_SWEEP_LIMIT = 5.0, 900.0
# Backoff while a server does not answer: doubling from the first to the cap.
BACKOFF_FIRST_SECONDS, BACKOFF_CAP_SECONDS = 0.5, 5.0
# The listener records that it is alive (for the board: lab/production/sweeps.py) only while every source's
# thread has ended a step within this long: a step that works, or that found its server not answering (the
# printer's own state, shown on the board). A thread whose every step fails (an error of ours, the database)
# or that hangs inside a call stops it, and the listener is shown as one that died. Above libcups' fixed
# minute for a stalled cupsd, which is the printer's fault, not the listener's. Before, the loop that reads
# the sources recorded it whatever its threads did.
STEP_ALLOWANCE_SECONDS = 65.0


@dataclass(frozen=True)
class EventSource:
    """Where one thread hears events: a CUPS server (`server` as the printers name it), or the hot folders."""

    kind: str
    server: str = ""

    def __str__(self) -> str:
        return f"server={self.server}" if self.kind == KIND_CUPS else "hot folders"

    def serves(self, printer: Printer) -> bool:
        if printer.backend != self.kind:
            return False
        return self.kind != KIND_CUPS or printer_server(printer) == self.server

    def feed(self) -> EventFeed:
        return CupsEventFeed(server=self.server) if self.kind == KIND_CUPS else HotFolderEventFeed()


def event_sources() -> set[EventSource]:
    sources: set[EventSource] = set()
    for printer in Printer.objects.filter(backend__in=[KIND_CUPS, KIND_HOTFOLDER]).only(
        "backend", "cups_server"
    ):
        server = printer_server(printer) if printer.backend == KIND_CUPS else ""
        sources.add(EventSource(kind=printer.backend, server=server))
    return sources


class SourceListener:
    """The events of one source, turned into job reads. `step()` is one pull and what it asks for."""

    def __init__(self, *, source: EventSource, feed: EventFeed | None = None) -> None:
        self.source = source
        self.feed = feed if feed is not None else source.feed()
        self.is_watching = False
        # Printers whose server restarts were heard since the last restart (or sweep) this listener saw.
        self._heard: set[int] = set()
        self._retry: dict[int, float] = {}  # job pk -> monotonic deadline
        # The jobs that were submitted when the server last started and still were at the last sweep.
        self._held_at_start: set[int] = set()
        self._started_at = 0.0  # monotonic
        self._last_sweep = 0.0
        # A pull moves the feed past its events, so what they ask for is owed until a step has acted on them:
        # a step that failed after its pull (the database went away) leaves the next one a sweep to make, and
        # a server start it heard still counts as one.
        self._failed_after_pull = False
        self._owed_start = False

    def step(self) -> Counter[str]:
        # Each pull: never the printers' ICC profiles (hundreds of KB each), which nothing here reads.
        printers: dict[int, Printer] = {}
        targets: list[str] = []
        for printer in Printer.objects.defer("icc_profile"):
            if not self.source.serves(printer):
                continue
            try:
                target = printer_target(printer)
            except PrinterTargetRefused:
                # Nothing is read there (nor written, nor erased): the poll shows it offline with the reason.
                # Raised here, it stopped every step, and with them the events of every other printer.
                continue
            printers[printer.pk] = printer
            targets.append(target)
        self.feed.watch(targets)
        batch = self.feed.pull()
        if not self.is_watching:
            self.is_watching = True
            logger.info("printer events: watching %s", self.source)
        needs_sweep = batch.needs_sweep or self._failed_after_pull
        self._failed_after_pull = True  # until this step has acted on what it pulled
        self._owed_start = self._owed_start or batch.server_started
        counts = self._act(batch, printers=printers, needs_sweep=needs_sweep)
        self._failed_after_pull = self._owed_start = False
        return counts

    def _act(self, batch: EventBatch, *, printers: dict[int, Printer], needs_sweep: bool) -> Counter[str]:
        """Read the jobs the pull asks for (those its events name, or every submitted one on a sweep)."""
        counts: Counter[str] = Counter()
        # One round of calls: a server that gives no answer to one is not asked again in this step.
        silent = SilentServers()
        now = time.monotonic()
        server_started = self._owed_start
        if server_started:
            self._started_at = now
        is_sweep = needs_sweep or self._follow_up_due(now)
        if is_sweep:
            self._last_sweep = now
            # Events were lost (a restart, a new subscription, a gap): every job of the source, every printer.
            # A follow-up sweep keeps what it heard: only a new start (another batch) can change it.
            if needs_sweep:
                self._heard.clear()
            self._hear_restarts(printers.values(), silent=silent)
            submitted = PrintJob.objects.filter(status=J.SUBMITTED, printer_id__in=printers)
            wanted = set(submitted.values_list("pk", flat=True))
            if server_started:
                self._held_at_start = set(wanted)
            counts["sweep"] += 1
        else:
            wanted = self._jobs_named(batch.jobs, printers=printers)
            self._hear_restarts(
                (
                    printers[printer_id]
                    for printer_id in PrintJob.objects.filter(pk__in=wanted).values_list(
                        "printer_id", flat=True
                    )
                    if printer_id in printers
                ),
                silent=silent,
            )
        # Loaded after the restart checks: a job they marked must be read with its mark.
        jobs = list(
            PrintJob.objects.filter(pk__in=wanted, status=J.SUBMITTED, printer_id__in=self._heard)
            .select_related("printer")
            .defer("printer__icc_profile")
        )
        for job_id in wanted - {job.pk for job in jobs}:
            # Its server's restarts could not be heard (or it moved on: dropped at the next pull).
            self._retry.setdefault(job_id, time.monotonic() + RETRY_SECONDS)
        for job in jobs:
            self._retry.pop(job.pk, None)
        counts.update(jobs_track(jobs, silent=silent))
        if is_sweep and self._held_at_start:
            still = PrintJob.objects.filter(pk__in=self._held_at_start, status=J.SUBMITTED)
            self._held_at_start = set(still.values_list("pk", flat=True))
        if counts:
            logger.log(
                logging.INFO if is_sweep else logging.DEBUG,
                "printer events %s %s",
                self.source,
                " ".join(f"{name}={count}" for name, count in sorted(counts.items())),
            )
        return counts

    def close(self) -> None:
        self.feed.close()

    def _follow_up_due(self, now: float) -> bool:
        """A sweep after a server start is due: a job it held is still submitted, within the limit."""
        since_start = now - self._started_at
        if not self._held_at_start or since_start >= AFTER_RESTART_SWEEP_LIMIT:
            return False
        if since_start < AFTER_RESTART_SWEEP_SECONDS:
            return now - self._last_sweep >= AFTER_RESTART_SWEEP_EVERY
        return now - self._last_sweep >= AFTER_RESTART_SWEEP_SLOW_EVERY

    def _jobs_named(self, notices: Iterable[JobNotice], *, printers: dict[int, Printer]) -> set[int]:
        """Submitted jobs the events name (by handle), and jobs waiting to be read again."""
        notices = list(notices)
        now = time.monotonic()
        self._retry = {job_id: deadline for job_id, deadline in self._retry.items() if deadline > now}
        wanted = set(
            PrintJob.objects.filter(
                status=J.SUBMITTED,
                printer_id__in=printers,
                backend_job_id__in=[notice.handle for notice in notices],
            ).values_list("pk", flat=True)
        )
        # CUPS may finish a job before its submit task saved the handle: the title names our job.
        titled = set(jobs_titled(n.title for n in notices).values())
        for job_id, status in PrintJob.objects.filter(
            pk__in=(titled | set(self._retry)) - wanted,
            printer_id__in=printers,
            status__in=[J.SUBMITTING, J.SUBMITTED],
        ).values_list("pk", "status"):
            if status == J.SUBMITTED:
                wanted.add(job_id)
            else:
                self._retry.setdefault(job_id, now + RETRY_SECONDS)
        for job_id in set(self._retry) - wanted:
            if not PrintJob.objects.filter(pk=job_id, status__in=[J.SUBMITTING, J.SUBMITTED]).exists():
                del self._retry[job_id]  # moved on without us (the poll, a cancel)
        return wanted

    def _hear_restarts(self, printers: Iterable[Printer], *, silent: SilentServers) -> None:
        for printer in printers:
            if printer.pk in self._heard:
                continue
            # A second try: the first one may have lost to another process hearing the same restarts (a
            # server that gave no answer is not asked again: the second try returns at once).
            if server_restarts_check(printer, silent=silent) or server_restarts_check(printer, silent=silent):
                self._heard.add(printer.pk)


class _SourceThread(threading.Thread):
    """Runs one SourceListener until halted; a server that does not answer is asked again with backoff."""

    def __init__(self, *, source: EventSource, pull_seconds: float) -> None:
        super().__init__(name=f"printer-events {source}", daemon=True)
        self.source = source
        self.pull_seconds = pull_seconds
        self.halted = threading.Event()
        # When a step last ended as the listener's work should (see STEP_ALLOWANCE_SECONDS); the start counts.
        self.working_at = time.monotonic()

    def is_working(self, now: float) -> bool:
        return self.is_alive() and now - self.working_at <= STEP_ALLOWANCE_SECONDS

    def halt(self) -> None:
        self.halted.set()

    def run(self) -> None:
        listener = SourceListener(source=self.source)
        failures = 0
        try:
            while not self.halted.is_set():
                began = time.monotonic()
                try:
                    listener.step()
                except PrinterError as error:
                    self.working_at = time.monotonic()  # the server does not answer: the printer's state
                    failures += 1
                    if failures == 1:
                        logger.warning("printer events: %s does not answer (%s)", self.source, error.code)
                    self.halted.wait(min(BACKOFF_FIRST_SECONDS * 2 ** (failures - 1), BACKOFF_CAP_SECONDS))
                    continue
                except DatabaseError:
                    logger.exception("printer events: database error %s", self.source)
                    connection.close()  # a broken connection is opened afresh by the next query
                    self.halted.wait(BACKOFF_CAP_SECONDS)
                    continue
                except Exception:
                    # One bad step must not end the source's events: the poll covers what it missed.
                    logger.exception("printer events: step failed %s", self.source)
                    self.halted.wait(BACKOFF_CAP_SECONDS)
                    continue
                self.working_at = time.monotonic()
                if failures:
                    logger.info("printer events: %s answers again", self.source)
                    failures = 0
                self.halted.wait(max(0.0, self.pull_seconds - (time.monotonic() - began)))
        finally:
            listener.close()
            connection.close()


def _alive() -> None:
    """Recorded on the database's clock, so that a listener that dies is shown (lab/production/sweeps.py)."""
    try:
        sweep_record(PRINTER_EVENTS)
    except DatabaseError as error:
        logger.warning("printer events: alive not recorded error=%s", type(error).__name__)
        connection.close()


def printer_events_listen(*, stop: threading.Event, pull_seconds: float) -> None:
    """Listen to every event source until `stop` is set: a thread per source, the set of sources read again
    every SOURCE_REFRESH_SECONDS (printers added or moved), a thread that died started again."""
    threads: dict[EventSource, _SourceThread] = {}
    logger.info("printer events: listening, pull every %.2f s", pull_seconds)
    try:
        while not stop.is_set():
            try:
                sources = event_sources()
            except DatabaseError:
                logger.exception("printer events: cannot read the printers")
                connection.close()
                sources = set(threads)
            else:
                now = time.monotonic()
                stuck = sorted(
                    str(source) for source, thread in threads.items() if not thread.is_working(now)
                )
                if stuck:
                    logger.error(
                        "printer events: no step done for %.0f s sources=%s", STEP_ALLOWANCE_SECONDS, stuck
                    )
                else:
                    _alive()
            for source in set(threads) - sources:
                threads.pop(source).halt()
            for source in sources:
                if source not in threads or not threads[source].is_alive():
                    threads[source] = _SourceThread(source=source, pull_seconds=pull_seconds)
                    threads[source].start()
            stop.wait(SOURCE_REFRESH_SECONDS)
    finally:
        for thread in threads.values():
            thread.halt()
        for thread in threads.values():
            thread.join(timeout=30)
        connection.close()
        logger.info("printer events: stopped")
