"""Filtering the log and per-employee summaries: exact matches on indexed columns, keyset pages by seq."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lab.gate.selectors import (
    RecordFilter,
    actor_id_for,
    employee_emails,
    employee_summaries,
    records_csv_rows,
    records_page,
)
from tests.builders import T0, attempt, denied, minutes, person

pytestmark = pytest.mark.django_db


def seqs(filters: RecordFilter) -> list[int]:
    return [record.seq for record in records_page(filters=filters, limit=200).records]


def test_each_filter_narrows_to_exact_matches(technician, packer):
    a = attempt(technician, at=minutes(1), order_ref="PL-A", asset_id="asset-1")
    b = attempt(packer, at=minutes(2), order_ref="PL-B", purpose="packaging", rule="order_being_packed")
    c = denied(technician, at=minutes(3), rule="purpose_not_allowed_for_role", order_ref="PL-B")
    d = attempt(technician, at=minutes(4), order_ref="PL-A", asset_id="asset-2", action="image.view.full")

    assert seqs(RecordFilter()) == [d.seq, c.seq, b.seq, a.seq]
    assert seqs(RecordFilter(actor_id=str(technician.public_id))) == [d.seq, c.seq, a.seq]
    assert seqs(RecordFilter(order_ref="PL-B")) == [c.seq, b.seq]
    assert seqs(RecordFilter(asset_id="asset-2")) == [d.seq]
    assert seqs(RecordFilter(purpose="packaging")) == [b.seq]
    assert seqs(RecordFilter(outcome="denied")) == [c.seq]
    assert seqs(RecordFilter(action="image.view.full")) == [d.seq]
    assert seqs(RecordFilter(since=minutes(2), until=minutes(4))) == [c.seq, b.seq]
    assert seqs(RecordFilter(actor_id=str(technician.public_id), order_ref="PL-A", since=minutes(2))) == [
        d.seq
    ]


def test_keyset_pages_walk_older_and_back_newer_without_gaps(technician):
    written = [attempt(technician, at=minutes(i)).seq for i in range(7)]
    newest_first = list(reversed(written))

    first = records_page(filters=RecordFilter(), limit=3)
    second = records_page(filters=RecordFilter(), before=first.older, limit=3)
    third = records_page(filters=RecordFilter(), before=second.older, limit=3)
    back = records_page(filters=RecordFilter(), after=second.newer, limit=3)

    assert [r.seq for r in first.records] == newest_first[0:3]
    assert (first.newer, first.older) == (None, newest_first[2])
    assert [r.seq for r in second.records] == newest_first[3:6]
    assert (second.newer, second.older) == (newest_first[3], newest_first[5])
    assert [r.seq for r in third.records] == newest_first[6:7]
    assert (third.newer, third.older) == (newest_first[6], None)
    assert [r.seq for r in back.records] == newest_first[0:3]
    assert (back.newer, back.older) == (None, newest_first[2])


def test_employee_is_found_by_work_email_but_never_by_a_customer_email(technician):
    customer = person("customer", email="someone@example.net")

    assert actor_id_for(employee="Tech@Lab.example") == str(technician.public_id)
    assert actor_id_for(employee=str(technician.public_id)) == str(technician.public_id)
    assert actor_id_for(employee="someone@example.net") == "someone@example.net"
    assert employee_emails(actor_ids=[str(technician.public_id), str(customer.public_id), None]) == {
        str(technician.public_id): "tech@lab.example"
    }


def test_per_employee_summaries_count_views_refusals_orders_and_flags(technician, packer):
    attempt(technician, at=minutes(1), order_ref="PL-A", asset_id="asset-1")
    attempt(technician, at=minutes(2), order_ref="PL-A", asset_id="asset-1", action="image.view.full")
    attempt(technician, at=minutes(3), order_ref="PL-B", asset_id="asset-2")
    denied(technician, at=minutes(4), rule="purpose_not_allowed_for_role")
    attempt(
        packer,
        at=minutes(5),
        order_ref="PL-C",
        purpose="packaging",
        rule="order_being_packed",
        role="packer",
    )
    # A customer's own download is not an employee view.
    attempt(technician, at=minutes(6), role="customer", rule="owner", purpose="owner")
    attempt(technician, at=minutes(90), order_ref="PL-Z")  # outside the range

    summaries = employee_summaries(since=T0, until=minutes(60))

    assert [s.as_dict() for s in summaries] == [
        {
            "actor_id": str(technician.public_id),
            "email": "tech@lab.example",
            "roles": ["technician"],
            "views": 3,
            "full_resolution_views": 1,
            "denied": 1,
            "distinct_orders": 2,
            "distinct_assets": 3,  # the refusal named a third photo
            "first_at": minutes(1).isoformat(),
            "last_at": minutes(4).isoformat(),
            "purposes": {"printing": 4},
            "flags": {"denied_attempt": 1},
        },
        {
            "actor_id": str(packer.public_id),
            "email": "packer@lab.example",
            "roles": ["packer"],
            "views": 1,
            "full_resolution_views": 0,
            "denied": 0,
            "distinct_orders": 1,
            "distinct_assets": 1,
            "first_at": minutes(5).isoformat(),
            "last_at": minutes(5).isoformat(),
            "purposes": {"packaging": 1},
            "flags": {},
        },
    ]


def test_csv_rows_are_metadata_with_formula_cells_defused(technician):
    record = attempt(technician, at=minutes(1), order_ref="=HYPERLINK(1)")

    header, row = list(records_csv_rows(filters=RecordFilter()))

    assert header[:4] == ["seq", "occurred_at", "actor_id", "actor_role"]
    assert header[-1] == "hash"
    assert row[0] == str(record.seq)
    assert row[header.index("order_ref")] == "'=HYPERLINK(1)"
    assert row[header.index("client_ip")] == "10.0.0.7"
    assert row[header.index("hash")] == record.hash


def test_summaries_over_long_ranges_leave_flags_uncounted(technician):
    denied(technician, at=minutes(1), rule="purpose_not_allowed_for_role")

    [short] = employee_summaries(since=T0, until=T0 + timedelta(days=31))
    [long] = employee_summaries(since=T0, until=T0 + timedelta(days=32))

    assert (short.flags, long.flags) == ({"denied_attempt": 1}, None)
    assert (short.denied, long.denied) == (1, 1)


def test_keyset_pages_split_records_of_the_same_instant_by_seq(technician):
    written = [attempt(technician, at=minutes(1)).seq for _ in range(5)]

    first = records_page(filters=RecordFilter(), limit=2)
    second = records_page(filters=RecordFilter(), before=first.older, limit=2)
    third = records_page(filters=RecordFilter(), before=second.older, limit=2)
    back = records_page(filters=RecordFilter(), after=third.newer, limit=2)

    assert [[r.seq for r in page.records] for page in (first, second, third, back)] == [
        [written[4], written[3]],
        [written[2], written[1]],
        [written[0]],
        [written[2], written[1]],
    ]
