"""The auditors' review items against the database's insiders (README, "Threat model of the audit log").

The database refuses deleting a review item, emptying their table and every change to one but its sign-off
(reviewer, time and note set once, nothing else), to the app's role as to anyone (migration audit/0010);
and the console shows a sign-off as signed only when the chain holds it: a sign-off written in the table
alone, by a superuser with the triggers off or by the app's role through the one change it may make, shows
as "sign-off not in the log". Before, the table was a plain one: anyone with the app's database role could
make a flagged view look signed off by an auditor, or delete an open item, and leave no trace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from lab.accounts.models import User
from lab.audit import lanes
from lab.audit.canonical import seal_record, utc_timestamp
from lab.audit.models import AuditRecord, Purpose, ReviewItem
from lab.audit.records import Entry, RequestMeta, audit_append, record_as_chain_dict
from lab.gate import review, selectors
from lab.gate.anomalies import lab_zone
from lab.gate.console_views import SAMPLE_NOT_IN_LOG
from lab.gate.review import review_sample_daily, review_samples_not_in_log, review_sign_off
from tests.builders import attempt, denied, minutes, person
from tests.support.audit_insiders import as_app_role, as_superuser, record_insert_sql

pytestmark = pytest.mark.django_db
META = RequestMeta(client_ip="10.9.9.9", user_agent="pytest", request_id="req-tamper-review")
NOT_IN_LOG = "sign-off not in the log"
# Whoever forges from the database side has no record key; their macs are made with a key of their own.
ATTACKER_RECORD_KEY = bytes(range(200, 232))


@pytest.fixture
def auditor() -> User:
    return person("auditor", email="auditor@lab.example")


@pytest.fixture
def accomplice() -> User:
    """Another auditor, in whose name a sign-off could be forged."""
    return person("auditor", email="accomplice@lab.example")


@pytest.fixture
def items(auditor: User) -> dict[str, ReviewItem]:
    """An open maintenance view (flagged), and a refusal an auditor signed off through the service."""
    technician = person("technician", email="tech@lab.example")
    view = attempt(technician, at=minutes(1), purpose="maintenance", rule="open_maintenance_ticket")
    refused = denied(technician, at=minutes(2), rule="purpose_not_allowed_for_role")
    open_item = ReviewItem.objects.create(record=view, reason="maintenance_view")
    signed = ReviewItem.objects.create(record=refused, reason="denied_attempt")
    review_sign_off(item_id=signed.pk, auditor=auditor, note="asked the technician", meta=META)
    return {"open": open_item, "signed": ReviewItem.objects.get(pk=signed.pk)}


def stored() -> list[tuple[object, ...]]:
    return list(
        ReviewItem.objects.order_by("pk").values_list(
            "pk", "record_id", "reason", "created_at", "reviewed_by_id", "reviewed_at", "note"
        )
    )


REMOVALS = {
    "delete an open maintenance view": "DELETE FROM audit_reviewitem WHERE id = {open}",
    "delete a signed-off item": "DELETE FROM audit_reviewitem WHERE id = {signed}",
    "delete them all": "DELETE FROM audit_reviewitem",
    "truncate the table": "TRUNCATE audit_reviewitem",
}


@pytest.mark.parametrize("name", REMOVALS)
def test_the_app_s_role_cannot_delete_review_items(items: dict[str, ReviewItem], name: str) -> None:
    # given an open item and a signed-off one, their foreign keys checked (a table with pending checks of
    # its own transaction cannot be truncated at all, which would hide whether the trigger refuses it)
    before = stored()
    sql = REMOVALS[name].format(open=items["open"].pk, signed=items["signed"].pk)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    # when the app's role removes them
    with pytest.raises(DatabaseError) as refused, as_app_role(), connection.cursor() as cursor:
        cursor.execute(sql)

    # then the database refuses, and every item is as it was
    assert "refused" in str(refused.value)
    assert stored() == before


FORGERIES: dict[str, tuple[str, str]] = {
    "reopen a signed-off item": (
        "signed",
        "UPDATE audit_reviewitem SET reviewed_by_id = NULL, reviewed_at = NULL, note = '' WHERE id = %s",
    ),
    "rewrite a sign-off's note": (
        "signed",
        "UPDATE audit_reviewitem SET note = 'nothing to see' WHERE id = %s",
    ),
    "sign it again in another auditor's name": (
        "signed",
        "UPDATE audit_reviewitem SET reviewed_by_id = {accomplice}, reviewed_at = now() WHERE id = %s",
    ),
    "turn a maintenance view into a sample": (
        "open",
        "UPDATE audit_reviewitem SET reason = 'sample' WHERE id = %s",
    ),
    "point the item at another record": (
        "open",
        "UPDATE audit_reviewitem SET record_id = record_id + 1 WHERE id = %s",
    ),
    "sign off and change the reason at once": (
        "open",
        "UPDATE audit_reviewitem SET reason = 'sample', reviewed_by_id = {accomplice}, reviewed_at = now(),"
        " note = 'fine' WHERE id = %s",
    ),
    "sign off with no reviewer": (
        "open",
        "UPDATE audit_reviewitem SET reviewed_at = now(), note = 'fine' WHERE id = %s",
    ),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_the_app_s_role_changes_a_review_item_only_by_signing_it_off_once(
    items: dict[str, ReviewItem], accomplice: User, name: str
) -> None:
    # given an open item and a signed-off one
    which, sql = FORGERIES[name]
    before = stored()

    # when the app's role changes one of them otherwise than by its one sign-off
    with pytest.raises(DatabaseError) as refused, as_app_role(), connection.cursor() as cursor:
        cursor.execute(sql.format(accomplice=accomplice.pk), [items[which].pk])

    # then the database refuses, and nothing changed
    assert "refused" in str(refused.value)
    assert stored() == before


def forge_as_superuser(items: dict[str, ReviewItem], accomplice: User) -> ReviewItem:
    """The DBA, triggers off, signs the open maintenance view off in the accomplice's name."""
    as_superuser(
        "UPDATE audit_reviewitem SET reviewed_by_id = %s, reviewed_at = now(), note = 'fine' WHERE id = %s",
        accomplice.pk,
        items["open"].pk,
    )
    return items["open"]


