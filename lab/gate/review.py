"""Auditors' work on the log: the review queue (a daily sample of views plus every flagged attempt, every
maintenance and clarification view among them, each signed off with a note) and the chain records of auditors'
own reads, exports and sign-offs.

The sample is drawn with the operating system's random source, so nobody can predict which of their views
will be reviewed, and the chain names it: each run's `audit.review.queued` record carries the seqs it drew,
and a day's sample so far is what those records name, not the 'sample' rows of the items' table, which the
app's database role may insert into (twenty rows inserted during the day filled its sample, and nothing was
drawn at random). A 'sample' item no record names is shown as not in the log (review_samples_not_in_log).
Queuing a day twice adds nothing twice: the sample tops up to its size and flagged items are unique per
(record, flag). Each queued day is recorded in the chain (`audit.review.queued`), and the nightly job queues
every finished day of the last CATCH_UP_DAYS not recorded yet, so a lost run is made up the next
night instead of losing the day's sample and flags.

A review day runs midnight to midnight in the lab's time zone (LAB_TIME_ZONE), and whether it is over is read
on the database's clock, which every host shares (lab.lib.clock): on a worker's own clock, two hours ahead,
the 00:30 run came at 22:30, took the day still going on for finished and drew its sample from its views so
far, and since a sample only tops up to its size the views of its last hours could never be drawn.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from lab.accounts.models import User
from lab.accounts.roles import AUDITOR_ROLES, has_role, primary_role
from lab.audit.configured import record_key
from lab.audit.models import AuditRecord, Purpose, ReviewItem
from lab.audit.records import Entry, RequestMeta, audit_append, record_mac_holds
from lab.gate.anomalies import ALWAYS_REVIEWED, NON_EMPLOYEE_ROLES, VIEW_ACTIONS, anomalies_find, lab_zone
from lab.gate.errors import GateError
from lab.gate.refusals import AuditUnavailable
from lab.lib.clock import database_now
from lab.lib.errors import Conflict, DomainError, NotFound, PermissionDenied

logger = logging.getLogger(__name__)

SAMPLE_REASON = "sample"
MIN_NOTE = 3
# A note is kept as long as the chain's record of the sign-off keeps it (its justification), so the two agree.
MAX_NOTE = 500
SIGN_OFF_ACTION = "audit.review.sign_off"
QUEUED_ACTION = "audit.review.queued"
# A queued record names the seqs its run drew, after this, in its justification (which holds this many).
SEQS_FIELD = "seqs="
MAX_JUSTIFICATION = 500
REVIEW_DAY = "review_day"
# Task messages are nudges: a nightly run can be lost (PostgreSQL restarting at 00:30, a killed worker, a
# lost message, the soft time limit). The next run queues every finished day of this many that is not recorded
# as queued yet; the overdue-sweep alarm shows a job that stopped succeeding after 2 days, long before a day
# falls out of the window. An older day is queued by hand from the console (review_build).
CATCH_UP_DAYS = 7


@dataclass(frozen=True)
class QueueRun:
    day: date
    sampled: int
    flagged: int


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Midnight to midnight of a day in the lab's time zone, as aware datetimes (23 or 25 hours apart on the
    days the clocks change; compare them, or subtract them in UTC: Python subtracts two times of one zone on
    the wall clock)."""
    zone = lab_zone()
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)


def lab_today() -> date:
    """Today in the lab's time zone on the database's clock: not the host's, which may run ahead or behind."""
    return database_now().astimezone(lab_zone()).date()


def review_sample_daily(*, day: date | None = None, sample_size: int | None = None) -> QueueRun:
    """Queue a random sample of a finished day's granted employee views and every flagged attempt of the day.

    Without `day` (the nightly job): every finished day of the last CATCH_UP_DAYS in the lab's time zone that
    is not recorded as queued yet, oldest first; the run of yesterday is returned (nothing queued, when it
    was queued already). Which days are finished is read on the database's clock (lab_today). With nothing
    missing this is two queries: that clock, and the days recorded as queued.
    """
    if day is not None:
        return _day_queue(day=day, sample_size=sample_size)
    today = lab_today()
    yesterday = today - timedelta(days=1)
    runs = {
        missing: _day_queue(day=missing, sample_size=sample_size)
        for missing in review_days_missing(today=today)
    }
    return runs.get(yesterday, QueueRun(day=yesterday, sampled=0, flagged=0))


