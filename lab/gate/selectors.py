"""Reads of the audit log for auditors: filtered record pages, per-employee summaries, the review queue.
Every query is bounded by an indexed column or a time range; pages are keyset pages by seq, never counted.

Records are listed newest first. A page holds at most `limit` records; `older` / `newer` are the seq
cursors of the neighbouring pages (None at either end), found by fetching one record more than shown.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Count, Max, Min, Q, QuerySet

from lab.accounts.models import User
from lab.accounts.roles import STAFF_ROLES
from lab.accounts.seal import email_as_stored
from lab.audit.canonical import EXPORT_FIELDS, utc_timestamp
from lab.audit.configured import record_key
from lab.audit.models import AuditRecord, ReviewItem
from lab.audit.records import record_mac_holds
from lab.gate.anomalies import ATTEMPT_ACTIONS, NON_EMPLOYEE_ROLES, VIEW_ACTIONS, anomalies_find
from lab.gate.review import MAX_NOTE, SIGN_OFF_ACTION, review_item_digest
from lab.lib.ids import is_uuid

MAX_PAGE = 200
# Pages follow time, then seq: the order the (actor_id | asset_id | order_ref | action, occurred_at) indexes
# and the occurred_at index already hold, so a filtered page is a short backward index scan. Seq is assigned
# under the chain lock right before the time is taken, so this is the seq order in practice.
NEWEST_FIRST = ("-occurred_at", "-seq")
NEWEST_LAST = ("occurred_at", "seq")
# Summaries and anomaly scans read every attempt in their range, so the range is bounded.
MAX_SUMMARY_RANGE = timedelta(days=92)
MAX_ANOMALY_RANGE = timedelta(days=31)
FULL_RESOLUTION_ACTIONS = ("image.view.full", "image.download")


@dataclass(frozen=True)
class RecordFilter:
    """What an auditor narrows the log to; None means "any". Times are a half-open range [since, until)."""

    actor_id: str | None = None
    order_ref: str | None = None
    asset_id: str | None = None
    purpose: str | None = None
    outcome: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_query(self) -> str:
        """The filter as a query string: what an auditor's own read record says they looked at."""
        values = {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in self.__dict__.items()
            if value is not None
        }
        return urlencode(values)


@dataclass(frozen=True)
class RecordPage:
    records: list[AuditRecord]
    older: int | None
    newer: int | None


def records_filtered(*, filters: RecordFilter) -> QuerySet[AuditRecord]:
    rows = AuditRecord.objects.all()
    exact = {
        "actor_id": filters.actor_id,
        "order_ref": filters.order_ref,
        "asset_id": filters.asset_id,
        "purpose": filters.purpose,
        "outcome": filters.outcome,
        "action": filters.action,
    }
    rows = rows.filter(**{name: value for name, value in exact.items() if value is not None})
    if filters.since is not None:
        rows = rows.filter(occurred_at__gte=filters.since)
    if filters.until is not None:
        rows = rows.filter(occurred_at__lt=filters.until)
    return rows