def rewrite_as_superuser(items: dict[str, ReviewItem], accomplice: User) -> ReviewItem:
    """The DBA, triggers off, puts the accomplice's name and words on the signed-off item."""
    as_superuser(
        "UPDATE audit_reviewitem SET reviewed_by_id = %s, note = 'all fine' WHERE id = %s",
        accomplice.pk,
        items["signed"].pk,
    )
    return items["signed"]


def forge_as_app_role(items: dict[str, ReviewItem], accomplice: User) -> ReviewItem:
    """The app's role signs the open maintenance view off in the table: the one change the database lets
    it make, since it is how the app signs off too."""
    with as_app_role(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_reviewitem SET reviewed_by_id = %s, reviewed_at = now(), note = 'fine'"
            " WHERE id = %s",
            [accomplice.pk, items["open"].pk],
        )
    return items["open"]


def forge_with_a_record(items: dict[str, ReviewItem], accomplice: User) -> ReviewItem:
    """The DBA signs the open item off and inserts the sign-off's record too, sealed without the record key
    (at a lane position far ahead, where the console's own read records do not collide with it)."""
    forged = forge_as_superuser(items, accomplice)
    genuine = AuditRecord.objects.get(action="audit.review.sign_off")
    fields = record_as_chain_dict(genuine) | {
        "actor_id": str(accomplice.public_id),
        "context_id": str(forged.pk),
        "justification": "fine",
        "occurred_at": utc_timestamp(timezone.now()),
    }
    sealed = seal_record(
        fields,
        seq=genuine.seq + 1000,
        prev_hash=genuine.hash,
        record_key=ATTACKER_RECORD_KEY,
        lane=genuine.lane,
        lane_seq=(genuine.lane_seq or 0) + 1000,
    )
    sql, values = record_insert_sql(sealed)
    as_superuser(sql, *values)
    return forged


TAMPERINGS: dict[str, Callable[[dict[str, ReviewItem], User], ReviewItem]] = {
    "a superuser signs an open item off in the table": forge_as_superuser,
    "a superuser rewrites who signed an item off and what they wrote": rewrite_as_superuser,
    "the app's role signs an open item off in the table": forge_as_app_role,
    "a superuser adds a sign-off record made without the record key": forge_with_a_record,
}


