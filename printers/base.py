"""The printer backend interface: job and printer state values and the abstract PrinterBackend.
Backends (CUPS, hot folder) implement it; nothing here knows about Django or our database."""

from __future__ import annotations

import abc
from collections.abc import Mapping
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


def is_final_job_state(state: JobState) -> bool:
    """A final job never changes state again: stop polling it."""
    return state in FINAL_JOB_STATES


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
    """One backend job as the backend sees it; `message` explains a failure when the backend gives one."""

    handle: str
    title: str
    state: JobState
    reasons: tuple[str, ...] = ()
    message: str = ""


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

    @abc.abstractmethod
    def cancel(self, handle: str) -> None:
        """Cancel a job that has not finished; canceling an already canceled job is a no-op."""

    @abc.abstractmethod
    def printer_status(self) -> PrinterStatus:
        """State, reasons and media of the printer."""

    @abc.abstractmethod
    def find_jobs(self, *, title_prefix: str) -> list[JobInfo]:
        """Jobs on this printer whose title starts with the prefix, oldest first (for the reconciler)."""