def review_days_missing(*, today: date | None = None) -> list[date]:
    """The finished days of the last CATCH_UP_DAYS before `today` (default lab_today) with no
    `audit.review.queued` record written after the day was over (one written while it was going on queued its
    morning only), oldest first."""
    last = (today or lab_today()) - timedelta(days=1)
    window = [last - timedelta(days=back) for back in range(CATCH_UP_DAYS - 1, -1, -1)]
    by_name = {day.isoformat(): day for day in window}
    recorded = AuditRecord.objects.filter(
        action=QUEUED_ACTION,
        occurred_at__gte=day_bounds(window[0])[1],  # a finished day's record is written after it ends
        context_type=REVIEW_DAY,
        context_id__in=list(by_name),
    )
    # Only a record the lab wrote counts, as in review_samples_logged: a record inserted in the database
    # alone (no valid mac, or in a person's name) skipped its day for good, and the day was never queued.
    key = record_key()
    queued = {
        by_name[record.context_id]
        for record in recorded
        if record.occurred_at >= day_bounds(by_name[record.context_id])[1]
        and _is_the_lab_s_queued(record, key)
    }
    return [day for day in window if day not in queued]


def _is_the_lab_s_queued(record: AuditRecord, key: bytes) -> bool:
    return record.outcome == "done" and record.actor_id is None and record_mac_holds(record, key)


# A day is queued by one run at a time (PostgreSQL: a transaction-scoped advisory lock per day, in this class
# of keys): two runs at once (two nightly messages after a worker was down two nights, or an auditor's build
# beside the nightly job) each read the day's sample as empty and each drew a full one, and review items are
# never deleted.
_DAY_LOCK_CLASS = 0x52455631  # "REV1"


def _day_queue(*, day: date, sample_size: int | None) -> QueueRun:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_DAY_LOCK_CLASS, day.toordinal()])
        return _day_queue_locked(day=day, sample_size=sample_size)


def _day_queue_locked(*, day: date, sample_size: int | None) -> QueueRun:
    size = sample_size if sample_size is not None else int(getattr(settings, "AUDIT_REVIEW_SAMPLE_SIZE", 20))
    since, until = day_bounds(day)
    views = list(
        AuditRecord.objects.filter(
            action__in=VIEW_ACTIONS,
            outcome="granted",
            occurred_at__gte=since,
            occurred_at__lt=until,
            actor_id__isnull=False,
        )
        .exclude(actor_role__in=NON_EMPLOYEE_ROLES)
        # Maintenance and clarification views are all queued as flagged (by the gate, and by the rules here),
        # so the random sample is drawn from the others.
        .exclude(purpose__in=ALWAYS_REVIEWED)
        .values_list("seq", flat=True)
    )
    # The day's sample so far is what the chain's records of its runs name, never the items' table: the app's
    # role may insert into the table, and a 'sample' item inserted there filled the day's sample, so that
    # nothing was drawn at random and the views of whoever inserted them could never be reviewed.
    already = review_samples_logged(days=[day]).get(day, set())
    flagged = {(anomaly.seq, anomaly.flag.value) for anomaly in anomalies_find(since=since, until=until)}
    # The sample is the random check of what no rule flagged: a flagged view is queued for its flag anyway, so
    # drawing it too spent a sample's place on it (busy orders flag most of their views as repeated).
    flagged_seqs = {seq for seq, _ in flagged}
    candidates = [seq for seq in views if seq not in already and seq not in flagged_seqs]
    wanted = min(max(0, size - len(already)), len(candidates))
    chosen = secrets.SystemRandom().sample(candidates, wanted)
    existing = set(
        ReviewItem.objects.filter(record_id__in={seq for seq, _ in flagged}).values_list(
            "record_id", "reason"
        )
    )
    new_flags = sorted(flagged - existing)
    with transaction.atomic():
        _items_insert([(seq, SAMPLE_REASON) for seq in sorted(chosen)] + new_flags)
        # With the items, or not at all: what the nightly job reads to know the day is done, and the only
        # account of which views the run drew and which the rules flagged (what does not fit one record's
        # justification is named over several records): an item it names that the table lacks is shown on
        # the console (review_queued_items_missing).
        for justification in _queued_justifications(
            sampled=sorted(chosen), flagged=len(new_flags), flags=sorted(flagged)
        ):
            audit_append(
                Entry(
                    action=QUEUED_ACTION,
                    actor_id=None,
                    actor_role="system",
                    outcome="done",
                    rule="review_queue",
                    purpose=Purpose.AUDIT,
                    justification=justification,
                    context_type=REVIEW_DAY,
                    context_id=day.isoformat(),
                )
            )
    logger.info("review queue day=%s sampled=%s flagged=%s", day, len(chosen), len(new_flags))
    return QueueRun(day=day, sampled=len(chosen), flagged=len(new_flags))


