"""Anomaly rules over employees' photo views: which audit records an auditor should look at, and why.
Read-only; the review queue (lab.gate.review) stores what these rules find.

An *attempt* is an employee's record of a photo request: a view (``image.view.preview``, ``image.view.full``,
``image.download``) or a refusal (``image.access.denied``); customers' own downloads and the workers' system
reads are not employee attempts. The rules, each a flag name:

- ``outside_production_step``: a refused attempt whose gate rule says the purpose was allowed for the role
  but the named context was not at a step where it fits (``STEP_RULES``: the print job was no longer active,
  the order was not being packed, the ticket or clarification case was closed, the context did not exist),
  and any *granted* view whose rule is not one of the gate's fitting-step rules (``FITTING_RULES``) — a
  cross-check on the gate itself.
- ``denied_attempt``: every other refused attempt (wrong role or purpose, missing justification, ...).
  So every refusal carries exactly one of these two flags.
- ``burst_of_orders``: a granted view at which the same person has viewed at least ``AUDIT_BURST_ORDERS``
  different orders within the last ``AUDIT_BURST_MINUTES`` (the window ends at, and includes, this view);
  the view that reaches the threshold and every later one while the window still holds that many are flagged.
- ``repeated_views``: a granted view at which the same person has viewed the same order at least
  ``AUDIT_REPEAT_VIEWS`` times within the last ``AUDIT_REPEAT_HOURS``.
- ``outside_shift``: an attempt outside every StaffShift of that person, on the wall clock of the lab's time
  zone (``LAB_TIME_ZONE``, summer time included). People with no shift on record are not judged by this rule
  (a lab that does not keep shifts gets no such flags).
- ``after_shipment``: an attempt naming an order whose ``shipped_at`` is at or before the attempt.
- ``maintenance_view``: every granted view under the ``maintenance`` purpose (the gate also queues each one
  for review as it happens): a printer problem is a reason people could stretch, so each is looked at.
- ``clarification_view``: every granted view under the ``order_clarification`` purpose, queued the same way:
  any technician may put an order on hold with a question, and a colleague may then open its originals at full
  resolution, so each such view is looked at too.
- ``grant_renewal``: the first view under a grant that the same person opened for the same photo, purpose
  and context within ``AUDIT_GRANT_RENEWAL_SECONDS`` after their previous grant for it expired — keeping a
  photo open past the grant's lifetime by asking again.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.conf import settings

from lab.accounts.roles import NON_EMPLOYEE_ACTOR_ROLES
from lab.audit.configured import record_key
from lab.audit.models import AccessGrant, AuditRecord, StaffShift
from lab.audit.records import record_mac_holds
from lab.lib.ids import is_uuid

VIEW_ACTIONS = ("image.view.preview", "image.view.full", "image.download")
DENIED_ACTION = "image.access.denied"
ATTEMPT_ACTIONS = (*VIEW_ACTIONS, DENIED_ACTION)
NON_EMPLOYEE_ROLES = NON_EMPLOYEE_ACTOR_ROLES
STEP_RULES = frozenset(
    {
        "context_not_found",
        "print_job_not_active",
        "order_not_being_packed",
        "photo_not_on_ticket",
        "photo_not_on_ticket_printer",  # the rule's name before tickets named their jobs
        "maintenance_ticket_closed",
        "order_packed_or_shipped",
        "order_not_in_production",
        "clarification_not_open",
        # printing or handling asked for a held order's job that the hold stops (waiting, not yet sent);
        # a job that was at the printer (failed, unknown) is still handled and is not refused for the hold
        "order_on_hold",
    }
)
FITTING_RULES = frozenset(
    {"active_print_job", "order_being_packed", "open_maintenance_ticket", "open_clarification_case"}
)
_LOOKUP_CHUNK = 1000


class Flag(StrEnum):
    DENIED_ATTEMPT = "denied_attempt"
    OUTSIDE_PRODUCTION_STEP = "outside_production_step"
    BURST_OF_ORDERS = "burst_of_orders"
    REPEATED_VIEWS = "repeated_views"
    OUTSIDE_SHIFT = "outside_shift"
    AFTER_SHIPMENT = "after_shipment"
    MAINTENANCE_VIEW = "maintenance_view"
    CLARIFICATION_VIEW = "clarification_view"
    GRANT_RENEWAL = "grant_renewal"


@dataclass(frozen=True)
class Thresholds:
    burst_orders: int
    burst_window: timedelta
    repeat_views: int
    repeat_window: timedelta


def thresholds() -> Thresholds:
    return Thresholds(
        burst_orders=int(getattr(settings, "AUDIT_BURST_ORDERS", 10)),
        burst_window=timedelta(minutes=int(getattr(settings, "AUDIT_BURST_MINUTES", 15))),
        repeat_views=int(getattr(settings, "AUDIT_REPEAT_VIEWS", 5)),
        repeat_window=timedelta(hours=int(getattr(settings, "AUDIT_REPEAT_HOURS", 24))),
    )


@dataclass(frozen=True)
class Attempt:
    seq: int
    occurred_at: datetime
    actor_id: str
    action: str
    outcome: str
    rule: str
    order_ref: str | None
    purpose: str = ""

    @property
    def is_granted_view(self) -> bool:
        return self.action in VIEW_ACTIONS and self.outcome == "granted"


@dataclass(frozen=True)
class Anomaly:
    seq: int
    flag: Flag
    actor_id: str
    occurred_at: datetime
    order_ref: str | None
    detail: str


def attempts_between(*, since: datetime, until: datetime, actor_id: str | None = None) -> list[Attempt]:
    """Employee attempts in [since, until) in time order; served by the (action, occurred_at) index."""
    rows = AuditRecord.objects.filter(
        action__in=ATTEMPT_ACTIONS, occurred_at__gte=since, occurred_at__lt=until, actor_id__isnull=False
    ).exclude(actor_role__in=NON_EMPLOYEE_ROLES)
    if actor_id is not None:
        rows = rows.filter(actor_id=actor_id)
    fields = ("seq", "occurred_at", "actor_id", "action", "outcome", "rule", "order_ref", "purpose")
    ordered = rows.order_by("occurred_at", "seq").values_list(*fields)
    return [Attempt(*row) for row in ordered.iterator(chunk_size=5000)]


def anomalies_find(*, since: datetime, until: datetime, actor_id: str | None = None) -> list[Anomaly]:
    """Every flag on attempts in [since, until), ordered by seq then flag name."""
    limits = thresholds()
    # Window rules look back from each attempt, so attempts just before `since` count towards them.
    lookback = max(limits.burst_window, limits.repeat_window)
    attempts = attempts_between(since=since - lookback, until=until, actor_id=actor_id)
    in_range = [attempt for attempt in attempts if attempt.occurred_at >= since]
    found = [
        *refusal_flags(in_range),
        *burst_flags(attempts, since=since, limits=limits),
        *repeat_flags(attempts, since=since, limits=limits),
        *shift_flags(in_range, shifts=_shifts_by_actor({a.actor_id for a in in_range})),
        *shipment_flags(in_range, shipped=_shipped_at({a.order_ref for a in in_range if a.order_ref})),
        *maintenance_flags(in_range),
        *renewal_flags(in_range, renewals=_renewal_gaps({a.seq for a in in_range if a.is_granted_view})),
    ]
    return sorted(found, key=lambda anomaly: (anomaly.seq, anomaly.flag.value))


def _anomaly(attempt: Attempt, flag: Flag, detail: str) -> Anomaly:
    return Anomaly(attempt.seq, flag, attempt.actor_id, attempt.occurred_at, attempt.order_ref, detail)


def refusal_flags(attempts: Iterable[Attempt]) -> Iterator[Anomaly]:
    for attempt in attempts:
        if attempt.outcome == "denied":
            flag = Flag.OUTSIDE_PRODUCTION_STEP if attempt.rule in STEP_RULES else Flag.DENIED_ATTEMPT
            yield _anomaly(attempt, flag, f"refused by the gate: {attempt.rule}")
        elif attempt.is_granted_view and attempt.rule not in FITTING_RULES:
            yield _anomaly(
                attempt, Flag.OUTSIDE_PRODUCTION_STEP, f"granted without a fitting step: {attempt.rule}"
            )


def burst_flags(attempts: Iterable[Attempt], *, since: datetime, limits: Thresholds) -> Iterator[Anomaly]:
    """Sliding window per person over granted views: distinct orders within (t - window, t]."""
    windows: dict[str, deque[tuple[datetime, str]]] = defaultdict(deque)
    orders: dict[str, Counter[str]] = defaultdict(Counter)
    minutes = int(limits.burst_window.total_seconds() // 60)
    for attempt in attempts:
        if not attempt.is_granted_view or attempt.order_ref is None:
            continue
        window, counts = windows[attempt.actor_id], orders[attempt.actor_id]
        window.append((attempt.occurred_at, attempt.order_ref))
        counts[attempt.order_ref] += 1
        while window[0][0] <= attempt.occurred_at - limits.burst_window:
            _, order_ref = window.popleft()
            counts[order_ref] -= 1
            if counts[order_ref] == 0:
                del counts[order_ref]
        if len(counts) >= limits.burst_orders and attempt.occurred_at >= since:
            yield _anomaly(
                attempt, Flag.BURST_OF_ORDERS, f"{len(counts)} different orders within {minutes} minutes"
            )


def repeat_flags(attempts: Iterable[Attempt], *, since: datetime, limits: Thresholds) -> Iterator[Anomaly]:
    """Sliding window per (person, order) over granted views: views within (t - window, t]."""
    windows: dict[tuple[str, str], deque[datetime]] = defaultdict(deque)
    hours = int(limits.repeat_window.total_seconds() // 3600)
    for attempt in attempts:
        if not attempt.is_granted_view or attempt.order_ref is None:
            continue
        window = windows[(attempt.actor_id, attempt.order_ref)]
        window.append(attempt.occurred_at)
        while window[0] <= attempt.occurred_at - limits.repeat_window:
            window.popleft()
        if len(window) >= limits.repeat_views and attempt.occurred_at >= since:
            yield _anomaly(
                attempt, Flag.REPEATED_VIEWS, f"view {len(window)} of this order within {hours} hours"
            )


def lab_zone() -> ZoneInfo:
    """The lab's own time zone (settings.LAB_TIME_ZONE, checked when settings load): people's shifts are
    wall-clock times in it and the auditors' review day runs midnight to midnight in it. Not Django's
    TIME_ZONE, which stays UTC for the pages that show times labelled UTC."""
    return ZoneInfo(settings.LAB_TIME_ZONE)


@dataclass(frozen=True)
class ShiftWindow:
    weekday: int
    start: time
    end: time

    def covers(self, moment: datetime) -> bool:
        """Whether a moment on the lab's wall clock (lab_zone) falls in this weekly window; end is exclusive.

        Judged on the wall clock, a shift keeps its hours on the days the clocks change: 22:00-06:00 is nine
        hours long on the night they go back and seven on the night they go forward, and 01:00-02:00 on the
        night they go back covers both of its hours."""
        day, clock = moment.weekday(), moment.time()
        if self.start < self.end:
            return day == self.weekday and self.start <= clock < self.end
        # Past midnight: the evening of its weekday and the early hours of the next day.
        return (day == self.weekday and clock >= self.start) or (
            day == (self.weekday + 1) % 7 and clock < self.end
        )


def shift_flags(attempts: Iterable[Attempt], *, shifts: dict[str, list[ShiftWindow]]) -> Iterator[Anomaly]:
    zone = lab_zone()
    for attempt in attempts:
        windows = shifts.get(attempt.actor_id)
        if not windows:
            continue
        local = attempt.occurred_at.astimezone(zone)
        if not any(window.covers(local) for window in windows):
            yield _anomaly(
                attempt, Flag.OUTSIDE_SHIFT, f"at {local:%a %H:%M} {local.tzname()}, outside every shift"
            )


def shipment_flags(attempts: Iterable[Attempt], *, shipped: dict[str, datetime]) -> Iterator[Anomaly]:
    for attempt in attempts:
        shipped_at = shipped.get(attempt.order_ref or "")
        if shipped_at is not None and attempt.occurred_at >= shipped_at:
            yield _anomaly(attempt, Flag.AFTER_SHIPMENT, f"order shipped at {shipped_at:%Y-%m-%d %H:%M:%S}Z")


# The purposes whose every granted view is flagged (and queued by the gate as it happens), with their flag.
ALWAYS_REVIEWED = {"maintenance": Flag.MAINTENANCE_VIEW, "order_clarification": Flag.CLARIFICATION_VIEW}


def maintenance_flags(attempts: Iterable[Attempt]) -> Iterator[Anomaly]:
    """Every granted view under a purpose in ALWAYS_REVIEWED (maintenance, order clarification)."""
    for attempt in attempts:
        flag = ALWAYS_REVIEWED.get(attempt.purpose or "")
        if attempt.is_granted_view and flag is not None:
            yield _anomaly(attempt, flag, f"{flag.value.replace('_', ' ')}: {attempt.rule}")


def renewal_flags(attempts: Iterable[Attempt], *, renewals: dict[int, timedelta]) -> Iterator[Anomaly]:
    for attempt in attempts:
        gap = renewals.get(attempt.seq)
        if gap is not None:
            yield _anomaly(
                attempt,
                Flag.GRANT_RENEWAL,
                f"asked again {int(gap.total_seconds())} s after the last grant for this photo ended",
            )


def _renewal_gaps(seqs: set[int]) -> dict[int, timedelta]:
    """For views that were the first under a renewing grant: how long after the previous grant ended."""
    found: dict[int, timedelta] = {}
    ordered = sorted(seqs)
    for start in range(0, len(ordered), _LOOKUP_CHUNK):
        rows = AccessGrant.objects.filter(
            first_seq__in=ordered[start : start + _LOOKUP_CHUNK], renews__isnull=False
        ).values_list("first_seq", "created_at", "renews__expires_at", "renews__revoked_at")
        found.update(
            # the previous grant ended at its expiry, or earlier when a refusal revoked it
            {
                seq: created - min(expired, revoked or expired)
                for seq, created, expired, revoked in rows
                if seq is not None
            }
        )
    return found


SHIFT_CHANGED_ACTION = "staff.shift_changed"


def shift_text(*, weekday: int, start: time, end: time) -> str:
    """A shift as the lab admin's `staff.shift_changed` records spell it (lab.staff.admin.shifts)."""
    return f"{StaffShift.Weekday(weekday).label} {start:%H:%M}-{end:%H:%M}"