@pytest.mark.parametrize("name", TAMPERINGS)
def test_a_sign_off_the_chain_does_not_hold_shows_as_not_in_the_log(
    client, items: dict[str, ReviewItem], auditor: User, accomplice: User, name: str
) -> None:
    # given a sign-off written in the table without its record in the chain
    forged = TAMPERINGS[name](items, accomplice)
    genuine = next(item for key, item in items.items() if item.pk != forged.pk)
    client.force_login(auditor)

    # when an auditor opens the signed-off items and the forged item's record
    done = client.get("/lab/audit/review/", {"state": "done"}).content.decode()
    record = client.get(f"/lab/audit/records/{forged.record_id}/").content.decode()

    # then the forged sign-off is shown as not in the log, on both pages (a warning above, and in its row),
    # and only it
    assert done.count(NOT_IN_LOG) == 2
    assert '<strong class="not-in-log"' in done and f'<strong class="not-in-log">{NOT_IN_LOG}' in record
    assert f"Item {forged.pk} (record {forged.record_id}): {NOT_IN_LOG}" in done
    assert f"Item {genuine.pk} " not in done
    assert f"Item {forged.pk} (record {forged.record_id}): {NOT_IN_LOG}" in record


def test_a_genuine_sign_off_shows_as_signed_and_the_page_checks_all_its_items_in_one_query(
    client, auditor: User, django_assert_num_queries
) -> None:
    # given three refusals signed off through the service
    technician = person("technician", email="tech@lab.example")
    for minute in range(3):
        refused = denied(technician, at=minutes(minute), rule="purpose_not_allowed_for_role")
        item = ReviewItem.objects.create(record=refused, reason="denied_attempt")
        review_sign_off(item_id=item.pk, auditor=auditor, note=f"checked {minute}", meta=META)

    # when the signed-off page of the queue is read
    with django_assert_num_queries(2):  # the items, then the chain's sign-offs of all of them
        page = selectors.review_items_page(is_open=False)
    client.force_login(auditor)
    done = client.get("/lab/audit/review/", {"state": "done"}).content.decode()

    # then every sign-off is in the log
    assert (len(page.items), page.not_in_log) == (3, frozenset())
    assert NOT_IN_LOG not in done


def test_a_long_note_is_kept_as_long_as_the_chain_keeps_it(client, auditor: User) -> None:
    # given a refusal, signed off with a note longer than the chain's justification
    technician = person("technician", email="tech@lab.example")
    refused = denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    item = ReviewItem.objects.create(record=refused, reason="denied_attempt")
    note = "checked the ticket, the shift plan and the order; " * 20

    # when an auditor signs it off
    review_sign_off(item_id=item.pk, auditor=auditor, note=note, meta=META)

    # then the item keeps the note the chain records (before: 1000 characters against the chain's 500), and
    # the sign-off shows as signed
    item.refresh_from_db()
    record = AuditRecord.objects.get(action="audit.review.sign_off")
    assert (len(item.note), item.note) == (500, record.justification)
    assert item.note == note.strip()[:500]
    client.force_login(auditor)
    assert NOT_IN_LOG not in client.get("/lab/audit/review/", {"state": "done"}).content.decode()


def test_a_sample_item_inserted_by_the_app_s_role_neither_fills_the_day_s_sample_nor_shows_as_sampled(
    client, auditor: User
) -> None:
    # given one unflagged technician view on day D, and another record of D, a view of the technician's own
    # order by the maintenance purpose (flagged, so never drawn at random)
    technician = person("technician", email="tech@lab.example")
    view = attempt(technician, at=minutes(60))
    other = attempt(technician, at=minutes(61), purpose="maintenance", rule="open_maintenance_ticket")
    day = minutes(60).astimezone(lab_zone()).date()

    # when the app's role, during D, inserts a 'sample' item pointing at the other record, and the nightly
    # run then queues D with a sample of one
    with as_app_role(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_reviewitem (record_id, reason, created_at, note)"
            " VALUES (%s, 'sample', now(), '')",
            [other.seq],
        )
    forged = ReviewItem.objects.get(record_id=other.seq, reason="sample")
    run = review_sample_daily(day=day, sample_size=1)

    # then the day's sample is drawn as if the forged item did not exist (before: it filled the sample, and
    # the view could never be drawn), the chain's record names what was drawn
    assert run.sampled == 1
    sampled = set(ReviewItem.objects.filter(reason="sample").values_list("record_id", flat=True))
    assert sampled == {view.seq, other.seq}
    queued_record = AuditRecord.objects.get(action="audit.review.queued", context_id=day.isoformat())
    assert queued_record.justification.endswith(f"seqs={view.seq}")
    # and the forged item is reported not in the log, and only it, on the queue and on its record's page
    genuine = ReviewItem.objects.get(record_id=view.seq, reason="sample")
    items = list(ReviewItem.objects.select_related("record").order_by("pk"))
    assert review_samples_not_in_log(items=items) == frozenset({forged.pk})
    client.force_login(auditor)
    queue = client.get("/lab/audit/review/").content.decode()
    record = client.get(f"/lab/audit/records/{other.seq}/").content.decode()
    assert f"Item {forged.pk} (record {other.seq}): {SAMPLE_NOT_IN_LOG}" in queue
    assert f"Item {genuine.pk} " not in queue
    assert f"Item {forged.pk} (record {other.seq}): {SAMPLE_NOT_IN_LOG}" in record
    # (the forged item's badge says so, before what the item says; the genuine one's does not)
    badge = f'{SAMPLE_NOT_IN_LOG}</strong>: the item says <span class="reason reason-sampled">sampled</span>'
    assert queue.count(badge) == 1 and queue.count(SAMPLE_NOT_IN_LOG) == 2