class ReviewItemsMissing(RuntimeError):
    """Items a run inserted are not in the table after the insert: the run is rolled back, queued record and
    all, and the day stays missing (the next night tries again; the overdue-sweep alarm shows it failing)."""


def _items_insert(wanted: list[tuple[int, str]]) -> None:
    """Insert the (record, reason) items, skipping only those that exist (a concurrent run for the same day),
    then check that every one is there: before, a conflict of any kind was skipped without a word (rows the
    app's role inserted at the next ids of the sequence; the database now draws every id itself, migration
    audit/0012, but a superuser can turn that off)."""
    if not wanted:
        return
    table = ReviewItem._meta.db_table
    rows = ", ".join(["(%s, %s, %s)"] * len(wanted))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (record_id, reason, note) VALUES {rows}"  # noqa: S608
            " ON CONFLICT (record_id, reason) DO NOTHING",
            [value for seq, reason in wanted for value in (seq, reason, "")],
        )
    present = set(
        ReviewItem.objects.filter(record_id__in={seq for seq, _ in wanted}).values_list("record_id", "reason")
    )
    missing = sorted(set(wanted) - present)
    if missing:
        logger.error("review items missing after insert count=%s first=%s", len(missing), missing[0])
        raise ReviewItemsMissing(f"{len(missing)} review items are not in the table after their insert")


# A queued record names the day's flagged views after this, per flag: `flag.repeated_views=12,13`.
FLAG_FIELD = "flag."


def _queued_justifications(
    *, sampled: list[int], flagged: int, flags: Iterable[tuple[int, str]] = ()
) -> list[str]:
    """The justifications of a run's `audit.review.queued` records:
    `sampled=N flagged=M flag.<reason>=d,e seqs=a,b,c`, the views the day's rules flagged (every one, not
    only those new in this run) and the seqs drawn; what does not fit one record goes on in records of their
    own, each with its `seqs=` field (a record without one is read as from before records named seqs)."""
    head = f"sampled={len(sampled)} flagged={flagged} "
    fields: list[tuple[str, int]] = [(f"{FLAG_FIELD}{reason}=", seq) for seq, reason in sorted(flags)]
    fields += [(SEQS_FIELD, seq) for seq in sampled]
    texts: list[str] = []
    current: dict[str, list[str]] = {}

    def text(names: dict[str, list[str]]) -> str:
        parts = [field + ",".join(values) for field, values in names.items() if field != SEQS_FIELD]
        parts.append(SEQS_FIELD + ",".join(names.get(SEQS_FIELD, [])))
        return (head if not texts else "") + " ".join(parts)

    for field, seq in fields:
        grown = {**current, field: [*current.get(field, []), str(seq)]}
        if current and len(text(grown)) > MAX_JUSTIFICATION:
            texts.append(text(current))
            grown = {field: [str(seq)]}
        current = grown
    texts.append(text(current))
    return texts


def _items_named(justification: str) -> set[tuple[int, str]]:
    """The (seq, reason) items a queued record names: its samples and its flagged views."""
    named: set[tuple[int, str]] = set()
    for part in justification.split(" "):
        field, _, names = part.partition("=")
        if part.startswith(SEQS_FIELD):
            reason = SAMPLE_REASON
        elif part.startswith(FLAG_FIELD) and field != FLAG_FIELD:
            reason = field.removeprefix(FLAG_FIELD)
        else:
            continue
        named.update((int(name), reason) for name in names.split(",") if name.isascii() and name.isdigit())
    return named


# How far back the console checks the queued records' items against the table: a day's worth of records and
# items is a few dozen rows, so a quarter is a few thousand, read on every review page.
MISSING_CHECK_DAYS = 92


def review_queued_items_missing(*, days: int = MISSING_CHECK_DAYS) -> list[tuple[date, int, str]]:
    """(day, seq, reason) of every item a valid `audit.review.queued` record written in the last `days`
    names, a sample or a flagged view, that the items' table does not hold: deleted, or never inserted, by
    someone the database did not stop (a superuser with triggers off). Two queries."""
    since = database_now() - timedelta(days=days)
    key = record_key()
    named: dict[tuple[int, str], date] = {}
    for record in AuditRecord.objects.filter(
        action=QUEUED_ACTION, context_type=REVIEW_DAY, occurred_at__gte=since
    ).order_by("seq"):
        if _is_the_lab_s_queued(record, key):
            day = date.fromisoformat(record.context_id)
            for item in _items_named(record.justification):
                named.setdefault(item, day)
    if not named:
        return []
    present = set(
        ReviewItem.objects.filter(record_id__in={seq for seq, _ in named}).values_list("record_id", "reason")
    )
    return sorted((day, seq, reason) for (seq, reason), day in named.items() if (seq, reason) not in present)