def records_page(
    *, filters: RecordFilter, before: int | None = None, after: int | None = None, limit: int = 50
) -> RecordPage:
    """One page, newest first: the records listed after the record `before`, or the page above `after`."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = records_filtered(filters=filters)
    if after is not None:
        # The page just newer than `after`: the `limit` oldest records above it, shown newest first.
        found = list(_beyond(rows, seq=after, is_newer=True).order_by(*NEWEST_LAST)[: limit + 1])
        has_newer = len(found) > limit
        page = list(reversed(found[:limit]))
        older = page[-1].seq if page else None
        return RecordPage(page, older, page[0].seq if page and has_newer else None)
    if before is not None:
        rows = _beyond(rows, seq=before, is_newer=False)
    found = list(rows.order_by(*NEWEST_FIRST)[: limit + 1])
    page = found[:limit]
    older = page[-1].seq if len(found) > limit else None
    newer = page[0].seq if page and before is not None else None
    return RecordPage(page, older, newer)


def _beyond(rows: QuerySet[AuditRecord], *, seq: int, is_newer: bool) -> QuerySet[AuditRecord]:
    """Rows after (older) or before (newer) the cursor record in (occurred_at, seq) order.

    A range on occurred_at lets every (column, occurred_at) index serve the page; a cursor seq that names
    no record falls back to comparing seqs.
    """
    moment = AuditRecord.objects.filter(seq=seq).values_list("occurred_at", flat=True).first()
    if moment is None:
        return rows.filter(seq__gt=seq) if is_newer else rows.filter(seq__lt=seq)
    if is_newer:
        return rows.filter(occurred_at__gte=moment).exclude(occurred_at=moment, seq__lte=seq)
    return rows.filter(occurred_at__lte=moment).exclude(occurred_at=moment, seq__gte=seq)


def record_get(*, seq: int) -> AuditRecord | None:
    return AuditRecord.objects.filter(seq=seq).first()


def actor_id_for(*, employee: str) -> str:
    """The public id the log names a person by: a staff e-mail address is looked up, anything else is kept."""
    text = employee.strip()
    if "@" not in text:
        return text
    email = email_as_stored(
        text
    )  # as the account stores it: anna@bücher.example is anna@xn--bcher-kva.example
    public_id = _staff().filter(email=email).values_list("public_id", flat=True).first()
    # An unknown address must match nothing rather than widen the filter to everyone.
    return str(public_id) if public_id is not None else email


def employee_emails(*, actor_ids: Iterable[str | None]) -> dict[str, str]:
    """Work e-mail addresses for the public ids on a page. Staff only: a customer's address is personal
    data, and auditors see metadata only, so owner records keep showing just the public id."""
    wanted = sorted({value for value in actor_ids if value and is_uuid(value)})
    rows = _staff().filter(public_id__in=wanted).values_list("public_id", "email").distinct()
    return {str(public_id): email for public_id, email in rows}


@dataclass
class EmployeeSummary:
    actor_id: str
    email: str = ""
    roles: list[str] = field(default_factory=list)
    views: int = 0
    full_resolution_views: int = 0
    denied: int = 0
    distinct_orders: int = 0
    distinct_assets: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    purposes: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] | None = None  # None: not counted (range longer than an anomaly scan may be)

    def as_dict(self) -> dict[str, object]:
        return {
            "actor_id": self.actor_id,
            "email": self.email,
            "roles": self.roles,
            "views": self.views,
            "full_resolution_views": self.full_resolution_views,
            "denied": self.denied,
            "distinct_orders": self.distinct_orders,
            "distinct_assets": self.distinct_assets,
            "first_at": self.first_at.isoformat() if self.first_at else None,
            "last_at": self.last_at.isoformat() if self.last_at else None,
            "purposes": self.purposes,
            "flags": self.flags,
        }


def employee_summaries(
    *, since: datetime, until: datetime, actor_id: str | None = None, with_flags: bool = True
) -> list[EmployeeSummary]:
    """Per person: photo views and refusals in [since, until), by purpose, with anomaly counts.

    Flags are counted only for ranges an anomaly scan may cover (MAX_ANOMALY_RANGE); longer ranges leave
    them None, since the scan reads every attempt of the range (about 0.4 s a day at 13,000 views a day).
    """
    attempts = AuditRecord.objects.filter(
        action__in=ATTEMPT_ACTIONS, occurred_at__gte=since, occurred_at__lt=until, actor_id__isnull=False
    ).exclude(actor_role__in=NON_EMPLOYEE_ROLES)
    if actor_id is not None:
        attempts = attempts.filter(actor_id=actor_id)
    granted_view = Q(action__in=VIEW_ACTIONS, outcome="granted")
    totals = attempts.values("actor_id").annotate(
        views=Count("seq", filter=granted_view),
        full_resolution_views=Count("seq", filter=Q(action__in=FULL_RESOLUTION_ACTIONS, outcome="granted")),
        denied=Count("seq", filter=Q(outcome="denied")),
        distinct_orders=Count("order_ref", distinct=True),
        distinct_assets=Count("asset_id", distinct=True),
        first_at=Min("occurred_at"),
        last_at=Max("occurred_at"),
    )
    # The rows' actor_id is typed nullable, but `attempts` excludes null actors: the assert and str() below
    # only say so to mypy.
    summaries: dict[str, EmployeeSummary] = {}
    for row in totals.order_by():
        person = row["actor_id"]
        assert person is not None
        summaries[person] = EmployeeSummary(
            actor_id=person,
            views=row["views"],
            full_resolution_views=row["full_resolution_views"],
            denied=row["denied"],
            distinct_orders=row["distinct_orders"],
            distinct_assets=row["distinct_assets"],
            first_at=row["first_at"],
            last_at=row["last_at"],
        )
    for role_row in attempts.values("actor_id", "actor_role").annotate(n=Count("seq")).order_by():
        summaries[str(role_row["actor_id"])].roles.append(role_row["actor_role"])
    for purpose_row in attempts.values("actor_id", "purpose").annotate(n=Count("seq")).order_by():
        summaries[str(purpose_row["actor_id"])].purposes[purpose_row["purpose"]] = purpose_row["n"]
    if with_flags and until - since <= MAX_ANOMALY_RANGE:
        flags: dict[str, Counter[str]] = defaultdict(Counter)
        for anomaly in anomalies_find(since=since, until=until, actor_id=actor_id):
            flags[anomaly.actor_id][anomaly.flag.value] += 1
        for person, summary in summaries.items():
            summary.flags = dict(sorted(flags[person].items()))
    emails = employee_emails(actor_ids=summaries)
    for person, summary in summaries.items():
        summary.email = emails.get(person, "")
        summary.roles.sort()
        summary.purposes = dict(sorted(summary.purposes.items()))
    return sorted(summaries.values(), key=lambda summary: (-summary.views, summary.actor_id))


@dataclass(frozen=True)
class ReviewPage:
    items: list[ReviewItem]
    next_after: int | None
    # The items marked signed off whose sign-off the chain does not hold (review_sign_offs_not_in_log).
    not_in_log: frozenset[int] = frozenset()
    # The items signed off before sign-offs' records named the record and reason they signed: the chain
    # holds the sign-off, but cannot say the item was not moved since (review_sign_offs_checked).
    names_no_record: frozenset[int] = frozenset()


def review_items_page(*, is_open: bool, after_id: int | None = None, limit: int = 50) -> ReviewPage:
    """Review items oldest first (open ones: the queue to work through), keyset by id."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = ReviewItem.objects.select_related("record", "reviewed_by").filter(reviewed_at__isnull=is_open)
    if after_id is not None:
        rows = rows.filter(pk__gt=after_id)
    found = list(rows.order_by("pk")[: limit + 1])
    items = found[:limit]
    checked = (frozenset(), frozenset()) if is_open else review_sign_offs_checked(items=items)
    not_in_log, names_no_record = checked
    return ReviewPage(items, items[-1].pk if len(found) > limit else None, not_in_log, names_no_record)