def test_a_day_queued_then_topped_up_counts_both_runs_samples(auditor: User) -> None:
    # given three views of D, two drawn by a first run and its record
    technician = person("technician", email="tech@lab.example")
    views = {attempt(technician, at=minutes(60 + i)).seq for i in range(3)}
    day = minutes(60).astimezone(lab_zone()).date()
    first = review_sample_daily(day=day, sample_size=2)

    # when the day is topped up to three, and then queued again
    top_up = review_sample_daily(day=day, sample_size=3)
    again = review_sample_daily(day=day, sample_size=3)

    # then the top-up drew the one view left, the third run nothing, and every sample is in the log
    assert (first.sampled, top_up.sampled, again.sampled) == (2, 1, 0)
    items = list(ReviewItem.objects.select_related("record").filter(reason="sample"))
    assert {item.record_id for item in items} == views
    assert review_samples_not_in_log(items=items) == frozenset()


def test_a_sample_too_large_for_one_record_is_named_over_several() -> None:
    # given a sample of 200 ten-digit seqs (2,200 characters of names)
    drawn = list(range(10**9, 10**9 + 200))

    # when a run's queued records are written for it
    texts = review._queued_justifications(sampled=drawn, flagged=3)

    # then each fits a record's justification, the first counts the run, and together they name the sample
    assert all(len(text) <= 500 for text in texts) and len(texts) > 4
    assert texts[0].startswith("sampled=200 flagged=3 seqs=")
    named = [review._seqs_named(text) for text in texts]
    assert set().union(*(seqs or set() for seqs in named)) == set(drawn)
    assert review._seqs_named("sampled=2 flagged=0") is None  # a record from before records named them


def queued(day: date, *, at: datetime, justification: str = "sampled=1 flagged=0") -> AuditRecord:
    """The nightly run's `audit.review.queued` record of `day`, stamped `at` by the database's clock; by
    default as the runs wrote it before records named the seqs they drew."""
    with mock.patch.object(lanes, "record_time", lambda database_time: at):
        return audit_append(
            Entry(
                action=review.QUEUED_ACTION,
                actor_id=None,
                actor_role="system",
                outcome="done",
                rule="review_queue",
                purpose=Purpose.AUDIT,
                justification=justification,
                context_type=review.REVIEW_DAY,
                context_id=day.isoformat(),
            )
        )


def with_records(*items: ReviewItem) -> list[ReviewItem]:
    return list(ReviewItem.objects.select_related("record").filter(pk__in=[item.pk for item in items]))


@pytest.mark.parametrize("worker_ahead", [timedelta(seconds=1), timedelta(hours=2)])
def test_a_sample_from_before_records_named_their_seqs_is_in_the_log_on_a_worker_ahead_of_the_database(
    worker_ahead: timedelta,
) -> None:
    # given a view of day D, sampled by the night's run before queued records named their seqs: its record
    # stamped on the database's clock, its item on the worker's, which ran ahead of it
    technician = person("technician", email="tech@lab.example")
    view = attempt(technician, at=minutes(60))
    day = minutes(60).astimezone(lab_zone()).date()
    record = queued(day, at=review.day_bounds(day)[1] + timedelta(minutes=30))
    item = ReviewItem.objects.create(
        record=view, reason="sample", created_at=record.occurred_at + worker_ahead
    )

    # when the console checks the sample against the log
    not_in_log = review_samples_not_in_log(items=with_records(item))

    # then it is in the log (before: the worker's time after the record's said the item was added later,
    # and every old sample of such a worker was shown as inserted in the table alone)
    assert not_in_log == frozenset()
    assert view.seq in review.review_samples_logged(days=[day])[day]


