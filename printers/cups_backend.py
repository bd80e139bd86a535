"""CUPS printer backend (pycups): CupsBackend, one CUPS queue as a PrinterBackend, and the CUPS facts.
Talks IPP to one CUPS server "host:port"; turns pycups exceptions into transient/permanent PrinterErrors.
Its parts: connections and the error mapping in printers/cups_ipp.py, printer states and queue discovery for
`printers_sync` in printers/cups_printers.py, job attributes as JobInfo in printers/cups_jobs.py, the
server-level subscriptions in printers/cups_subscriptions.py. (Job events of a whole cupsd, for the
printer-events listener, are in printers/cups_events.py.)

Facts observed on CUPS 2.4.2 with ippeveprinter IPP Everywhere queues (see tests/printers/):
- `completed` means the printer accepted the whole document, not that paper came out.
- A document the printer rejects after CUPS queued it (e.g. unknown bytes sent as octet-stream) ends
  `canceled` with job-printer-state-message "Printer cannot print with supplied options." - not an
  exception at submit time.
- A failed submit (document-format not supported) still leaves a `canceled` job with our title in CUPS.
- CUPS hides job-name from non-owners unless the policy says `JobPrivateValues none`; find_jobs() then
  raises job_names_hidden rather than answering "no jobs" (which would make the reconciler reprint).
- Print-Job to a queue that does not exist answers server-error-internal-error ("No such file or
  directory"), so submit checks the queue before calling that permanent.
- A connection cupsd dropped (stopped or restarting) answers every later request with an IPPError
  0x0500 ("No such file or directory", or "Success") or 0x0502, or pycups raises RuntimeError/HTTPError;
  every method turns all of these into TransientPrinterError. pycups' printFile is Create-Job followed by
  Send-Document, so a transient submit failure may still have left a job: reconcile with find_jobs().
- A cupsd holding MaxJobs jobs not yet finished (it drops finished ones from its history first) answers
  Create-Job client-error-not-possible (0x0404) "Too many active jobs.": submit raises server_busy, transient.
- A queue CUPS stopped after its backend failed reads like a person's cupsdisable (reason `paused`, CUPS 2.4.9
  cupsdSetPrinterState); only its printer-state-message, the backend's error, tells (_BACKEND_FAULT_MESSAGES,
  printers/cups_printers.py).
- printFile may also return a job id when cupsd stopped while it was still reading the document: libcups
  got no answer to Send-Document and kept Create-Job's successful-ok. submit() reads the job back (state,
  number-of-documents) and raises a transient error for a job without its document.

cupsd restart (SIGTERM, then start on the same spool), from scheduler/*.c in 2.4.2 and tests/printers/
test_cups_restart.py:
- main(): SIGTERM -> cupsdStopServer(), whose cupsdCleanDirty() writes the job control files (c#####),
  THEN cupsdFreeAllJobs() -> cupsdStopAllJobs(CUPSD_JOB_FORCE): filters and backend are SIGKILLed at once
  (JobKillDelay does not apply to FORCE). A processing job whose ipp backend had already reported
  `cups-waiting-for-job-completed` (document fully sent; job->completed) is set `completed`, any other
  processing job `pending` (cupsdSetJobState resets job-hold-until to no-hold). Only job.cache
  (cupsdSaveAllJobs) records that new state; the control file still says `processing`.
- At start, load_job_cache() / cupsdLoadJob() re-read the control file and turn `processing` into
  `pending` (cupsdLoadJob keeps job-state-reasons job-printing). So (a) a job CUPS had completed at
  shutdown comes back `pending` but not scheduled; the NEXT restart saves it as pending and CUPS then sends
  it again. (b) A job that was pending at shutdown is started again at once. Either way the device gets the
  whole document a second time; the printer-state-reason cups-waiting-for-job-completed is also saved stale
  in printers.conf, and cupsdSetPrinterReasons() only sets job->completed when that reason is newly
  added, so after one restart every interrupted job takes path (b).
- start_job() sets job-state-reasons job-printing and set_time() overwrites time-at-processing (whole
  seconds) each time a job (re)enters processing; time-at-creation never changes. job-impressions-
  completed is never reset: update_job() adds the ipp backend's "PAGE: 1 <copies>" (backend/ipp.c, after
  each completed send), so a re-sent one-image job ends with 2 x copies.
- Nothing in cupsd.conf or the job prevents the re-send: ErrorPolicy/JobRetryLimit act only on a
  backend's exit status (finalize_job), PreserveJobFiles/PreserveJobHistory only after a job is final, a
  job-hold-until is reset to no-hold when the job first goes pending. What helps: (1) cancel a job seen
  `pending`/`held` with a time-at-processing (JobInfo.was_requeued) before CUPS restarts it - path (a)
  leaves it unscheduled until the next restart; (2) the ipp backend's device-URI option `?waitjob=false`
  makes the backend exit (job completed) as soon as the device has the document instead of while it
  prints, shrinking the window to the transfer itself. Detect the rest with JobInfo.restarted_since()
  (time-at-processing changed) and JobInfo.has_more_impressions_than(copies).
- Create-Job without Send-Document (submitter or cupsd gone in between): the job is `held` with
  number-of-documents 0 and reason job-incoming; after a restart the reason is `none`
  (cupsdSetJobHoldUntil "no-hold"). cupsdCheckJobs() (every 10 s) releases it once its hold time
  (creation + MultipleOperationTimeout, default 900 s) passes and start_job() aborts it ("no files").
  JobInfo.is_missing_document detects it; production should set a short MultipleOperationTimeout.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import cups

from printers import errors
from printers.base import (
    JobInfo,
    JobState,
    PrinterBackend,
    PrinterStatus,
    ServerEvents,
    check_submit_arguments,
)
from printers.cups_ipp import connect as connect  # exported: CupsBackend looks it up here, tests replace it
from printers.cups_ipp import ipp_error_parts, optional_int, printer_error, translate_ipp_error
from printers.cups_jobs import (
    DOCUMENT_CHECK_ATTRIBUTES,
    JOB_ATTRIBUTES,
    job_id_of,
    job_info_from_attributes,
    job_not_found,
)
from printers.cups_printers import PRINTER_ATTRIBUTES, printer_status_from_attributes
from printers.cups_subscriptions import RESTART_EVENTS, is_restart_watch, standing_watch

logger = logging.getLogger(__name__)

# find_jobs() cannot see titles: cupsd's policy keeps job-name private (JobPrivateValues).
JOB_NAMES_HIDDEN = "job_names_hidden"

# What cupsd answers a Create-Job it refuses for now (client-error-not-possible, scheduler/ipp.c add_job): no
# job was made.
_CREATE_JOB_REFUSALS = frozenset({"Too many active jobs.", "Quota limit reached."})

_Result = TypeVar("_Result")


class CupsBackend(PrinterBackend):
    @classmethod
    def for_target(cls, *, target: str, server: str = "") -> CupsBackend:
        """The registry's constructor (printers.registry): the target is the CUPS queue name."""
        return cls(queue=target, server=server)

    def __init__(self, *, queue: str, server: str = "") -> None:
        if not queue:
            raise ValueError("CUPS backend needs a queue name")
        self.queue = queue
        self.server = server

    def __repr__(self) -> str:
        return f"CupsBackend(queue={self.queue!r}, server={self.server!r})"

    def submit(
        self,
        *,
        path: Path,
        title: str,
        media: str = "",
        copies: int = 1,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        source = check_submit_arguments(path=path, copies=copies)
        options = {name: str(value) for name, value in (attributes or {}).items()}
        if media:
            options["media"] = media
        options["copies"] = str(copies)
        with self._connection() as connection:
            try:
                job_id = connection.printFile(self.queue, str(source), title, options)
            except cups.IPPError as exc:
                status, message = ipp_error_parts(exc)
                # 0x0500 is also how libcups reports a connection cupsd dropped; the queue check on the
                # same connection then fails too and says transient.
                if status == cups.IPP_STATUS_ERROR_INTERNAL and not self._queue_exists(connection):
                    raise self._queue_not_found() from exc
                if status == cups.IPP_STATUS_ERROR_NOT_POSSIBLE:
                    # A full cupsd: Create-Job answers "Too many active jobs." once MaxJobs jobs are not yet
                    # finished (cupsd purges finished ones from its history first), or "Quota limit reached.".
                    # Both pass as jobs finish; no job was created, so sending again later is safe. The same
                    # status from Send-Document ("Job #7 is finished and cannot be altered.") follows a job
                    # that was made: transient too, but the retry must look for it first.
                    raise errors.TransientPrinterError(
                        code=errors.SERVER_BUSY,
                        message=f"CUPS submit refused for now: {message} (IPP status 0x{status:04x})",
                        nothing_sent=message in _CREATE_JOB_REFUSALS,
                    ) from exc
                raise translate_ipp_error(status, message, operation="submit") from exc
            self._confirm_document_arrived(connection, job_id)
        logger.info("CUPS queue %s accepted job %s", self.queue, job_id)
        return str(job_id)

    def _confirm_document_arrived(self, connection: cups.Connection, job_id: int) -> None:
        """Raise a transient error unless the job printFile reported really holds its document.

        libcups may report a Send-Document cut off by cupsd's shutdown as a success: no answer arrived, and
        it keeps Create-Job's successful-ok as the last status. The job is then held with no document. Our
        own failed submit's empty job is cancelled here when cupsd still answers; otherwise the retry's
        look at the printer (or the tracker's is_missing_document) cancels it. A job gone already (purged
        from the history after it completed) had its document. Whatever else the check meets is transient:
        the job may exist, and the retry looks for it at the printer before it sends anything again.
        """
        try:
            attributes = connection.getJobAttributes(job_id, requested_attributes=DOCUMENT_CHECK_ATTRIBUTES)
        except cups.IPPError as exc:
            status, message = ipp_error_parts(exc)
            if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                return
            raise errors.TransientPrinterError(
                code=errors.PRINTER_UNREACHABLE,
                message=f"CUPS job {job_id} created, its document unconfirmed: {message} (0x{status:04x})",
            ) from exc
        state = JobState.from_ipp(int(attributes["job-state"]))
        documents = optional_int(attributes.get("number-of-documents"))
        if state is JobState.COMPLETED or documents is None or documents > 0:
            return  # (a server that does not say how many documents is not second-guessed)
        if not state.is_final:
            with contextlib.suppress(cups.IPPError, cups.HTTPError, RuntimeError):
                connection.cancelJob(job_id)
        raise errors.TransientPrinterError(
            code=errors.PRINTER_UNREACHABLE,
            message=f"CUPS job {job_id} was created but its document did not arrive (job {state})",
        )

    def job_info(self, handle: str) -> JobInfo:
        job_id = job_id_of(handle)
        with self._connection() as connection:
            attributes = self._call(
                lambda: connection.getJobAttributes(job_id, requested_attributes=JOB_ATTRIBUTES),
                not_found=lambda: job_not_found(handle),
            )
        return job_info_from_attributes(handle=handle, attributes=attributes)

    def cancel(self, handle: str) -> None:
        job_id = job_id_of(handle)
        with self._connection() as connection:
            if (
                self._call(
                    lambda: connection.getJobAttributes(job_id, requested_attributes=["job-state"]),
                    not_found=lambda: job_not_found(handle),
                ).get("job-state")
                == 7
            ):
                return
            try:
                connection.cancelJob(job_id)
            except cups.IPPError as exc:
                status, message = ipp_error_parts(exc)
                if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                    raise job_not_found(handle) from exc
                if status == cups.IPP_STATUS_ERROR_NOT_POSSIBLE:
                    raise errors.PermanentPrinterError(
                        code=errors.JOB_NOT_CANCELABLE, message=message
                    ) from exc
                raise translate_ipp_error(status, message, operation="cancel") from exc

    def discard_document(self, handle: str) -> bool:
        """Purge the job: CUPS deletes its document from the spool (kept a day by default, PreserveJobFiles)
        and its entry from the job history."""
        job_id = job_id_of(handle)
        with self._connection() as connection:
            attributes: Mapping[str, Any] = self._call(
                lambda: connection.getJobAttributes(job_id, requested_attributes=["job-state"]),
                not_found=dict,
            )
            state = attributes.get("job-state")
            if state is None:
                return False
            if not JobState.from_ipp(int(state)).is_final:
                raise errors.PermanentPrinterError(
                    code=errors.JOB_NOT_OVER, message=f"CUPS job {handle} is not over"
                )
            try:
                connection.cancelJob(job_id, purge_job=True)
            except cups.IPPError as exc:
                status, message = ipp_error_parts(exc)
                if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                    return False
                raise translate_ipp_error(status, message, operation="purge") from exc
        logger.info("CUPS queue %s purged job %s", self.queue, job_id)
        return True

    def printer_status(self) -> PrinterStatus:
        with self._connection() as connection:
            attributes = self._call(
                lambda: connection.getPrinterAttributes(self.queue, requested_attributes=PRINTER_ATTRIBUTES),
                not_found=self._queue_not_found,
            )
        return printer_status_from_attributes(attributes)

    def find_jobs(self, *, title_prefix: str) -> list[JobInfo]:
        with self._connection() as connection:
            jobs: Mapping[int, Mapping[str, Any]] = self._call(
                lambda: connection.getJobs(which_jobs="all", requested_attributes=JOB_ATTRIBUTES),
                not_found=dict,
            )
        suffix = f"/printers/{self.queue}"
        ours = [
            (job_id, attributes)
            for job_id, attributes in sorted(jobs.items())
            if str(attributes.get("job-printer-uri", "")).endswith(suffix)
        ]
        if any("job-name" not in attributes for _, attributes in ours):
            # An empty answer here would make the reconciler print the job a second time.
            raise errors.PermanentPrinterError(
                code=JOB_NAMES_HIDDEN,
                message=f"CUPS hides job names on {self.queue!r}: set 'JobPrivateValues none' in its policy",
            )
        return [
            job_info_from_attributes(handle=str(job_id), attributes=attributes)
            for job_id, attributes in ours
            if str(attributes["job-name"]).startswith(title_prefix)
        ]

    def server_events(self, *, watch: int | None, after: int) -> ServerEvents:
        """cupsd restarts since `after`, from a pull subscription (ippget) to `server-started` events.

        A subscription is kept in cupsd's subscriptions.conf across restarts, and cupsd adds a
        `server-started` event to it each time it starts (also after a crash: no `server-stopped` needed).
        The event's `printer-up-time` is the start time. One server-level subscription serves every queue of
        a cupsd (its MaxSubscriptions, 100 by default, must not run out with many printers): it is found
        again by its events, or created. A watch that is gone (cupsd's state was reset) is replaced and
        reported as `watch_lost`.
        """
        with self._connection() as connection:
            lost = False
            if watch:
                try:
                    events = list(connection.getNotifications([watch]).get("events", []))
                except cups.IPPError as exc:
                    status, message = ipp_error_parts(exc)
                    if status != cups.IPP_STATUS_ERROR_NOT_FOUND:
                        raise translate_ipp_error(status, message, operation="get notifications") from exc
                    lost, watch = True, None
                else:
                    if not is_restart_watch(connection, watch=watch, events=events, after=after):
                        lost, watch = True, None
            if not watch:
                watch = standing_watch(connection, events=RESTART_EVENTS)
                events = list(connection.getNotifications([watch]).get("events", []))
                # Events from before this printer began to watch are history, not news.
                current = max([0, *(int(e.get("notify-sequence-number", 0)) for e in events)])
                return ServerEvents(watch=watch, last_sequence=current, watch_lost=lost)
        fresh = [e for e in events if int(e.get("notify-sequence-number", 0)) > after]
        return ServerEvents(
            watch=watch,
            last_sequence=max([after, *(int(e["notify-sequence-number"]) for e in fresh)]),
            started_at=tuple(
                int(e.get("printer-up-time") or 0)
                for e in fresh
                if e.get("notify-subscribed-event") in RESTART_EVENTS
            ),
        )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[cups.Connection]:
        connection = connect(server=self.server)
        try:
            yield connection
        except (cups.IPPError, cups.HTTPError) as exc:
            # Callers translate the statuses they expect; nothing raw may reach the production layer.
            raise printer_error(exc, operation="request") from exc
        except RuntimeError as exc:
            # pycups raises RuntimeError when the server drops the connection mid-request.
            raise errors.ServerSilentError(code=errors.PRINTER_UNREACHABLE, message=str(exc)) from exc

    def _call(
        self, request: Callable[[], _Result], *, not_found: Callable[[], _Result | Exception]
    ) -> _Result:
        try:
            return request()
        except cups.IPPError as exc:
            status, message = ipp_error_parts(exc)
            if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                result = not_found()
                if isinstance(result, Exception):
                    raise result from exc
                return result
            raise translate_ipp_error(status, message, operation="query") from exc

    def _queue_exists(self, connection: cups.Connection) -> bool:
        try:
            connection.getPrinterAttributes(self.queue, requested_attributes=["printer-name"])
        except cups.IPPError as exc:
            status, message = ipp_error_parts(exc)
            if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                return False
            raise translate_ipp_error(status, message, operation="queue check") from exc
        return True

    def _queue_not_found(self) -> errors.PermanentPrinterError:
        return errors.PermanentPrinterError(
            code=errors.QUEUE_NOT_FOUND, message=f"no CUPS queue {self.queue!r}"
        )
