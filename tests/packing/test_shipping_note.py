"""A shipped order's tracking number is kept on the order row only, where an erasure blanks it.

The carrier and tracking number are personal data (with the carrier's tracking page they give the parcel's
route and the town it went to). Before, the shipping event's note on the order's timeline repeated them, and
every floor role read that note on the order page for good, long after the slip stopped being served.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from lab.notify.models import WebhookEndpoint
from lab.notify.services import notify_order_status_changed
from lab.orders.models import Order, OrderEvent
from tests.builders import (
    PASSWORD,
    client_as,
    hotfolder_printer,
    order_for,
    pack_and_ship,
    ready_to_pack_order,
)
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db


def _tables_holding(text: str) -> set[str]:
    """The tables with a row that holds `text` anywhere in its columns (compared case-insensitively)."""
    tables = set()
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            cursor.execute(
                f"SELECT EXISTS (SELECT 1 FROM {quoted} AS row WHERE strpos(lower(row::text), %s) > 0)",
                [text.lower()],
            )
            if cursor.fetchone()[0]:
                tables.add(table)
    return tables


@pytest.fixture
def shipped() -> Order:
    hotfolder_printer("minilab", sizes=["4x6"])
    return pack_and_ship(ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2)]))


def test_the_floor_order_page_names_the_carrier_but_not_the_tracking_number(shipped):
    # given an order packed and shipped at the station with its UPS label
    client, _ = client_as("packer")

    # when any packer (or technician, auditor…) opens the order's page on the floor
    response = client.get(reverse("staff:order", args=[shipped.ref]))

    # then the timeline says which carrier took it, and nowhere the parcel's tracking number
    assert response.status_code == 200
    assert shipped.tracking_number not in response.content.decode()
    assert list(
        OrderEvent.objects.filter(order=shipped, to_status="shipped").values_list("note", flat=True)
    ) == ["ups"]


def test_the_tracking_number_is_on_the_order_and_its_webhook_only_and_an_erasure_removes_it(api, shipped):
    # given the customer's webhook endpoint told of the shipping (its body quotes the tracking number)
    customer = shipped.customer
    assert customer is not None
    WebhookEndpoint.objects.create(
        owner=customer,
        url="https://hooks.example.net/studio",
        secret="whsec_" + "s" * 32,
        event_types=["order.shipped"],
    )
    notify_order_status_changed(order_id=shipped.pk, status="shipped")
    assert _tables_holding(shipped.tracking_number) == {"orders_order", "notify_webhookevent"}

    # when the customer erases their account
    api.force_authenticate(customer)
    response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then no table holds the tracking number any more
    assert response.status_code == 200, response.json()
    assert _tables_holding(shipped.tracking_number) == set()


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_takes_the_tracking_numbers_out_of_the_notes_the_station_wrote_before() -> None:
    # given shipping events as the station wrote them before, and notes in other words, which are kept
    order = order_for(None)
    written = {
        "ups 1Z999AA10123456784": ("packed", "shipped"),
        "dhl 1234 5678-90": ("packed", "shipped"),
        "other PARCEL 7": ("packed", "shipped"),
        "handed to ups 1Z999AA10123456785": ("packed", "shipped"),
        "ups 1Z999AA10123456786 to the back door": ("packed", "shipped"),
        "ups late today": ("packed", "on_hold"),
    }
    events = {
        note: OrderEvent.objects.create(
            order=order,
            kind="status_changed",
            from_status=from_status,
            to_status=to_status,
            actor_kind="staff",
            note=note,
        )
        for note, (from_status, to_status) in written.items()
    }
    latest = leaf_migrations("orders")

    # when the lab is upgraded
    migrate_to([("orders", "0010_order_payment_intent_cancel_due")])
    migrate_to(latest)

    # then the station's notes name the carrier only; the others are as they were written
    assert {note: OrderEvent.objects.get(pk=event.pk).note for note, event in events.items()} == {
        "ups 1Z999AA10123456784": "ups",
        "dhl 1234 5678-90": "dhl",
        "other PARCEL 7": "other",
        "handed to ups 1Z999AA10123456785": "handed to ups 1Z999AA10123456785",
        "ups 1Z999AA10123456786 to the back door": "ups 1Z999AA10123456786 to the back door",
        "ups late today": "ups late today",
    }