def test_a_sample_inserted_beyond_a_worker_s_clock_slack_after_an_old_record_is_not_in_the_log() -> None:
    # given a view of day D, and D queued only by an old run (its record names no seqs), stamped on the
    # database's clock
    technician = person("technician", email="tech@lab.example")
    view = attempt(technician, at=minutes(60))
    day = minutes(60).astimezone(lab_zone()).date()
    record = queued(day, at=review.day_bounds(day)[1] + timedelta(minutes=30))
    assert review._seqs_named(record.justification) is None

    # when the app's role inserts a 'sample' item of D dated 13 hours after that record: later than any
    # worker's clock ran ahead of the database's (LEGACY_CLOCK_SLACK, 12 hours)
    assert timedelta(hours=13) > review.LEGACY_CLOCK_SLACK
    with as_app_role(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_reviewitem (record_id, reason, created_at, note)"
            " VALUES (%s, 'sample', %s, '')",
            [view.seq, record.occurred_at + timedelta(hours=13)],
        )
    forged = ReviewItem.objects.get(record_id=view.seq, reason="sample")

    # then it is reported not in the log: the old record vouches only for items its run's worker dated
    # within the slack of it (the 2-hour case above is in the log)
    assert review_samples_not_in_log(items=with_records(forged)) == frozenset({forged.pk})
    assert view.seq not in review.review_samples_logged(days=[day]).get(day, set())


def test_a_sample_of_the_utc_review_days_is_in_the_log_in_a_lab_time_zone_behind_utc(settings) -> None:
    # given a lab in Chicago, and a view at 03:00 UTC of day D, which is the lab's day D-1; sampled when
    # review days were UTC days, by the run for D (after D was over in UTC), long after the old record of
    # the day named D-1 was written
    settings.LAB_TIME_ZONE = "America/Chicago"
    technician = person("technician", email="tech@lab.example")
    at = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
    view = attempt(technician, at=at)
    utc_day, lab_day = at.date(), at.astimezone(lab_zone()).date()
    assert lab_day == utc_day - timedelta(days=1)
    queued(lab_day, at=datetime(2026, 3, 3, 0, 30, tzinfo=UTC))
    record = queued(utc_day, at=datetime(2026, 3, 4, 0, 30, tzinfo=UTC))
    item = ReviewItem.objects.create(
        record=view, reason="sample", created_at=record.occurred_at - timedelta(milliseconds=5)
    )

    # when the console checks the sample against the log
    not_in_log = review_samples_not_in_log(items=with_records(item))

    # then it is in the log (before: only the record of the lab's day vouched for it, written a day before
    # the item, and every old sample of 00:00-06:00 UTC was shown as inserted in the table alone)
    assert not_in_log == frozenset()


def test_a_sample_inserted_after_its_day_was_named_by_seqs_is_not_vouched_for_by_an_old_record() -> None:
    # given a view of D sampled by an old run (a record with no seqs), and D topped up after the upgrade by a
    # run whose record names what it drew (nothing more to draw)
    technician = person("technician", email="tech@lab.example")
    old, other, third = (attempt(technician, at=minutes(60 + i)) for i in range(3))
    day = minutes(60).astimezone(lab_zone()).date()
    legacy = queued(day, at=review.day_bounds(day)[1] + timedelta(minutes=30))
    genuine = ReviewItem.objects.create(
        record=old, reason="sample", created_at=legacy.occurred_at + timedelta(hours=2)
    )
    topped_up = queued(
        day, at=legacy.occurred_at + timedelta(hours=4), justification="sampled=0 flagged=0 seqs="
    )

    # when the app's role then inserts a 'sample' item of D, dated a minute after the new record (within
    # the old record's tolerance of a worker's clock), and another leaving its time to the database
    with as_app_role(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_reviewitem (record_id, reason, created_at, note)"
            " VALUES (%s, 'sample', %s, '')",
            [other.seq, topped_up.occurred_at + timedelta(minutes=1)],
        )
        cursor.execute(
            "INSERT INTO audit_reviewitem (record_id, reason, note) VALUES (%s, 'sample', '')", [third.seq]
        )
    forged, undated = (ReviewItem.objects.get(record_id=view.seq) for view in (other, third))

    # then both are shown as not in the log, the old run's sample as in it, and the database dated the row
    # that named no time
    not_in_log = review_samples_not_in_log(items=with_records(genuine, forged, undated))
    assert not_in_log == frozenset({forged.pk, undated.pk})
    assert abs(undated.created_at - timezone.now()) < timedelta(minutes=5)


