"""Each anomaly rule on records written through the real chain writer: what is flagged and what is not."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from lab.audit.models import StaffShift
from lab.gate.anomalies import anomalies_find
from tests.builders import T0, attempt, denied, minutes, shipped_order

pytestmark = pytest.mark.django_db
DAY_END = minutes(24 * 60)


def flags(since: datetime = T0, until: datetime = DAY_END) -> list[tuple[int, str]]:
    return [(anomaly.seq, anomaly.flag.value) for anomaly in anomalies_find(since=since, until=until)]


def test_every_refusal_is_flagged_once_as_off_step_or_denied(technician):
    role = denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")
    step = denied(technician, at=minutes(2), rule="order_not_being_packed", order_ref="PL-A")
    closed = denied(technician, at=minutes(3), rule="maintenance_ticket_closed")
    attempt(technician, at=minutes(4), rule="active_print_job")
    unfitting = attempt(technician, at=minutes(5), rule="granted_by_hand")
    # a held order's photo asked for under printing or handling (nothing prints while it is held)
    held = denied(technician, at=minutes(6), rule="order_on_hold", order_ref="PL-B")

    assert flags() == [
        (role.seq, "denied_attempt"),
        (step.seq, "outside_production_step"),
        (closed.seq, "outside_production_step"),
        (unfitting.seq, "outside_production_step"),
        (held.seq, "outside_production_step"),
    ]


def test_burst_flags_the_view_that_reaches_the_threshold_within_the_window(technician, packer, settings):
    settings.AUDIT_BURST_ORDERS = 3
    settings.AUDIT_BURST_MINUTES = 15
    attempt(technician, at=minutes(0), order_ref="PL-A")
    attempt(technician, at=minutes(5), order_ref="PL-A")
    attempt(packer, at=minutes(6), order_ref="PL-X")  # someone else's views do not count
    attempt(technician, at=minutes(9), order_ref="PL-B")
    third = attempt(technician, at=minutes(14), order_ref="PL-C")
    fourth = attempt(technician, at=minutes(16), order_ref="PL-D")  # A at 0 and 5 left the window
    attempt(technician, at=minutes(40), order_ref="PL-E")
    denied(technician, at=minutes(41), rule="context_not_found", order_ref="PL-F")
    attempt(technician, at=minutes(42), order_ref="PL-G")  # E, G: a denial is not a view

    assert [(seq, flag) for seq, flag in flags() if flag == "burst_of_orders"] == [
        (third.seq, "burst_of_orders"),
        (fourth.seq, "burst_of_orders"),
    ]


def test_burst_counts_views_just_before_the_range(technician, settings):
    settings.AUDIT_BURST_ORDERS = 2
    attempt(technician, at=minutes(-5), order_ref="PL-A")
    second = attempt(technician, at=minutes(1), order_ref="PL-B")

    assert flags(since=T0) == [(second.seq, "burst_of_orders")]


def test_repeated_views_of_one_order_within_the_window(technician, settings):
    settings.AUDIT_REPEAT_VIEWS = 3
    settings.AUDIT_REPEAT_HOURS = 1
    attempt(technician, at=minutes(0), order_ref="PL-A")
    attempt(technician, at=minutes(10), order_ref="PL-A")
    attempt(technician, at=minutes(15), order_ref="PL-B")
    third = attempt(technician, at=minutes(20), order_ref="PL-A")
    attempt(technician, at=minutes(180), order_ref="PL-A")  # the earlier ones are over an hour old

    assert flags() == [(third.seq, "repeated_views")]


def test_views_outside_every_shift_of_the_person(technician, packer):
    StaffShift.objects.create(user=technician, weekday=0, start_time=time(8), end_time=time(16))
    StaffShift.objects.create(user=technician, weekday=4, start_time=time(22), end_time=time(6))
    monday_morning = attempt(technician, at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC), order_ref="PL-1")
    monday_evening = attempt(technician, at=datetime(2026, 3, 2, 17, 0, tzinfo=UTC), order_ref="PL-2")
    denied_at_night = denied(
        technician, at=datetime(2026, 3, 3, 2, 0, tzinfo=UTC), rule="purpose_not_allowed_for_role"
    )
    saturday_early = attempt(technician, at=datetime(2026, 3, 7, 5, 59, tzinfo=UTC), order_ref="PL-3")
    saturday_later = attempt(technician, at=datetime(2026, 3, 7, 6, 0, tzinfo=UTC), order_ref="PL-4")
    attempt(packer, at=datetime(2026, 3, 7, 3, 0, tzinfo=UTC), order_ref="PL-5")  # no shifts on record

    found = flags(since=T0, until=datetime(2026, 3, 8, tzinfo=UTC))

    assert [seq for seq, flag in found if flag == "outside_shift"] == [
        monday_evening.seq,
        denied_at_night.seq,
        saturday_later.seq,
    ]
    assert monday_morning.seq not in {seq for seq, _ in found}
    assert saturday_early.seq not in {seq for seq, _ in found}


def outside_shift(since: datetime, until: datetime) -> list[int]:
    return [seq for seq, flag in flags(since=since, until=until) if flag == "outside_shift"]


def test_shifts_are_judged_on_the_wall_clock_of_the_lab_s_time_zone(technician, settings):
    """Shifts were judged in UTC whatever the lab's zone: a Chicago technician's afternoon (after 19:00 UTC
    in summer) was flagged and their 05:00 view was not. They are judged in LAB_TIME_ZONE now."""
    settings.LAB_TIME_ZONE = "America/Chicago"
    StaffShift.objects.create(user=technician, weekday=0, start_time=time(9), end_time=time(17))
    afternoon = attempt(technician, at=datetime(2026, 7, 6, 21, 30, tzinfo=UTC))  # Monday 16:30 CDT
    early = attempt(
        technician, at=datetime(2026, 7, 6, 10, 0, tzinfo=UTC), order_ref="PL-2"
    )  # Monday 05:00 CDT

    flagged = outside_shift(datetime(2026, 7, 6, tzinfo=UTC), datetime(2026, 7, 8, tzinfo=UTC))

    assert flagged == [early.seq]
    assert afternoon.seq not in flagged
    detail = next(a.detail for a in anomalies_find(since=T0, until=datetime(2026, 7, 8, tzinfo=UTC)))
    assert detail == "at Mon 05:00 CDT, outside every shift"


def test_a_shift_keeps_its_wall_clock_hours_on_the_days_the_clocks_change(technician, packer, settings):
    settings.LAB_TIME_ZONE = "America/Chicago"
    # the night the clocks go forward (Sunday 8 March 2026, 02:00 CST -> 03:00 CDT): 22:00-06:00 is 7 hours
    StaffShift.objects.create(user=technician, weekday=5, start_time=time(22), end_time=time(6))
    before_six = attempt(technician, at=datetime(2026, 3, 8, 10, 30, tzinfo=UTC))  # 05:30 CDT
    after_six = attempt(
        technician, at=datetime(2026, 3, 8, 11, 30, tzinfo=UTC), order_ref="PL-2"
    )  # 06:30 CDT
    # the night they go back (Sunday 1 November 2026, 02:00 CDT -> 01:00 CST): 01:00-02:00 happens twice
    StaffShift.objects.create(user=packer, weekday=6, start_time=time(1), end_time=time(2))
    first_half_past_one = attempt(packer, at=datetime(2026, 11, 1, 6, 30, tzinfo=UTC), order_ref="PL-3")
    second_half_past_one = attempt(packer, at=datetime(2026, 11, 1, 7, 30, tzinfo=UTC), order_ref="PL-4")
    half_past_two = attempt(packer, at=datetime(2026, 11, 1, 8, 30, tzinfo=UTC), order_ref="PL-5")

    spring = outside_shift(datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC))
    autumn = outside_shift(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))

    assert (spring, autumn) == ([after_six.seq], [half_past_two.seq])
    assert {before_six.seq, first_half_past_one.seq, second_half_past_one.seq}.isdisjoint(spring + autumn)


def test_attempts_at_or_after_the_order_shipped(technician):
    order = shipped_order(shipped_at=minutes(30))
    before = attempt(technician, at=minutes(29), order_ref=order.ref)
    at_shipping = attempt(technician, at=minutes(30), order_ref=order.ref)
    refused_after = denied(technician, at=minutes(31), rule="order_not_being_packed", order_ref=order.ref)
    attempt(technician, at=minutes(32), order_ref="PL-NOT-SHIPPED")

    assert flags() == [
        (at_shipping.seq, "after_shipment"),
        (refused_after.seq, "after_shipment"),
        (refused_after.seq, "outside_production_step"),
    ]
    assert before.seq < at_shipping.seq


def test_customers_and_the_system_are_not_employees(technician):
    attempt(technician, at=minutes(1), role="customer", rule="owner", action="image.download")
    attempt(technician, at=minutes(2), role="system", rule="production_pipeline", action="image.view.full")

    assert flags() == []


def test_a_sunday_night_shift_covers_the_early_hours_of_monday(technician):
    # given a technician whose shift runs Sunday 22:00 to 06:00 (weekday 6: the day after it is Monday, 0)
    StaffShift.objects.create(user=technician, weekday=6, start_time=time(22), end_time=time(6))

    # when they view a photo at 05:00 on Monday (2026-03-02, the lab's zone UTC)
    attempt(technician, at=datetime(2026, 3, 2, 5, 0, tzinfo=UTC))

    # then it is inside their shift: no flag (a mutation review: the day after Sunday computed as 7 survived)
    assert flags(since=datetime(2026, 3, 2, tzinfo=UTC), until=datetime(2026, 3, 3, tzinfo=UTC)) == []


def test_a_refused_maintenance_view_is_flagged_once_as_a_refusal_not_as_a_view(technician):
    # given a maintenance request refused (its ticket closed): nothing was shown
    refused = attempt(
        technician,
        at=minutes(1),
        action="image.access.denied",
        outcome="denied",
        rule="maintenance_ticket_closed",
        purpose="maintenance",
    )

    # then it carries the refusal's one flag, not also `maintenance_view` (queued twice, called a view)
    assert flags() == [(refused.seq, "outside_production_step")]
