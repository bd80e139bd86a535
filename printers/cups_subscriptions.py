"""Server-level pull (ippget) subscriptions of a cupsd: the standing watch shared by every queue and
process, and whether a watch is still the restart watch (for CupsBackend.server_events and
printers/cups_events.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cups

from printers.cups_ipp import as_strings, ipp_error_parts, printer_error, translate_ipp_error

_SERVER_URI = "ipp://localhost/"
RESTART_EVENTS = ("server-started", "server-restarted")


def is_restart_watch(
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
    return any(
        int(subscription.get("notify-subscription-id", 0)) == watch
        and sorted(as_strings(subscription.get("notify-events"))) == sorted(RESTART_EVENTS)
        for subscription in _server_subscriptions(connection)
    )


def standing_watch(connection: cups.Connection, *, events: tuple[str, ...]) -> int:
    """The server-level pull subscription to exactly `events`: an existing one, else a new one.

    One per cupsd and set of events, shared by every queue and process (cupsd's MaxSubscriptions, 100 by
    default, must not run out), found again by its events. `events` must be spelled as cupsd answers them
    (it names a subscription's event mask, e.g. `job-state-changed` for job-created/-completed/-stopped too).
    """
    for subscription in _server_subscriptions(connection):
        if (
            sorted(as_strings(subscription.get("notify-events"))) == sorted(events)
            and subscription.get("notify-pull-method") == "ippget"
            and int(subscription.get("notify-lease-duration", -1)) == 0
        ):
            return int(subscription["notify-subscription-id"])
    try:
        # No expiry: it must outlive any gap between pulls. (pycups 2.0.4 crashes on user_data.)
        return int(connection.createSubscription(_SERVER_URI, events=list(events), lease_duration=0))
    except cups.IPPError as exc:
        raise printer_error(exc, operation="create subscription") from exc


def _server_subscriptions(connection: cups.Connection) -> list[Mapping[str, Any]]:
    """The server-level subscriptions cupsd holds; none when it answers not-found (it has none)."""
    try:
        return list(connection.getSubscriptions(_SERVER_URI))
    except cups.IPPError as exc:
        status, message = ipp_error_parts(exc)
        if status != cups.IPP_STATUS_ERROR_NOT_FOUND:
            raise translate_ipp_error(status, message, operation="get subscriptions") from exc
        return []