def day_with_a_view_and_a_maintenance_view() -> tuple[date, AuditRecord, AuditRecord]:
    """Day D: one unflagged technician view (the day's sample of one) and a maintenance view (flagged)."""
    technician = person("technician", email="tech@lab.example")
    view = attempt(technician, at=minutes(60))
    maintenance = attempt(technician, at=minutes(61), purpose="maintenance", rule="open_maintenance_ticket")
    return minutes(60).astimezone(lab_zone()).date(), view, maintenance


def test_items_the_app_s_role_inserts_at_the_next_ids_do_not_stop_the_night_s_items() -> None:
    # given day D, and the items' next ids taken by the app's role with items of its own choosing
    day, view, maintenance = day_with_a_view_and_a_maintenance_view()
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('audit_reviewitem', 'id'))")
        (last,) = cursor.fetchone()
    with as_app_role(), connection.cursor() as cursor:
        for offset in range(1, 6):
            cursor.execute(
                "INSERT INTO audit_reviewitem (id, record_id, reason, note) VALUES (%s, %s, %s, '')",
                [last + offset, view.seq, f"planted_{offset}"],
            )

    # when the nightly run queues D with a sample of one
    run = review_sample_daily(day=day, sample_size=1)

    # then the database gave the inserted rows ids of its own, and the run's items are all there (before:
    # the run's inserts clashed with the taken ids and were skipped without a word, while the chain's queued
    # record named a sample that had no item)
    assert (run.sampled, run.flagged) == (1, 1)
    assert set(ReviewItem.objects.values_list("record_id", "reason")) >= {
        (view.seq, "sample"),
        (maintenance.seq, "maintenance_view"),
    }
    assert review.review_queued_items_missing() == []


SIGNED_ON_INSERT = {
    "with a reviewer": "INSERT INTO audit_reviewitem (record_id, reason, note, reviewed_by_id)"
    " VALUES (%s, 'sample', '', {auditor})",
    "with a time": "INSERT INTO audit_reviewitem (record_id, reason, note, reviewed_at)"
    " VALUES (%s, 'sample', '', now())",
    "with a note": "INSERT INTO audit_reviewitem (record_id, reason, note) VALUES (%s, 'sample', 'fine')",
}


@pytest.mark.parametrize("name", SIGNED_ON_INSERT)
def test_the_app_s_role_cannot_insert_an_item_signed_off(auditor: User, name: str) -> None:
    # given a view with no item
    technician = person("technician", email="tech@lab.example")
    view = attempt(technician, at=minutes(60))

    # when the app's role inserts an item for it that is signed off already
    with pytest.raises(DatabaseError) as refused, as_app_role(), connection.cursor() as cursor:
        cursor.execute(SIGNED_ON_INSERT[name].format(auditor=auditor.pk), [view.seq])

    # then the database refuses, and there is no item
    assert "refused" in str(refused.value)
    assert stored() == []


ITEM_MISSING = "queued item missing"


@pytest.mark.parametrize("reason", ["sample", "maintenance_view"])
def test_an_item_the_chain_s_queued_record_names_but_the_table_lacks_is_warned_of(
    client, auditor: User, reason: str
) -> None:
    # given day D queued by the nightly run (a sample of one and a flagged maintenance view)
    day, view, maintenance = day_with_a_view_and_a_maintenance_view()
    review_sample_daily(day=day, sample_size=1)
    seq = view.seq if reason == "sample" else maintenance.seq
    assert ReviewItem.objects.filter(record_id=seq, reason=reason).exists()

    # when a superuser, triggers off, deletes one of the day's items
    as_superuser("DELETE FROM audit_reviewitem WHERE record_id = %s AND reason = %s", seq, reason)

    # then the console warns that the chain's queued record names an item the table does not hold (before:
    # nothing noticed), and only that one
    assert review.review_queued_items_missing() == [(day, seq, reason)]
    client.force_login(auditor)
    for state in ("open", "done"):
        page = client.get("/lab/audit/review/", {"state": state}).content.decode()
        assert page.count(ITEM_MISSING) == 1
        assert f"Record {seq} ({reason}, queued for {day}): {ITEM_MISSING}" in page


