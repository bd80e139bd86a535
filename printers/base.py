"""The printer backend interface: job and printer state values and the abstract PrinterBackend.
Backends (CUPS, hot folder) implement it; nothing here knows about Django or our database."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from printers import errors


class JobState(StrEnum):
    """Mirrors IPP job-state 3..9 (RFC 8011 section 5.3.7)."""

    PENDING = "pending"
    HELD = "held"
    PROCESSING = "processing"
    STOPPED = "stopped"
    CANCELED = "canceled"
    ABORTED = "aborted"
    COMPLETED = "completed"

    @property
    def is_final(self) -> bool:
        """A final job never changes state again: stop polling it."""
        return self in FINAL_JOB_STATES

    @classmethod
    def from_ipp(cls, value: int) -> JobState:
        try:
            return _IPP_JOB_STATES[value]
        except KeyError:
            raise ValueError(f"not an IPP job-state: {value!r}") from None


FINAL_JOB_STATES = frozenset({JobState.CANCELED, JobState.ABORTED, JobState.COMPLETED})

_IPP_JOB_STATES = {
    3: JobState.PENDING,
    4: JobState.HELD,
    5: JobState.PROCESSING,
    6: JobState.STOPPED,
    7: JobState.CANCELED,
    8: JobState.ABORTED,
    9: JobState.COMPLETED,
}


class PrinterState(StrEnum):
    ONLINE = "online"
    PAUSED = "paused"
    OFFLINE = "offline"
    ERROR = "error"


@dataclass(frozen=True)
class PrinterStatus:
    state: PrinterState
    reasons: tuple[str, ...] = ()
    message: str = ""
    media_supported: tuple[str, ...] = ()
    media_ready: tuple[str, ...] = ()

    @property
    def is_online(self) -> bool:
        return self.state is PrinterState.ONLINE


@dataclass(frozen=True)
class JobInfo:
    """One backend job as the backend sees it; `message` explains a failure when the backend gives one.

    The optional fields are None when the backend cannot tell (the hot folder knows no processing time).
    Times are Unix seconds as the backend's clock reports them; CUPS keeps whole seconds only.

    - `created_at`: when the backend created the job (CUPS time-at-creation).
    - `processing_started_at`: when the job LAST entered processing (CUPS time-at-processing). CUPS
      overwrites it each time it starts the job again, so a value that changes between two observations
      means the job was sent to the device again.
    - `completed_at`: when the job reached a final state (CUPS time-at-completed).
    - `document_count`: documents the backend holds for the job (CUPS number-of-documents).
    - `completed_impressions`: CUPS job-impressions-completed; cumulative over every attempt to send
      the job, never reset when CUPS restarts a job (see printers/cups_backend.py).
    """

    handle: str
    title: str
    state: JobState
    reasons: tuple[str, ...] = ()
    message: str = ""
    created_at: int | None = None
    processing_started_at: int | None = None
    completed_at: int | None = None
    document_count: int | None = None
    completed_impressions: int | None = None

    @property
    def began(self) -> bool:
        """The backend says the job began at its device: a processing time, or impressions counted.

        CUPS keeps both on a job cancelled or aborted afterwards (at its console, or by a cancel that reached
        the device mid-print), which may have printed; a job cancelled before it began has neither.
        """
        return self.processing_started_at is not None or bool(self.completed_impressions)

    @property
    def was_requeued(self) -> bool:
        """The job is waiting (pending or held) although it had already started processing.

        CUPS puts a processing job back in the queue at a cupsd restart (and when its printer is
        disabled mid-job) and will send the whole document again when it restarts the job: the device
        may already have printed it. Cancel such a job unless a second print is acceptable.
        """
        return self.state in (JobState.PENDING, JobState.HELD) and self.processing_started_at is not None

    @property
    def is_missing_document(self) -> bool:
        """The job is not final, has no document, and the backend no longer expects one.

        A CUPS job whose submitter died between Create-Job and Send-Document (e.g. cupsd restarted) sits
        held with number-of-documents 0 until MultipleOperationTimeout aborts it. While a submit is still
        in flight the same job carries job-state-reason job-incoming, which this excludes.
        """
        return not self.state.is_final and self.document_count == 0 and "job-incoming" not in self.reasons

    def restarted_since(self, processing_started_at: int | None) -> bool:
        """True when the job entered processing again after a previously recorded `processing_started_at`.

        Record `processing_started_at` the first time it is not None; a different later value means the
        backend started the job again and re-sent its document. Undetectable if both starts fall in the
        same second (CUPS keeps whole seconds).
        """
        return (
            processing_started_at is not None
            and self.processing_started_at is not None
            and self.processing_started_at != processing_started_at
        )

    def has_more_impressions_than(self, expected: int) -> bool:
        """True when the backend reported more impressions than one delivery of the job can produce.

        For a one-page document sent unfiltered to an IPP printer (our JPEG photos on an IPP Everywhere
        queue) CUPS' ipp backend reports `copies` impressions per completed send, so more than `copies`
        means the document reached the device more than once. False when the backend gives no count.
        """
        return self.completed_impressions is not None and self.completed_impressions > expected


def check_submit_arguments(*, path: Path, copies: int) -> Path:
    """What every backend refuses before talking to a printer: no copies, or no file to print."""
    source = Path(path)
    if copies < 1:
        raise errors.PermanentPrinterError(
            code=errors.INVALID_REQUEST, message=f"copies must be >= 1: {copies}"
        )
    if not source.is_file():
        raise errors.PermanentPrinterError(code=errors.FILE_NOT_FOUND, message=f"no such file: {source}")
    return source


@dataclass(frozen=True)
class ServerEvents:
    """What happened to the print server since a cursor: when it (re)started, and the new cursor.

    `watch` identifies the backend's standing watch (a CUPS pull subscription); a restarted server that lost
    the watch makes `watch_lost` true: restarted at an unknown time, so the caller assumes "just now".
    """

    watch: int
    last_sequence: int
    started_at: tuple[int, ...] = ()
    watch_lost: bool = False


@dataclass(frozen=True)
class JobNotice:
    """A print server's word that one of its jobs changed (a CUPS job event): read the job again.

    `state` is the job's state when the event was made (None when the server did not say); `title` is the
    job's name, which carries our job id, for a job whose handle we have not saved yet.
    """

    handle: str
    title: str = ""
    state: JobState | None = None


@dataclass(frozen=True)
class EventBatch:
    """What one pull of a print server's event feed brought.

    `jobs`: one notice per job that changed since the last pull (the latest), oldest first.
    `server_started`: the server (re)started since the last pull; jobs it was sending may be sent again, and
    events from before the start are gone: look at every job, after hearing of the restart.
    `is_complete`: False when events may have been missed (the first pull, a watch that had to be replaced,
    a gap in the sequence because the server dropped events): look at every job.
    """

    jobs: tuple[JobNotice, ...] = ()
    server_started: bool = False
    is_complete: bool = True

    @property
    def needs_sweep(self) -> bool:
        return self.server_started or not self.is_complete


class EventFeed(abc.ABC):
    """The job events of one print server (every queue on it), or of a set of hot folders, for one listener.

    A pull costs the same whatever the number of jobs (one request per CUPS server). A feed may keep a
    connection open; `close()` drops it (the next pull opens a new one). Every method may raise a
    PrinterError.
    """

    @abc.abstractmethod
    def pull(self) -> EventBatch:
        """The events since the last pull; the first pull of a feed is never complete."""

    def watch(self, targets: Iterable[str]) -> None:  # noqa: B027 - optional: a server feed sees every queue
        """The printers' targets to hear of (hot folders); a CUPS feed hears every queue of its server."""

    def close(self) -> None:  # noqa: B027 - optional: a feed without a connection has nothing to drop
        """Drop any connection the feed holds."""


