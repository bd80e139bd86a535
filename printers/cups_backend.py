"""CUPS printer backend (pycups) and queue discovery for `printers_sync`.
Talks IPP to one CUPS server "host:port"; turns pycups exceptions into transient/permanent PrinterErrors.
(Job events of a whole cupsd, for the printer-events listener, are in printers/cups_events.py.)

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
  cupsdSetPrinterState); only its printer-state-message, the backend's error, tells (_BACKEND_FAULT_MESSAGES).
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
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cups

from printers import errors
from printers.base import (
    JobInfo,
    JobState,
    PrinterBackend,
    PrinterState,
    PrinterStatus,
    ServerEvents,
    check_submit_arguments,
)

logger = logging.getLogger(__name__)

DEFAULT_PORT = 631

# find_jobs() cannot see titles: cupsd's policy keeps job-name private (JobPrivateValues).
JOB_NAMES_HIDDEN = "job_names_hidden"

# cups.setServer/setPort are process-global; the lock keeps two threads from mixing servers up while a
# connection is made. The host and port are also passed to Connection() so the connection keeps them.
_connection_lock = threading.Lock()

_DOCUMENT_CHECK_ATTRIBUTES = ["job-state", "number-of-documents"]
# Keep this list wide: asked for only a few attributes (job-id, job-name, job-state), cupsd answers a finished
# job it has unloaded from memory without its name, and find_jobs would then raise JOB_NAMES_HIDDEN (seen by
# the tests' PrivateCups.jobs, tests/support/cups.py, which asks for the same list).
JOB_ATTRIBUTES = [
    "job-id",
    "job-name",
    "job-state",
    "job-state-reasons",
    "job-printer-state-message",
    "job-printer-uri",
    "time-at-creation",
    "time-at-processing",
    "time-at-completed",
    "number-of-documents",
    "job-impressions-completed",
]
_PRINTER_ATTRIBUTES = [
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "printer-is-accepting-jobs",
    "media-supported",
    "media-ready",
    "device-uri",
]

# IPP printer-state-reasons (suffix stripped) that mean CUPS cannot reach the device.
_OFFLINE_REASONS = frozenset(
    {"offline", "connecting-to-device", "shutdown", "timed-out", "device-unreachable"}
)

# CUPS 2.4.2's ipp backend reports an unreachable device only as printer-state-message (no reason), so
# these English messages (we ask for "en") become the derived reason DEVICE_UNREACHABLE_REASON.
DEVICE_UNREACHABLE_REASON = "device-unreachable"
_UNREACHABLE_MESSAGES = (
    "The printer may not exist or is unavailable at this time.",
    "The printer is unreachable at this time.",
    "The printer is not responding.",
    "Unable to locate printer",
    "Unable to connect to printer",
)

# CUPS stops a queue itself when its backend fails (exit status stop, or ErrorPolicy stop-printer, the
# default, on a failure): cupsdSetPrinterState(STOPPED) always adds the reason `paused`, as a person's
# cupsdisable does, and the printer-state-message is the backend's last ERROR line (scheduler/job.c
# finalize_job, CUPS 2.4.9). A person's pause says "Paused" (stop_printer, no -r) or their own -r reason. So a
# stopped queue whose message is one of these English backend failures (we ask for "en"), or that carries an
# `-error` reason, is in error, not paused: its jobs are rerouted and it is alerted. A stop whose backend left
# no ERROR line (the message is then cleared) or another text still reads as paused; alerts.py alerts a queue
# paused at its server but not by the lab after ALERT_PRINTER_ERROR_MINUTES, so it is not left unseen.
_BACKEND_FAULT_MESSAGES = (
    "The printer configuration is incorrect or the printer no longer exists.",
    "Printer stopped due to backend errors",
    "Unable to open print file",
    "Unable to open device file",
    "Unable to write print data",
    "Unable to read print data",
    "Unable to start backend process.",
    "Unable to get backend exit status.",
    "Unable to get printer status.",
    "Unable to add document to print job.",
    "Unable to cancel print job.",
    "Print job was not accepted.",
    "Print job too large.",
    "Printer cannot print supplied content.",
    "Printer cannot print with supplied options.",
    "Remote host did not accept",
    "IP address is not allowed as hostname",
    "Unknown encryption option value",
    "Unknown version option value",
)

_TRANSIENT_STATUSES: dict[int, str] = {
    cups.IPP_STATUS_ERROR_SERVICE_UNAVAILABLE: errors.SERVER_BUSY,
    cups.IPP_STATUS_ERROR_BUSY: errors.SERVER_BUSY,
    cups.IPP_STATUS_ERROR_TEMPORARY: errors.SERVER_BUSY,
    cups.IPP_STATUS_ERROR_DEVICE: errors.PRINTER_UNREACHABLE,
    cups.IPP_STATUS_ERROR_NOT_ACCEPTING_JOBS: errors.PRINTER_NOT_ACCEPTING_JOBS,
    cups.IPP_STATUS_ERROR_TIMEOUT: errors.SERVER_BUSY,
    cups.IPP_STATUS_ERROR_INTERNAL: errors.IPP_ERROR,
}
_PERMANENT_STATUSES: dict[int, str] = {
    cups.IPP_STATUS_ERROR_DOCUMENT_FORMAT_NOT_SUPPORTED: errors.DOCUMENT_FORMAT_NOT_SUPPORTED,
    cups.IPP_STATUS_ERROR_DOCUMENT_FORMAT_ERROR: errors.DOCUMENT_FORMAT_NOT_SUPPORTED,
    cups.IPP_STATUS_ERROR_ATTRIBUTES_OR_VALUES: errors.ATTRIBUTES_NOT_SUPPORTED,
    cups.IPP_STATUS_ERROR_CONFLICTING: errors.ATTRIBUTES_NOT_SUPPORTED,
    cups.IPP_STATUS_ERROR_FORBIDDEN: errors.NOT_AUTHORIZED,
    cups.IPP_STATUS_ERROR_NOT_AUTHENTICATED: errors.NOT_AUTHORIZED,
    cups.IPP_STATUS_ERROR_NOT_AUTHORIZED: errors.NOT_AUTHORIZED,
    cups.IPP_STATUS_ERROR_CUPS_AUTHENTICATION_CANCELED: errors.NOT_AUTHORIZED,
    cups.IPP_STATUS_ERROR_PRINTER_IS_DEACTIVATED: errors.QUEUE_NOT_FOUND,
    cups.IPP_STATUS_ERROR_OPERATION_NOT_SUPPORTED: errors.IPP_ERROR,
    cups.IPP_STATUS_ERROR_VERSION_NOT_SUPPORTED: errors.IPP_ERROR,
    cups.IPP_STATUS_ERROR_MULTIPLE_JOBS_NOT_SUPPORTED: errors.IPP_ERROR,
    cups.IPP_STATUS_ERROR_JOB_CANCELED: errors.IPP_ERROR,
}

_Result = TypeVar("_Result")
_SERVER_URI = "ipp://localhost/"
RESTART_EVENTS = ("server-started", "server-restarted")


@dataclass(frozen=True)
class QueueInfo:
    """One CUPS queue as `printers_sync` needs it."""

    name: str
    device_uri: str
    status: PrinterStatus
    is_accepting_jobs: bool

    @property
    def media_supported(self) -> tuple[str, ...]:
        return self.status.media_supported


def parse_server(server: str) -> tuple[str, int]:
    """'host:port', 'host', '[::1]:631' -> (host, port); '' means libcups' default (CUPS_SERVER or local)."""
    server = server.strip()
    if not server:
        return cups.getServer(), cups.getPort()
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest.lstrip(":") or DEFAULT_PORT)
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port)
    return server, DEFAULT_PORT