def test_a_sign_off_moved_onto_another_record_shows_as_not_in_the_log(client, auditor: User) -> None:
    # given a print-job view signed off, and a maintenance view of the same technician
    technician = person("technician", email="tech@lab.example")
    benign = attempt(technician, at=minutes(1))
    snoop = attempt(technician, at=minutes(2), purpose="maintenance", rule="open_maintenance_ticket")
    item = ReviewItem.objects.create(record=benign, reason="sample")
    review_sign_off(item_id=item.pk, auditor=auditor, note="print job view, fine", meta=META)

    # when a superuser, triggers off, moves the signed item onto the maintenance view and its flag
    as_superuser(
        "UPDATE audit_reviewitem SET record_id = %s, reason = 'maintenance_view' WHERE id = %s",
        snoop.seq,
        item.pk,
    )

    # then the sign-off is shown as not in the log (before: the maintenance view showed signed off)
    page = selectors.review_items_page(is_open=False)
    assert page.not_in_log == frozenset({item.pk})
    client.force_login(auditor)
    done = client.get("/lab/audit/review/", {"state": "done"}).content.decode()
    assert f"Item {item.pk} (record {snoop.seq}): {NOT_IN_LOG}" in done


def forge_queued_record(day: date, *, justification: str, after: AuditRecord) -> None:
    """A superuser inserts an `audit.review.queued` record of `day` as the nightly run writes them, sealed
    without the record key, at a lane position far ahead of `after` (a genuine record to forge from)."""
    fields = record_as_chain_dict(after) | {
        "action": review.QUEUED_ACTION,
        "actor_id": None,
        "actor_role": "system",
        "outcome": "done",
        "rule": "review_queue",
        "purpose": Purpose.AUDIT.value,
        "justification": justification,
        "context_type": review.REVIEW_DAY,
        "context_id": day.isoformat(),
        "occurred_at": utc_timestamp(timezone.now()),
    }
    sealed = seal_record(
        fields,
        seq=after.seq + 1000,
        prev_hash=after.hash,
        record_key=ATTACKER_RECORD_KEY,
        lane=after.lane,
        lane_seq=(after.lane_seq or 0) + 1000,
    )
    sql, values = record_insert_sql(sealed)
    as_superuser(sql, *values)


def test_a_forged_queued_record_does_not_mark_its_day_queued() -> None:
    # given yesterday not queued, and a genuine record in the chain to forge from
    today = review.lab_today()
    yesterday = today - timedelta(days=1)
    technician = person("technician", email="tech@lab.example")
    genuine = attempt(technician, at=minutes(1))
    assert yesterday in review.review_days_missing(today=today)

    # when a superuser inserts a queued record of yesterday, sealed without the record key
    forge_queued_record(yesterday, justification="sampled=0 flagged=0 seqs=", after=genuine)

    # then the nightly job still finds yesterday missing (before: the forged record skipped it for good)
    assert yesterday in review.review_days_missing(today=today)


def test_a_forged_queued_record_neither_raises_a_missing_item_nor_vouches_for_a_planted_one(
    client, auditor: User
) -> None:
    # given day D queued by the nightly run (a sample of one and a flagged maintenance view), and a third
    # view of D the run did not draw
    day, _view, maintenance = day_with_a_view_and_a_maintenance_view()
    review_sample_daily(day=day, sample_size=1)
    other = attempt(person("technician", email="other@lab.example"), at=minutes(62))

    # when a superuser inserts a queued record of D, made without the record key, naming the undrawn view as
    # sampled and a flagged view that does not exist, and the app's role plants a sample item for the first
    forge_queued_record(
        day,
        justification=f"sampled=1 flagged=1 flag.maintenance_view={other.seq + 500} seqs={other.seq}",
        after=maintenance,
    )
    with as_app_role(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_reviewitem (record_id, reason, note) VALUES (%s, 'sample', '')", [other.seq]
        )
    planted = ReviewItem.objects.get(record_id=other.seq, reason="sample")

    # then the console raises no "queued item missing" for what the forgery names (only a record under the
    # lab's key says what was queued), and the planted sample is still not in the log: the forgery vouches
    # for nothing
    assert review.review_queued_items_missing() == []
    assert other.seq not in review.review_samples_logged(days=[day]).get(day, set())
    assert review_samples_not_in_log(items=with_records(planted)) == frozenset({planted.pk})
    client.force_login(auditor)
    queue = client.get("/lab/audit/review/").content.decode()
    assert ITEM_MISSING not in queue
    assert f"Item {planted.pk} (record {other.seq}): {SAMPLE_NOT_IN_LOG}" in queue