class PrinterBackend(abc.ABC):
    """One printer (a CUPS queue or a hot folder). Every method may raise a PrinterError."""

    @abc.abstractmethod
    def submit(
        self,
        *,
        path: Path,
        title: str,
        media: str = "",
        copies: int = 1,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Send the file; return the backend's job handle (its job id as a string)."""

    @abc.abstractmethod
    def job_info(self, handle: str) -> JobInfo:
        """The job's current state, reasons and message."""

    def job_state(self, handle: str) -> JobState:
        return self.job_info(handle).state

    def job_info_of(self, handle: str, *, title: str) -> JobInfo:
        """`job_info` of the job sent under `title`. A print server may give the number to another job: cupsd
        numbers jobs from 1 again when it starts on an empty spool and job cache (a new container, a
        reinstalled print host), so a number alone could read another customer's print as ours (and call
        ours printed). A job there under another title is not ours: JOB_NOT_FOUND. A server that does not
        say the title (names hidden) is taken at its number."""
        info = self.job_info(handle)
        if info.title and title and info.title != title:
            raise errors.PermanentPrinterError(
                code=errors.JOB_NOT_FOUND,
                message=f"backend job {handle} is now another job (its number was given again)",
            )
        return info

    def cancel_of(self, handle: str, *, title: str) -> None:
        """`cancel` of the job sent under `title`; another job that now bears the number is left alone
        (JOB_NOT_FOUND), as in `job_info_of`."""
        self.job_info_of(handle, title=title)
        self.cancel(handle)

    @abc.abstractmethod
    def cancel(self, handle: str) -> None:
        """Cancel a job that has not finished; canceling an already canceled job is a no-op."""

    @abc.abstractmethod
    def printer_status(self) -> PrinterStatus:
        """State, reasons and media of the printer."""

    def server_events(self, *, watch: int | None, after: int) -> ServerEvents:
        """Restarts of the server behind this printer since event `after` of `watch` (None: start a watch).

        A backend without a server of its own (a hot folder) has nothing to report.
        """
        return ServerEvents(watch=watch or 0, last_sequence=after)

    @abc.abstractmethod
    def find_jobs(self, *, title_prefix: str) -> list[JobInfo]:
        """Jobs on this printer whose title starts with the prefix, oldest first (for the reconciler)."""

    def jobs_holding_documents(self, *, title_prefix: str) -> list[JobInfo]:
        """Jobs over at the printer (completed, aborted, canceled) whose title starts with the prefix and
        whose document the printer may still keep: what the discard sweep looks at, oldest first.

        By default every job over that `find_jobs` lists (CUPS forgets a job once it is purged); a backend
        that keeps its finished jobs for ever (a hot folder's `done/`) answers from what it still holds, so
        the sweep's cost follows the documents left, not every job ever printed.
        """
        return [job for job in self.find_jobs(title_prefix=title_prefix) if job.state.is_final]

    def unfinished_sends_discard(self, *, older_than: float) -> int:
        """Erase what sends cut off before they became jobs left at the printer, older than `older_than` Unix
        seconds (a send still going on must not lose its file); how many files were erased.

        A backend whose half-made sends leave nothing of their own to erase (a CUPS job made without its
        document is cancelled by the retry or the tracker) has nothing to do."""
        return 0

    @abc.abstractmethod
    def discard_document(self, handle: str) -> bool:
        """Erase the document the printer keeps of a job that is over; True when something was erased.

        For a job in a final state only: the caller decides that nothing will look at the job again.
        """