def _seqs_named(justification: str) -> set[int] | None:
    """The seqs a queued record names; None for a record from before queued records named them."""
    for part in justification.split(" "):
        if part.startswith(SEQS_FIELD):
            names = part.removeprefix(SEQS_FIELD)
            return {int(name) for name in names.split(",") if name.isascii() and name.isdigit()}
    return None


# How far after an old-format queued record (one naming no seqs) a 'sample' item of its day may be dated and
# still be vouched for by it: those items were dated by the worker's clock, the record by the database's, and
# a worker two hours ahead dated every item of its run two hours after the run's record. Less than the day
# between two nightly runs, so a row inserted the next day is not vouched for.
LEGACY_CLOCK_SLACK = timedelta(hours=12)


def review_samples_logged(*, days: Iterable[date]) -> dict[date, set[int]]:
    """The seqs each day's sample holds by the chain: those the day's `audit.review.queued` records under a
    valid mac name (every run of the day: a day queued partially, then topped up, counts both). At most two
    queries: the records, and the items of days with records from before the records named their seqs.

    Such an old record (no `seqs=`) vouches for the 'sample' items of its day as the items' table holds
    them, as far as the chain can tell which ones its run made (_legacy_vouches)."""
    wanted = set(days)
    if not wanted:
        return {}
    # The views of a lab day fall in its UTC day or the one before or after (the old records of UTC days).
    names = {(day + timedelta(days=shift)).isoformat() for day in wanted for shift in (-1, 0, 1)}
    key = record_key()
    logged: dict[date, set[int]] = {}
    legacy: dict[date, datetime] = {}
    first_named: dict[date, datetime] = {}
    for record in AuditRecord.objects.filter(
        action=QUEUED_ACTION, context_type=REVIEW_DAY, context_id__in=list(names)
    ):
        day = date.fromisoformat(record.context_id)
        if not _is_the_lab_s_queued(record, key):
            continue
        named = _seqs_named(record.justification)
        if named is None:
            legacy[day] = max(legacy.get(day, record.occurred_at), record.occurred_at)
        else:
            if day in wanted:
                logged.setdefault(day, set()).update(named)
            first_named[day] = min(first_named.get(day, record.occurred_at), record.occurred_at)
    with_legacy = [day for day in wanted if any(day + timedelta(days=s) in legacy for s in (-1, 0, 1))]
    if not with_legacy:
        return logged
    in_days = Q()
    for day in with_legacy:
        since, until = day_bounds(day)
        in_days |= Q(record__occurred_at__gte=since, record__occurred_at__lt=until)
    zone = lab_zone()
    items = ReviewItem.objects.filter(in_days, reason=SAMPLE_REASON).values_list(
        "record_id", "record__occurred_at", "created_at"
    )
    for seq, viewed_at, created_at in items:
        day = viewed_at.astimezone(zone).date()
        if _legacy_vouches(
            viewed_at=viewed_at,
            created_at=created_at,
            legacy=legacy,
            named_since=first_named.get(day),
        ):
            logged.setdefault(day, set()).add(seq)
    return logged


def _legacy_vouches(
    *, viewed_at: datetime, created_at: datetime, legacy: dict[date, datetime], named_since: datetime | None
) -> bool:
    """Whether an old-format queued record vouches for a 'sample' item: one of the record of the view's day
    as a UTC day (review days were UTC days before LAB_TIME_ZONE: a Chicago view at 03:00 UTC was drawn by
    the run for its UTC day, a day after the record of its lab day was written) or of its lab day, the latest
    of that day's old records, written no more than LEGACY_CLOCK_SLACK before the item was dated (the run's
    worker dated its items by its own clock, ahead of the database's by as much as two hours). Never an
    item dated at or after the first record naming seqs of its lab day: since then the day's runs name every
    item they draw, and a row the app's role inserted afterwards is not in the log, whatever old record its
    day has. What the chain cannot tell apart is a row inserted before, or soon after, an old record of its
    day: the old records named nothing."""
    if named_since is not None and created_at >= named_since:
        return False
    days = {viewed_at.astimezone(UTC).date(), viewed_at.astimezone(lab_zone()).date()}
    return any(day in legacy and created_at <= legacy[day] + LEGACY_CLOCK_SLACK for day in days)