def review_sign_offs_not_in_log(*, items: Iterable[ReviewItem]) -> frozenset[int]:
    """The ids of the items marked signed off whose sign-off is not in the chain: no `audit.review.sign_off`
    record names the item, by its reviewer, with its note, the item's record and reason (its content digest),
    under a valid mac. One query for all the items.

    The items' table takes a sign-off from the app's role (that is how the app signs off), and anything from
    a superuser; the chain's record is what an insider without the record key cannot forge.
    """
    return review_sign_offs_checked(items=items)[0]


def review_sign_offs_checked(*, items: Iterable[ReviewItem]) -> tuple[frozenset[int], frozenset[int]]:
    """(not in the log, held by a record from before sign-offs named their record). One query.

    A sign-off's record names the record and reason signed (review_item_digest) since 2026-12-07: a
    superuser who moved a signed item onto another record (a maintenance view) made that view look signed
    off. A record from before names the item's id alone: it is still taken as the item's sign-off (the
    chain cannot tell whether the item was moved since, and showing every old sign-off as not in the log
    would bury the forged ones), and the console marks it "sign-off names no record". A sign-off is written
    after the view it signs, so a record with a seq not above the item's record's signs no view of it: an old
    sign-off moved onto a later view (a maintenance view) is not in the log."""
    signed = {item.pk: item for item in items if item.reviewed_at is not None}
    if not signed:
        return frozenset(), frozenset()
    records = AuditRecord.objects.filter(
        action=SIGN_OFF_ACTION, context_type="review_item", context_id__in=[str(pk) for pk in signed]
    )
    key = record_key()
    held: set[int] = set()
    legacy: set[int] = set()
    for record in records:
        item = signed[int(record.context_id)]
        if _is_sign_off_of(record, item) and record_mac_holds(record, key):
            (legacy if record.content_sha256 == LEGACY_SIGN_OFF else held).add(item.pk)
    return frozenset(signed.keys() - held - legacy), frozenset(legacy - held)


# The content digest of a sign-off's record from before they named the record and reason signed.
LEGACY_SIGN_OFF = ""


def _is_sign_off_of(record: AuditRecord, item: ReviewItem) -> bool:
    reviewer = item.reviewed_by
    # A note signed off before notes were kept at the chain's length is longer than the record's
    # justification; the record holds its first MAX_NOTE characters.
    return (
        record.outcome == "done"
        and record.seq > item.record_id
        and reviewer is not None
        and record.actor_id == str(reviewer.public_id)
        and record.justification == item.note[:MAX_NOTE]
        and record.content_sha256
        in (
            LEGACY_SIGN_OFF,
            review_item_digest(item_id=item.pk, record_id=item.record_id, reason=item.reason),
        )
    )


def review_item_get(*, item_id: int) -> ReviewItem | None:
    return ReviewItem.objects.select_related("record", "reviewed_by").filter(pk=item_id).first()


def _staff() -> QuerySet[User]:
    return User.objects.filter(groups__name__in=[str(role) for role in STAFF_ROLES])


CSV_COLUMNS = EXPORT_FIELDS
# A spreadsheet runs a cell that starts with one of these as a formula; employees type justifications.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def records_csv_rows(*, filters: RecordFilter) -> Iterator[list[str]]:
    """The header, then every matching record oldest first (as pages order them), read in chunks.

    A text cell that a spreadsheet would run as a formula gets a leading apostrophe. The CSV is for reading;
    the JSONL export is the verifiable copy.
    """
    yield list(CSV_COLUMNS)
    rows = records_filtered(filters=filters).order_by(*NEWEST_LAST).values_list(*CSV_COLUMNS)
    moment = CSV_COLUMNS.index("occurred_at")
    for row in rows.iterator(chunk_size=5000):
        cells = [_csv_cell(value) for value in row]
        cells[moment] = utc_timestamp(row[moment])  # the chain's own spelling of the time
        yield cells


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
