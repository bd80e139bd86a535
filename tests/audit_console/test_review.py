"""The review queue: a daily sample of views plus every flagged attempt, each signed off once with a note."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.utils import timezone

from lab.audit.models import AuditRecord, ReviewItem
from lab.audit.records import RequestMeta
from lab.gate.review import review_sample_daily, review_sign_off
from lab.lib.errors import Conflict, DomainError, PermissionDenied
from tests.builders import T0, attempt, denied, minutes, person

pytestmark = pytest.mark.django_db
META = RequestMeta(client_ip="10.9.9.9", user_agent="pytest", request_id="req-review")


def queued() -> list[tuple[int, str]]:
    return list(ReviewItem.objects.order_by("record_id", "reason").values_list("record_id", "reason"))


def test_daily_queue_samples_the_days_views_and_adds_every_flagged_attempt(technician):
    views = [attempt(technician, at=minutes(10 * i), order_ref=f"PL-{i}").seq for i in range(5)]
    refused = denied(technician, at=minutes(60), rule="purpose_not_allowed_for_role")
    attempt(technician, at=minutes(61), role="customer", rule="owner", action="image.download")
    attempt(technician, at=minutes(62), role="system", rule="production_pipeline")
    attempt(technician, at=minutes(24 * 60 + 1), order_ref="PL-NEXT-DAY")

    run = review_sample_daily(day=date(2026, 3, 2), sample_size=3)

    sampled = [seq for seq, reason in queued() if reason == "sample"]
    assert (run.sampled, run.flagged) == (3, 1)
    assert len(sampled) == 3
    assert set(sampled) <= set(views)
    assert [(seq, reason) for seq, reason in queued() if reason != "sample"] == [
        (refused.seq, "denied_attempt")
    ]


def test_running_the_day_again_only_tops_the_sample_up(technician):
    views = [attempt(technician, at=minutes(10 * i), order_ref=f"PL-{i}").seq for i in range(4)]
    denied(technician, at=minutes(60), rule="order_not_being_packed")
    review_sample_daily(day=date(2026, 3, 2), sample_size=2)
    before = queued()

    again = review_sample_daily(day=date(2026, 3, 2), sample_size=2)
    bigger = review_sample_daily(day=date(2026, 3, 2), sample_size=10)

    assert (again.sampled, again.flagged) == (0, 0)
    assert (bigger.sampled, bigger.flagged) == (2, 0)
    assert len(before) == 3
    assert sorted(seq for seq, reason in queued() if reason == "sample") == views


def test_without_a_day_the_job_queues_yesterday_in_the_lab_time_zone(technician):
    yesterday = timezone.localdate() - timedelta(days=1)
    noon = datetime.combine(yesterday, time(12), tzinfo=timezone.get_default_timezone())
    view = attempt(technician, at=noon)

    run = review_sample_daily(sample_size=5)

    assert (run.day, run.sampled) == (yesterday, 1)
    assert queued() == [(view.seq, "sample")]


def test_auditor_signs_an_item_off_once_with_a_note_and_the_sign_off_is_chained(technician, auditor):
    refused = denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    review_sample_daily(day=T0.date(), sample_size=0)
    item = ReviewItem.objects.get()

    signed = review_sign_off(
        item_id=item.pk, auditor=auditor, note="  asked the technician; wrong menu  ", meta=META
    )
    with pytest.raises(Conflict) as twice:
        review_sign_off(item_id=item.pk, auditor=auditor, note="second opinion", meta=META)

    item.refresh_from_db()
    assert (item.reviewed_by, item.reviewed_at, item.note) == (
        auditor,
        signed.reviewed_at,
        "asked the technician; wrong menu",
    )
    assert twice.value.code == "already_signed_off"
    record = AuditRecord.objects.order_by("seq").last()
    assert record is not None
    assert (record.action, record.actor_id, record.actor_role, record.outcome, record.purpose) == (
        "audit.review.sign_off",
        str(auditor.public_id),
        "auditor",
        "done",
        "audit",
    )
    assert (record.context_type, record.context_id, record.justification, record.client_ip) == (
        "review_item",
        str(item.pk),
        "asked the technician; wrong menu",
        "10.9.9.9",
    )
    assert refused.seq < record.seq


@pytest.mark.parametrize("role", ["technician", "packer", "supervisor", "customer"])
def test_only_auditors_and_admins_sign_off_and_a_refusal_changes_nothing(technician, role):
    denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    review_sample_daily(day=T0.date(), sample_size=0)
    item = ReviewItem.objects.get()
    records_before = AuditRecord.objects.count()

    with pytest.raises(PermissionDenied):
        review_sign_off(item_id=item.pk, auditor=person(role), note="looks fine", meta=META)

    item.refresh_from_db()
    assert (item.reviewed_by, item.reviewed_at, item.note) == (None, None, "")
    assert AuditRecord.objects.count() == records_before


def test_a_note_is_required_and_nobody_reviews_their_own_access(auditor):
    admin_technician = person("admin", "technician")
    denied(admin_technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    review_sample_daily(day=T0.date(), sample_size=0)
    item = ReviewItem.objects.get()

    with pytest.raises(DomainError) as no_note:
        review_sign_off(item_id=item.pk, auditor=auditor, note="  ", meta=META)
    # the length is of the note trimmed: spaces around one letter are no note either
    for blank in ("     ", " a "):
        with pytest.raises(DomainError) as short:
            review_sign_off(item_id=item.pk, auditor=auditor, note=blank, meta=META)
        assert short.value.code == "note_required"
    with pytest.raises(PermissionDenied) as own:
        review_sign_off(item_id=item.pk, auditor=admin_technician, note="was me, fine", meta=META)
    review_sign_off(item_id=item.pk, auditor=auditor, note="checked with the shift lead", meta=META)

    assert (no_note.value.code, own.value.code) == ("note_required", "own_record")
    assert ReviewItem.objects.get().reviewed_by == auditor


def test_a_sign_off_note_with_a_nul_byte_is_signed_off_not_a_server_error(client, technician, auditor):
    # PostgreSQL's text holds no NUL: the note's save failed, a 500 and no sign-off
    denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    review_sample_daily(day=T0.date(), sample_size=0)
    item = ReviewItem.objects.get()
    client.force_login(auditor)
    client.raise_request_exception = False

    response = client.post(f"/lab/audit/review/{item.pk}/sign-off/", {"note": "asked\x00them"})

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.note == "asked\ufffdthem"


def test_the_sample_is_drawn_only_from_views_no_rule_flagged(technician, settings):
    # given a busy order whose views from the second on are flagged as repeated, and two quiet views
    settings.AUDIT_REPEAT_VIEWS = 2
    busy = [attempt(technician, at=minutes(i + 1), order_ref="PL-BUSY").seq for i in range(10)]
    quiet = [busy[0], attempt(technician, at=minutes(30), order_ref="PL-OTHER").seq]

    review_sample_daily(day=T0.date(), sample_size=2)

    # then the sample is the two views no rule flagged; before, a flagged view took a sample's place (it is
    # queued for its flag anyway), 54 times in 55
    assert sorted(seq for seq, reason in queued() if reason == "sample") == sorted(quiet)
    assert sorted(seq for seq, reason in queued() if reason == "repeated_views") == busy[1:]


def test_views_repeated_across_midnight_are_queued_for_the_day_that_reaches_the_limit(technician, settings):
    # given three views of one order within AUDIT_REPEAT_HOURS, two of them the evening before
    settings.AUDIT_REPEAT_VIEWS = 3
    settings.AUDIT_REPEAT_HOURS = 24
    attempt(technician, at=datetime(2026, 3, 2, 23, 0, tzinfo=UTC), order_ref="PL-A")
    attempt(technician, at=datetime(2026, 3, 2, 23, 30, tzinfo=UTC), order_ref="PL-A")
    third = attempt(technician, at=datetime(2026, 3, 3, 1, 0, tzinfo=UTC), order_ref="PL-A")

    # when the day of the third is queued
    review_sample_daily(day=date(2026, 3, 3), sample_size=0)

    # then the third is flagged as a repeat: the rule looks back AUDIT_REPEAT_HOURS past midnight (a mutation
    # review: a look-back of the burst window alone survived)
    assert queued() == [(third.seq, "repeated_views")]