def review_samples_not_in_log(*, items: Iterable[ReviewItem]) -> frozenset[int]:
    """The ids of the 'sample' items no valid `audit.review.queued` record names (review_samples_logged): an
    item inserted in the table alone, which the console shows as not in the log, never as drawn at random.
    The items come with their records (select_related)."""
    samples = [item for item in items if item.reason == SAMPLE_REASON]
    if not samples:
        return frozenset()
    zone = lab_zone()
    day_of = {item.pk: item.record.occurred_at.astimezone(zone).date() for item in samples}
    logged = review_samples_logged(days=set(day_of.values()))
    return frozenset(item.pk for item in samples if item.record_id not in logged.get(day_of[item.pk], set()))


def review_build(*, day: date, auditor: User, meta: RequestMeta) -> QueueRun:
    """An auditor queues a day's review now (the nightly task does the last week's), for a day that is over.

    A day still going on is refused: its random sample would be drawn from the views made so far, and the
    nightly run, which tops the sample up only to its size, could then draw none of the later ones (an
    auditor could fix the day's sample at ten in the morning). The build is recorded in the chain."""
    if not has_role(auditor, *AUDITOR_ROLES):
        raise PermissionDenied(GateError.NOT_AN_AUDITOR, "Only auditors queue reviews.")
    if day_bounds(day)[1] > database_now():
        raise Conflict(
            GateError.REVIEW_DAY_NOT_OVER, f"{day} is not over yet: its review is queued once it is."
        )
    with transaction.atomic():
        audit_append(
            Entry(
                action="audit.review.build",
                actor_id=str(auditor.public_id),
                actor_role=primary_role(auditor),
                outcome="done",
                rule="auditor_review_build",
                purpose=Purpose.AUDIT,
                context_type="review_day",
                context_id=day.isoformat(),
                meta=meta,
            )
        )
    return review_sample_daily(day=day)


def review_item_digest(*, item_id: int, record_id: int, reason: str) -> str:
    """What a sign-off's record says it signed, as its content digest (a field its mac covers): the item, the
    record reviewed and the reason. Before, the record named the item's id alone, and a superuser could move
    a signed item onto another record and reason (a maintenance view) and it showed signed off there."""
    return hashlib.sha256(f"review_item {item_id} record {record_id} reason {reason}".encode()).hexdigest()


def review_sign_off(*, item_id: int, auditor: User, note: str, meta: RequestMeta) -> ReviewItem:
    """Sign one review item off, once, with a note; the sign-off is recorded in the chain too."""
    if not has_role(auditor, *AUDITOR_ROLES):
        raise PermissionDenied(GateError.NOT_AN_AUDITOR, "Only auditors sign review items off.")
    text = note.strip()
    if len(text) < MIN_NOTE:
        raise DomainError(GateError.NOTE_REQUIRED, "Write a note saying what you checked.")
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().select_related("record").filter(pk=item_id).first()
        if item is None:
            raise NotFound(GateError.REVIEW_ITEM_NOT_FOUND, "No such review item.")
        if item.reviewed_at is not None:
            raise Conflict(GateError.ALREADY_SIGNED_OFF, "This item has already been signed off.")
        if item.record.actor_id == str(auditor.public_id):
            raise PermissionDenied(GateError.OWN_RECORD, "Nobody signs off a review of their own access.")
        item.reviewed_by = auditor
        item.reviewed_at = timezone.now()
        item.note = text[:MAX_NOTE]
        item.save(update_fields=["reviewed_by", "reviewed_at", "note"])
        audit_append(
            Entry(
                action=SIGN_OFF_ACTION,
                actor_id=str(auditor.public_id),
                actor_role=primary_role(auditor),
                outcome="done",
                rule="auditor_sign_off",
                purpose=Purpose.AUDIT,
                justification=item.note,
                context_type="review_item",
                context_id=str(item.pk),
                content_sha256=review_item_digest(
                    item_id=item.pk, record_id=item.record_id, reason=item.reason
                ),
                meta=meta,
            )
        )
    return item


def auditor_read_record(
    *,
    user: User,
    meta: RequestMeta,
    context_type: str,
    context_id: str,
    query: str,
    action: str = "audit.read",
) -> AuditRecord:
    """Record an auditor's read (or export) of the log before anything is shown: no record, no read."""
    try:
        return audit_append(
            Entry(
                action=action,
                actor_id=str(user.public_id),
                actor_role=primary_role(user),
                outcome="done",
                rule="auditor_export" if action == "audit.export" else "auditor_read",
                purpose=Purpose.AUDIT,
                justification=query,
                context_type=context_type,
                context_id=context_id,
                meta=meta,
            )
        )
    except DatabaseError as error:
        logger.error("audit write failed; log read refused actor=%s", user.public_id)
        raise AuditUnavailable(
            GateError.AUDIT_UNAVAILABLE, "The read could not be recorded, so it is refused."
        ) from error