# What cupsd answers a Create-Job it refuses for now (client-error-not-possible, scheduler/ipp.c add_job): no
# job was made.
_CREATE_JOB_REFUSALS = frozenset({"Too many active jobs.", "Quota limit reached."})


def connect(*, server: str) -> cups.Connection:
    """A new pycups connection to `server`; raises TransientPrinterError when nothing answers."""
    host, port = parse_server(server)
    with _connection_lock:
        cups.setServer(host)
        cups.setPort(port)
        try:
            return cups.Connection(host=host, port=port)
        except RuntimeError as exc:
            raise errors.ServerSilentError(
                code=errors.PRINTER_UNREACHABLE,
                message=f"CUPS server {host}:{port} unreachable: {exc}",
                nothing_sent=True,  # no connection: no request was written
            ) from exc


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
                status, message = _ipp_error_parts(exc)
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
                raise _translate_ipp_error(status, message, operation="submit") from exc
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
            attributes = connection.getJobAttributes(job_id, requested_attributes=_DOCUMENT_CHECK_ATTRIBUTES)
        except cups.IPPError as exc:
            status, message = _ipp_error_parts(exc)
            if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                return
            raise errors.TransientPrinterError(
                code=errors.PRINTER_UNREACHABLE,
                message=f"CUPS job {job_id} created, its document unconfirmed: {message} (0x{status:04x})",
            ) from exc
        state = JobState.from_ipp(int(attributes["job-state"]))
        documents = _optional_int(attributes.get("number-of-documents"))
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
        job_id = _job_id(handle)
        with self._connection() as connection:
            attributes = self._call(
                lambda: connection.getJobAttributes(job_id, requested_attributes=JOB_ATTRIBUTES),
                not_found=lambda: _job_not_found(handle),
            )
        return _job_info(handle=handle, attributes=attributes)

    def cancel(self, handle: str) -> None:
        job_id = _job_id(handle)
        with self._connection() as connection:
            if (
                self._call(
                    lambda: connection.getJobAttributes(job_id, requested_attributes=["job-state"]),
                    not_found=lambda: _job_not_found(handle),
                ).get("job-state")
                == 7
            ):
                return
            try:
                connection.cancelJob(job_id)
            except cups.IPPError as exc:
                status, message = _ipp_error_parts(exc)
                if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                    raise _job_not_found(handle) from exc
                if status == cups.IPP_STATUS_ERROR_NOT_POSSIBLE:
                    raise errors.PermanentPrinterError(
                        code=errors.JOB_NOT_CANCELABLE, message=message
                    ) from exc
                raise _translate_ipp_error(status, message, operation="cancel") from exc

    def discard_document(self, handle: str) -> bool:
        """Purge the job: CUPS deletes its document from the spool (kept a day by default, PreserveJobFiles)
        and its entry from the job history."""
        job_id = _job_id(handle)
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
                status, message = _ipp_error_parts(exc)
                if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                    return False
                raise _translate_ipp_error(status, message, operation="purge") from exc
        logger.info("CUPS queue %s purged job %s", self.queue, job_id)
        return True

    def printer_status(self) -> PrinterStatus:
        with self._connection() as connection:
            attributes = self._call(
                lambda: connection.getPrinterAttributes(self.queue, requested_attributes=_PRINTER_ATTRIBUTES),
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
            _job_info(handle=str(job_id), attributes=attributes)
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
                    status, message = _ipp_error_parts(exc)
                    if status != cups.IPP_STATUS_ERROR_NOT_FOUND:
                        raise _translate_ipp_error(status, message, operation="get notifications") from exc
                    lost, watch = True, None
                else:
                    if not _is_restart_watch(connection, watch=watch, events=events, after=after):
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
        except cups.IPPError as exc:
            # Callers translate the statuses they expect; nothing raw may reach the production layer.
            status, message = _ipp_error_parts(exc)
            raise _translate_ipp_error(status, message, operation="request") from exc
        except RuntimeError as exc:
            # pycups raises RuntimeError when the server drops the connection mid-request.
            raise errors.ServerSilentError(code=errors.PRINTER_UNREACHABLE, message=str(exc)) from exc
        except cups.HTTPError as exc:
            raise errors.TransientPrinterError(
                code=errors.PRINTER_UNREACHABLE,
                message=f"CUPS answered HTTP {exc.args[0] if exc.args else '?'}",
            ) from exc

    def _call(
        self, request: Callable[[], _Result], *, not_found: Callable[[], _Result | Exception]
    ) -> _Result:
        try:
            return request()
        except cups.IPPError as exc:
            status, message = _ipp_error_parts(exc)
            if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                result = not_found()
                if isinstance(result, Exception):
                    raise result from exc
                return result
            raise _translate_ipp_error(status, message, operation="query") from exc

    def _queue_exists(self, connection: cups.Connection) -> bool:
        try:
            connection.getPrinterAttributes(self.queue, requested_attributes=["printer-name"])
        except cups.IPPError as exc:
            status, message = _ipp_error_parts(exc)
            if status == cups.IPP_STATUS_ERROR_NOT_FOUND:
                return False
            raise _translate_ipp_error(status, message, operation="queue check") from exc
        return True

    def _queue_not_found(self) -> errors.PermanentPrinterError:
        return errors.PermanentPrinterError(
            code=errors.QUEUE_NOT_FOUND, message=f"no CUPS queue {self.queue!r}"
        )


def _is_restart_watch(
    connection: cups.Connection, *, watch: int, events: Sequence[Mapping[str, Any]], after: int
) -> bool:
    """The subscription `watch` is still the restart watch whose events were read up to `after`.

    A cupsd that started on an empty state numbers subscriptions and their events from 1 again, so the id
    may now name another subscription: the printer-events listener's job subscription (whose job events would
    pass the cursor while no restart is ever heard), or a new restart subscription (whose restarts would all
    read as old news).
    """
    if any(event.get("notify-subscribed-event") not in RESTART_EVENTS for event in events):
        return False  # not a restart subscription
    numbers = [int(event.get("notify-sequence-number", 0)) for event in events]
    if numbers:
        # A subscription's newest event is the last its cache drops, so ours never answers only with older
        # ones than the cursor.
        return max(numbers) >= after
    # No event says what it is: its mask does (one more request, only while the watch has no event kept).
    try:
        subscriptions = connection.getSubscriptions(_SERVER_URI)
    except cups.IPPError as exc:
        status, message = _ipp_error_parts(exc)
        if status != cups.IPP_STATUS_ERROR_NOT_FOUND:
            raise _translate_ipp_error(status, message, operation="get subscriptions") from exc
        subscriptions = []
    return any(
        int(subscription.get("notify-subscription-id", 0)) == watch
        and sorted(_as_strings(subscription.get("notify-events"))) == sorted(RESTART_EVENTS)
        for subscription in subscriptions
    )


def standing_watch(connection: cups.Connection, *, events: tuple[str, ...]) -> int:
    """The server-level pull subscription to exactly `events`: an existing one, else a new one.

    One per cupsd and set of events, shared by every queue and process (cupsd's MaxSubscriptions, 100 by
    default, must not run out), found again by its events. `events` must be spelled as cupsd answers them
    (it names a subscription's event mask, e.g. `job-state-changed` for job-created/-completed/-stopped too).
    """
    try:
        existing = connection.getSubscriptions(_SERVER_URI)
    except cups.IPPError as exc:
        status, message = _ipp_error_parts(exc)
        if status != cups.IPP_STATUS_ERROR_NOT_FOUND:
            raise _translate_ipp_error(status, message, operation="get subscriptions") from exc
        existing = []
    for subscription in existing:
        if (
            sorted(_as_strings(subscription.get("notify-events"))) == sorted(events)
            and subscription.get("notify-pull-method") == "ippget"
            and int(subscription.get("notify-lease-duration", -1)) == 0
        ):
            return int(subscription["notify-subscription-id"])
    try:
        # No expiry: it must outlive any gap between pulls. (pycups 2.0.4 crashes on user_data.)
        return int(connection.createSubscription(_SERVER_URI, events=list(events), lease_duration=0))
    except cups.IPPError as exc:
        status, message = _ipp_error_parts(exc)
        raise _translate_ipp_error(status, message, operation="create subscription") from exc


def is_not_found(exc: cups.IPPError) -> bool:
    """The IPP answer says the object (job, queue, subscription) does not exist."""
    return _ipp_error_parts(exc)[0] == cups.IPP_STATUS_ERROR_NOT_FOUND


def printer_error(exc: Exception, *, operation: str) -> errors.PrinterError:
    """A pycups failure as a PrinterError: IPP statuses by their meaning, a dropped connection transient."""
    if isinstance(exc, cups.IPPError):
        status, message = _ipp_error_parts(exc)
        return _translate_ipp_error(status, message, operation=operation)
    if isinstance(exc, cups.HTTPError):
        return errors.TransientPrinterError(
            code=errors.PRINTER_UNREACHABLE,
            message=f"CUPS answered HTTP {exc.args[0] if exc.args else '?'}",
        )
    return errors.ServerSilentError(code=errors.PRINTER_UNREACHABLE, message=f"CUPS {operation}: {exc}")


def list_queues(*, server: str) -> list[QueueInfo]:
    """Every queue on the server with device URI, status and media-supported, sorted by name."""
    connection = connect(server=server)
    try:
        printers = connection.getPrinters()
        queues = []
        for name in sorted(printers):
            attributes = dict(printers[name])
            with contextlib.suppress(cups.IPPError):
                attributes.update(
                    connection.getPrinterAttributes(name, requested_attributes=_PRINTER_ATTRIBUTES)
                )
            queues.append(
                QueueInfo(
                    name=name,
                    device_uri=str(attributes.get("device-uri", "")),
                    status=printer_status_from_attributes(attributes),
                    is_accepting_jobs=bool(attributes.get("printer-is-accepting-jobs", True)),
                )
            )
        return queues
    except cups.IPPError as exc:
        status, message = _ipp_error_parts(exc)
        raise _translate_ipp_error(status, message, operation="list queues") from exc
    except (RuntimeError, cups.HTTPError) as exc:
        raise errors.TransientPrinterError(code=errors.PRINTER_UNREACHABLE, message=str(exc)) from exc


def printer_status_from_attributes(attributes: Mapping[str, Any]) -> PrinterStatus:
    """Map IPP printer-state / printer-state-reasons / printer-is-accepting-jobs to our four states."""
    reasons = tuple(
        reason for reason in _as_strings(attributes.get("printer-state-reasons")) if reason != "none"
    )
    message = str(attributes.get("printer-state-message", ""))
    if message.startswith(_UNREACHABLE_MESSAGES):
        reasons = (*reasons, DEVICE_UNREACHABLE_REASON)
    bare_reasons = {_strip_severity(reason) for reason in reasons}
    printer_state = int(attributes.get("printer-state", 3))
    is_accepting_jobs = bool(attributes.get("printer-is-accepting-jobs", True))
    if bare_reasons & _OFFLINE_REASONS:
        state = PrinterState.OFFLINE
    elif printer_state == 5:
        stopped_by_fault = (
            "paused" not in bare_reasons
            or any(reason.endswith("-error") for reason in reasons)
            or message.startswith(_BACKEND_FAULT_MESSAGES)
        )
        state = PrinterState.ERROR if stopped_by_fault else PrinterState.PAUSED
    elif not is_accepting_jobs:
        state = PrinterState.PAUSED
    elif any(reason.endswith("-error") for reason in reasons):
        state = PrinterState.ERROR
    else:
        state = PrinterState.ONLINE
    return PrinterStatus(
        state=state,
        reasons=reasons,
        message=message,
        media_supported=_as_strings(attributes.get("media-supported")),
        media_ready=_as_strings(attributes.get("media-ready")),
    )


def _job_info(*, handle: str, attributes: Mapping[str, Any]) -> JobInfo:
    return JobInfo(
        handle=handle,
        title=str(attributes.get("job-name", "")),
        state=JobState.from_ipp(int(attributes["job-state"])),
        reasons=_as_strings(attributes.get("job-state-reasons")),
        message=str(attributes.get("job-printer-state-message") or ""),
        created_at=_optional_int(attributes.get("time-at-creation")),
        processing_started_at=_optional_int(attributes.get("time-at-processing")),
        completed_at=_optional_int(attributes.get("time-at-completed")),
        document_count=_optional_int(attributes.get("number-of-documents")),
        completed_impressions=_optional_int(attributes.get("job-impressions-completed")),
    )


def _optional_int(value: Any) -> int | None:
    # CUPS sends time-at-processing as the out-of-band value no-value until the job first processes;
    # pycups then gives None.
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _as_strings(value: Any) -> tuple[str, ...]:
    # pycups returns a bare string for a one-value attribute and a list for several.
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(item) for item in value)


