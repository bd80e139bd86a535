"""Job events of a whole cupsd for the printer-events listener: two standing pull (ippget) subscriptions,
read together in one Get-Notifications request per pull, whatever the number of queues and jobs.

Facts from CUPS 2.4.2's scheduler (ipp.c get_notifications, subscriptions.c) and a private cupsd:
- Get-Notifications answers at once: cupsd ignores `notify-wait`, so there is no long poll; the feed is
  pulled often instead (a small request with nothing to say). `notify-sequence-numbers` makes cupsd send
  only events at or after each number.
- A subscription to `job-state-changed` carries cupsd's mask for job-created, job-state-changed,
  job-completed and job-stopped, and cupsd names it `job-state-changed` alone. A job's events name its id,
  state and job-name. With an ipp backend that waits for the device (the default `waitjob`), a job
  completes about a second after it started; with `?waitjob=false` within a tenth of a second.
- cupsd keeps the last MaxEvents (default 100) events of a subscription in memory only: a listener that
  falls behind by more loses some (a gap in the sequence numbers), and a restart loses all of them while
  keeping the subscription and its next sequence number. A restart adds a `server-started` event to the
  restart subscription (printers/cups_backend.py). Either way the batch says so and the caller sweeps.
- A request naming a subscription that is gone fails as a whole (client-error-not-found).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import cups

from printers import errors
from printers.base import EventBatch, EventFeed, JobNotice, JobState
from printers.cups_ipp import connect, is_not_found, printer_error
from printers.cups_subscriptions import RESTART_EVENTS, standing_watch

logger = logging.getLogger(__name__)

JOB_EVENTS = ("job-state-changed",)


class CupsEventFeed(EventFeed):
    """`CupsEventFeed(server="host:631").pull()`: the job events and restarts of that cupsd since last time.

    Holds one connection and the two subscriptions' cursors (the next sequence number wanted). Not for use
    by two threads at once.
    """

    def __init__(self, *, server: str) -> None:
        self.server = server
        self._connection: cups.Connection | None = None
        self._job_watch = 0
        self._restart_watch = 0
        # None until the first event: cupsd does not tell a subscription's next sequence number.
        self._job_next: int | None = None
        self._restart_next: int | None = None

    def __repr__(self) -> str:
        return f"CupsEventFeed(server={self.server!r}, job_watch={self._job_watch})"

    @property
    def watches(self) -> tuple[int, int]:
        """(job subscription, restart subscription) ids; (0, 0) before the first pull."""
        return self._job_watch, self._restart_watch

    def pull(self) -> EventBatch:
        try:
            return self._pull()
        except errors.PrinterError:
            self.close()
            raise
        except (cups.IPPError, cups.HTTPError, RuntimeError) as exc:
            # A dropped connection (cupsd stopped or restarting) shows as any of these: start afresh.
            self.close()
            raise printer_error(exc, operation="get notifications") from exc

    def close(self) -> None:
        self._connection = None

    def _pull(self) -> EventBatch:
        if self._connection is None:
            self._connection = connect(server=self.server)
        connection = self._connection
        is_complete = bool(self._job_watch)
        if not self._job_watch:
            self._watch(connection)
        try:
            events = self._events(connection)
        except cups.IPPError as exc:
            if not is_not_found(exc):
                raise
            # A watch is gone (cupsd's state was reset, or someone cancelled it): events were missed.
            logger.warning("CUPS event watch lost server=%s: subscribing again", self.server)
            self._watch(connection)
            is_complete = False
            events = self._events(connection)
        job_events = [e for e in events if _integer(e, "notify-subscription-id") == self._job_watch]
        restart_events = [e for e in events if _integer(e, "notify-subscription-id") == self._restart_watch]
        if job_events and self._job_next is not None and _sequence(job_events[0]) > self._job_next:
            logger.warning(
                "CUPS events dropped server=%s: wanted %s, oldest kept %s (raise MaxEvents?)",
                self.server,
                self._job_next,
                _sequence(job_events[0]),
            )
            is_complete = False
        self._job_next = _next_sequence(job_events, self._job_next)
        self._restart_next = _next_sequence(restart_events, self._restart_next)
        return EventBatch(
            jobs=_notices(job_events),
            server_started=any(e.get("notify-subscribed-event") in RESTART_EVENTS for e in restart_events),
            is_complete=is_complete,
        )

    def _watch(self, connection: cups.Connection) -> None:
        self._job_watch = standing_watch(connection, events=JOB_EVENTS)
        self._restart_watch = standing_watch(connection, events=RESTART_EVENTS)
        self._job_next = self._restart_next = None

    def _events(self, connection: cups.Connection) -> list[Mapping[str, Any]]:
        answer = connection.getNotifications(
            [self._job_watch, self._restart_watch],
            sequence_numbers=[self._job_next or 1, self._restart_next or 1],
        )
        return list(answer.get("events", []))


def _notices(events: Sequence[Mapping[str, Any]]) -> tuple[JobNotice, ...]:
    """One notice per job, its latest event's state, in the order of each job's latest event."""
    latest: dict[str, JobNotice] = {}
    for event in events:
        job_id = _integer(event, "notify-job-id")
        if not job_id:
            continue
        handle = str(job_id)
        latest.pop(handle, None)
        latest[handle] = JobNotice(
            handle=handle, title=str(event.get("job-name") or ""), state=_job_state(event.get("job-state"))
        )
    return tuple(latest.values())


def _job_state(value: Any) -> JobState | None:
    try:
        return JobState.from_ipp(int(value))
    except (TypeError, ValueError):
        return None


def _integer(event: Mapping[str, Any], name: str) -> int:
    value = event.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _sequence(event: Mapping[str, Any]) -> int:
    return _integer(event, "notify-sequence-number")


def _next_sequence(events: Sequence[Mapping[str, Any]], current: int | None) -> int | None:
    if not events:
        return current
    return max(_sequence(event) for event in events) + 1
