"""CUPS jobs as the lab reads them: the job attributes asked for, a job's attributes as a JobInfo, and a job
handle as CUPS' job id. The facts behind them are in printers/cups_backend.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from printers import errors
from printers.base import JobInfo, JobState
from printers.cups_ipp import as_strings, optional_int

DOCUMENT_CHECK_ATTRIBUTES = ["job-state", "number-of-documents"]
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


def job_info_from_attributes(*, handle: str, attributes: Mapping[str, Any]) -> JobInfo:
    return JobInfo(
        handle=handle,
        title=str(attributes.get("job-name", "")),
        state=JobState.from_ipp(int(attributes["job-state"])),
        reasons=as_strings(attributes.get("job-state-reasons")),
        message=str(attributes.get("job-printer-state-message") or ""),
        created_at=optional_int(attributes.get("time-at-creation")),
        processing_started_at=optional_int(attributes.get("time-at-processing")),
        completed_at=optional_int(attributes.get("time-at-completed")),
        document_count=optional_int(attributes.get("number-of-documents")),
        completed_impressions=optional_int(attributes.get("job-impressions-completed")),
    )


def job_id_of(handle: str) -> int:
    try:
        job_id = int(handle)
    except ValueError:
        raise job_not_found(handle) from None
    if job_id < 1:
        raise job_not_found(handle)
    return job_id


def job_not_found(handle: str) -> errors.PermanentPrinterError:
    return errors.PermanentPrinterError(code=errors.JOB_NOT_FOUND, message=f"no CUPS job {handle!r}")