def test_a_sign_off_from_before_records_named_their_record_shows_as_naming_no_record(
    client, auditor: User
) -> None:
    # given a refusal signed off as sign-offs were recorded before: the record names the item's id alone
    technician = person("technician", email="tech@lab.example")
    refused = denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    item = ReviewItem.objects.create(record=refused, reason="denied_attempt")
    with mock.patch.object(review, "review_item_digest", lambda **names: ""):
        review_sign_off(item_id=item.pk, auditor=auditor, note="asked the technician", meta=META)

    # when an auditor opens the signed-off items
    page = selectors.review_items_page(is_open=False)
    client.force_login(auditor)
    done = client.get("/lab/audit/review/", {"state": "done"}).content.decode()

    # then it is still in the log, marked as a sign-off that cannot say which record it reviewed
    assert (page.not_in_log, page.names_no_record) == (frozenset(), frozenset({item.pk}))
    assert NOT_IN_LOG not in done and done.count("sign-off names no record</span>") == 1


def test_a_sign_off_from_before_records_named_their_record_moved_onto_a_later_view_is_not_in_the_log(
    client, auditor: User
) -> None:
    # given a refusal signed off as sign-offs were recorded before (the record names the item's id alone),
    # and a maintenance view of the same technician after it
    technician = person("technician", email="tech@lab.example")
    refused = denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    item = ReviewItem.objects.create(record=refused, reason="denied_attempt")
    with mock.patch.object(review, "review_item_digest", lambda **names: ""):
        review_sign_off(item_id=item.pk, auditor=auditor, note="asked the technician", meta=META)
    snoop = attempt(technician, at=minutes(5), purpose="maintenance", rule="open_maintenance_ticket")

    # when a superuser, triggers off, deletes the maintenance view's item and moves the signed one onto it
    as_superuser("DELETE FROM audit_reviewitem WHERE record_id = %s", snoop.seq)
    as_superuser(
        "UPDATE audit_reviewitem SET record_id = %s, reason = 'maintenance_view' WHERE id = %s",
        snoop.seq,
        item.pk,
    )

    # then the sign-off, recorded before the view existed, is not in the log, on the review page and the
    # view's record page (before: the view showed signed off, marked only "sign-off names no record")
    page = selectors.review_items_page(is_open=False)
    assert (page.not_in_log, page.names_no_record) == (frozenset({item.pk}), frozenset())
    client.force_login(auditor)
    done = client.get("/lab/audit/review/", {"state": "done"}).content.decode()
    assert f"Item {item.pk} (record {snoop.seq}): {NOT_IN_LOG}" in done
    record_page = client.get(f"/lab/audit/records/{snoop.seq}/").content.decode()
    assert f"{NOT_IN_LOG}</strong>: the item says signed off" in record_page
    assert "sign-off names no record" not in record_page


def test_the_record_page_marks_a_sign_off_from_before_records_named_their_record(
    client, auditor: User
) -> None:
    # given a refusal signed off as sign-offs were recorded before: the record names the item's id alone
    technician = person("technician", email="tech@lab.example")
    refused = denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    item = ReviewItem.objects.create(record=refused, reason="denied_attempt")
    with mock.patch.object(review, "review_item_digest", lambda **names: ""):
        review_sign_off(item_id=item.pk, auditor=auditor, note="asked the technician", meta=META)

    # when an auditor opens the refusal's record page
    client.force_login(auditor)
    record_page = client.get(f"/lab/audit/records/{refused.seq}/").content.decode()

    # then its sign-off is marked as one that cannot say which record it reviewed (before: no mark at all)
    assert record_page.count("sign-off names no record</span>") == 1
    assert NOT_IN_LOG not in record_page