def shifts_changed_outside_the_lab() -> list[str]:
    """The public ids of the people whose shifts in the table differ from what the lab admin's
    `staff.shift_changed` records (valid mac, in a person's name) say they are: the table takes UPDATE and
    DELETE from the app's role with no trace, and deleting a technician's shifts, or widening one, removes
    the `outside_shift` flag from their views. Two queries.

    Only people the chain records a change of are judged: a shift entered before changes were recorded, and
    never changed since in the admin, is known to the table alone (a removal or change of such a shift
    the chain cannot replay is skipped; a row of it still shows as a difference once the person has a
    recorded change)."""
    key = record_key()
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for record in AuditRecord.objects.filter(action=SHIFT_CHANGED_ACTION, context_type="user").order_by(
        "seq"
    ):
        if record.outcome != "done" or record.actor_id is None or not record_mac_holds(record, key):
            continue
        shifts = expected[record.context_id]
        text = record.justification
        before, arrow, after = text.partition(" -> ")
        removed, added = (before, after) if arrow else ("", "")
        if text.startswith("added "):
            added = text.removeprefix("added ")
        elif text.startswith("removed "):
            removed = text.removeprefix("removed ")
        if removed and shifts[removed] > 0:
            shifts[removed] -= 1
        if added:
            shifts[added] += 1
    if not expected:
        return []
    stored: dict[str, Counter[str]] = defaultdict(Counter)
    rows = StaffShift.objects.filter(user__public_id__in=[person for person in expected if is_uuid(person)])
    for public_id, weekday, start, end in rows.values_list(
        "user__public_id", "weekday", "start_time", "end_time"
    ):
        stored[str(public_id)][shift_text(weekday=weekday, start=start, end=end)] += 1
    return sorted(person for person, shifts in expected.items() if +shifts != +stored[person])


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _LOOKUP_CHUNK):
        yield ordered[start : start + _LOOKUP_CHUNK]


def _shifts_by_actor(actor_ids: set[str]) -> dict[str, list[ShiftWindow]]:
    """Shifts keyed by the public id that audit records name people by."""
    found: dict[str, list[ShiftWindow]] = defaultdict(list)
    for chunk in _chunks(actor_ids):
        valid = [value for value in chunk if is_uuid(value)]
        rows = StaffShift.objects.filter(user__public_id__in=valid).values_list(
            "user__public_id", "weekday", "start_time", "end_time"
        )
        for public_id, weekday, start, end in rows:
            found[str(public_id)].append(ShiftWindow(weekday, start, end))
    return dict(found)


def _shipped_at(order_refs: set[str]) -> dict[str, datetime]:
    from lab.orders.models import Order

    found: dict[str, datetime] = {}
    for chunk in _chunks(order_refs):
        rows = Order.objects.filter(ref__in=chunk, shipped_at__isnull=False).values_list("ref", "shipped_at")
        found.update({ref: shipped_at for ref, shipped_at in rows if shipped_at is not None})
    return found