def _strip_severity(reason: str) -> str:
    for suffix in ("-error", "-warning", "-report"):
        if reason.endswith(suffix):
            return reason[: -len(suffix)]
    return reason


def _job_id(handle: str) -> int:
    try:
        job_id = int(handle)
    except ValueError:
        raise _job_not_found(handle) from None
    if job_id < 1:
        raise _job_not_found(handle)
    return job_id


def _job_not_found(handle: str) -> errors.PermanentPrinterError:
    return errors.PermanentPrinterError(code=errors.JOB_NOT_FOUND, message=f"no CUPS job {handle!r}")


def _ipp_error_parts(exc: cups.IPPError) -> tuple[int, str]:
    status = int(exc.args[0]) if exc.args else cups.IPP_STATUS_ERROR_INTERNAL
    message = str(exc.args[1]) if len(exc.args) > 1 else cups.ippErrorString(status)
    return status, message


# libcups' httpStatus() text of HTTP 400, which it reports as the IPP error's message when the HTTP answer
# itself was 400 (cupsLastErrorString); an IPP response's message is its status-message or ippErrorString().
_HTTP_BAD_REQUEST = "Bad Request"
# What libcups reports when the server took the request and answered nothing until libcups gave up (about
# 60 s; measured on a SIGSTOPped cupsd): an internal error whose text is strerror(0), no IPP answer at all.
_NO_ANSWER = "Success"


def _translate_ipp_error(status: int, message: str, *, operation: str) -> errors.PrinterError:
    text = f"CUPS {operation} failed: {message} (IPP status 0x{status:04x})"
    if status == cups.IPP_STATUS_ERROR_INTERNAL and message == _NO_ANSWER:
        # The server is silent (stalled: it takes connections and answers nothing), as good as unreachable.
        return errors.ServerSilentError(code=errors.PRINTER_UNREACHABLE, message=text)
    if status in _TRANSIENT_STATUSES:
        return errors.TransientPrinterError(code=_TRANSIENT_STATUSES[status], message=text)
    if status in _PERMANENT_STATUSES:
        return errors.PermanentPrinterError(code=_PERMANENT_STATUSES[status], message=text)
    if 0x0500 <= status <= 0x05FF:
        # Other server errors describe the server's condition, not our request.
        return errors.TransientPrinterError(code=errors.IPP_ERROR, message=text)
    if status == cups.IPP_STATUS_ERROR_BAD_REQUEST and message == _HTTP_BAD_REQUEST:
        # An HTTP-level 400, not an IPP answer (which says client-error-bad-request or cupsd's own reason):
        # cupsd answers it to a request it was still reading when it shut down (a restart mid-submit).
        # libcups wrote the request, so it is well-formed; the same request on a running cupsd goes through.
        return errors.TransientPrinterError(code=errors.PRINTER_UNREACHABLE, message=text)
    if status < 0x0400:
        # A failed call with a "successful" status: no IPP answer arrived at all (libcups kept the last
        # good status), e.g. cupsd stopped between Create-Job and Send-Document. Seen with pycups 2.0.4.
        return errors.ServerSilentError(code=errors.PRINTER_UNREACHABLE, message=text)
    return errors.PermanentPrinterError(code=errors.IPP_ERROR, message=text)
