"""Orders collected at the lab's counter (shipping method "pickup"): a slip with the customer's name only,
and a handover at the station with no carrier and no tracking number.

Before, the slip printed the full postal address of a parcel that is never posted, and the station shipped
only with a carrier and a unique tracking number: a pickup was completed with an invented number, which the
shipping e-mail then sent to the customer.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from api.errors import STATUS_BY_CODE
from lab.lib.errors import Conflict
from lab.notify.models import Notification, WebhookEndpoint, WebhookEvent
from lab.notify.services import notifications_sweep, notify_order_status_changed
from lab.orders.models import Order, OrderEvent
from lab.packing.errors import PackingError
from lab.packing.services import packing_slip_render, slip_data_for
from lab.packing.station import order_hand_over, order_ship
from lab.production.alerts import orders_at_risk
from lab.staff.board import board_snapshot
from lab.staff.supervisor import Filters, turnaround
from tests.builders import client_as, floor_state, hotfolder_printer, messages_of, ready_to_pack_order
from tests.builders.packing_station import (
    station_confirm,
    station_form,
    station_pack,
    station_page,
    station_post,
    station_token,
)

pytestmark = pytest.mark.django_db

ADDRESS = {
    "name": "Ines Lumen",
    "line1": "9 Aperture Way",
    "line2": "Studio 4",
    "city": "Focus",
    "region": "OR",
    "postal_code": "40400",
    "country": "US",
}


def _ready(*, shipping_method: str) -> Order:
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    # chosen by the customer at checkout (the builder's orders are standard); saved by the lab's code, which
    # seals the address as the intake does
    order.shipping_method = shipping_method
    order.shipping_address = ADDRESS
    order.save()
    return order


@pytest.fixture(autouse=True)
def _minilab() -> None:
    hotfolder_printer("minilab", sizes=["4x6"])


def _packed(client: Client, order: Order) -> None:
    station_confirm(client, order, position=1, copies=2)
    station_pack(client, order)
    assert Order.objects.get(pk=order.pk).status == "packed"


def test_a_pickup_orders_slip_names_the_customer_and_not_the_address():
    # given an order the customer collects at the counter
    order = _ready(shipping_method="pickup")

    # when its slip is made
    slip = packing_slip_render(order_id=order.pk)

    # then it names who collects it, and prints none of their postal address
    assert slip_data_for(order).ship_to == ["Ines Lumen", "Pickup at the counter"]
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(bytes(slip.pdf))).pages)
    assert "Ines Lumen" in text and "Pickup at the counter" in text
    assert [part for part in ("9 Aperture Way", "Studio 4", "40400", "Focus") if part in text] == []


def test_a_delivery_orders_slip_still_prints_the_address():
    order = _ready(shipping_method="standard")

    assert slip_data_for(order).ship_to == [
        "Ines Lumen",
        "9 Aperture Way",
        "Studio 4",
        "40400 Focus",
        "OR US",
    ]


def test_a_packer_hands_pickup_orders_over_with_no_tracking_number():
    # given two packed pickup orders (two orders without a tracking number: outside its uniqueness)
    client, packer = client_as("packer")
    first, second = _ready(shipping_method="pickup"), _ready(shipping_method="pickup")
    for order in (first, second):
        _packed(client, order)
    page = client.get(reverse("staff:packing_order", args=[first.ref])).content.decode()
    assert f'action="{reverse("staff:packing_hand_over", args=[first.ref])}"' in page
    assert 'name="tracking_number"' not in page

    # when the customers collect them at the counter
    responses = [station_post(client, order, step="hand_over") for order in (first, second)]

    # then each is done (shipped, as the order's life knows it) with no carrier and no tracking number
    assert [messages_of(response) for response in responses] == [
        [f"Order {first.ref} handed over at the counter."],
        [f"Order {second.ref} handed over at the counter."],
    ]
    assert responses[0].redirect_chain == [("/lab/packing/", 302)]
    for order in (first, second):
        order.refresh_from_db()
        assert (order.status, order.carrier, order.tracking_number) == ("shipped", "", "")
        assert order.shipped_at is not None
        assert list(
            OrderEvent.objects.filter(order=order, to_status="shipped").values_list("actor", "note")
        ) == [(packer.pk, "picked up at the counter")]


def test_a_pickup_order_is_not_shipped_with_a_carrier():
    client, _ = client_as("packer")
    order = _ready(shipping_method="pickup")
    _packed(client, order)
    # its page offers a handover only: the ship is posted by hand, with the page's token
    seen = station_form(station_page(client, order), order=order, step="hand_over")
    before = floor_state()

    response = client.post(
        reverse("staff:packing_ship", args=[order.ref]),
        {**seen, "carrier": "ups", "tracking_number": "1Z999AA10123456784"},
        follow=True,
    )

    assert messages_of(response) == [
        f"Order {order.ref} is collected at the counter: hand it over, with no carrier or tracking number."
    ]
    assert floor_state() == before
    assert Order.objects.get(pk=order.pk).tracking_number == ""


def test_a_delivery_order_is_not_handed_over_at_the_counter():
    client, _ = client_as("packer")
    order = _ready(shipping_method="express")
    _packed(client, order)
    seen = station_form(station_page(client, order), order=order, step="ship")  # its page offers a ship
    before = floor_state()

    response = client.post(reverse("staff:packing_hand_over", args=[order.ref]), seen, follow=True)

    assert messages_of(response) == [
        f"Order {order.ref} ships express: enter the carrier and tracking number to ship it."
    ]
    assert floor_state() == before


def test_shipping_the_wrong_way_is_refused_with_its_own_code():
    # given a packed pickup order and a packed delivery order
    client, packer = client_as("packer")
    pickup, parcel = _ready(shipping_method="pickup"), _ready(shipping_method="express")
    _packed(client, pickup)
    _packed(client, parcel)

    # when each is sent the other way
    with pytest.raises(Conflict) as offered_to_a_carrier:
        order_ship(
            code=pickup.ref,
            actor=packer,
            carrier="ups",
            tracking_number="1Z999AA10123456784",
            seen=station_token(pickup, packer=packer, step="hand_over"),
        )
    with pytest.raises(Conflict) as handed_over:
        order_hand_over(code=parcel.ref, actor=packer, seen=station_token(parcel, packer=packer, step="ship"))

    # then each refusal names what is wrong with the order, not the carrier the packer chose
    assert offered_to_a_carrier.value.code == PackingError.COLLECTED_AT_THE_COUNTER
    assert handed_over.value.code == PackingError.SHIPS_BY_CARRIER
    assert {
        STATUS_BY_CODE[PackingError.COLLECTED_AT_THE_COUNTER],
        STATUS_BY_CODE[PackingError.SHIPS_BY_CARRIER],
    } == {409}


def test_a_pickup_order_not_packed_is_not_handed_over():
    client, _ = client_as("packer")
    order = _ready(shipping_method="pickup")
    seen = station_form(station_page(client, order), order=order, step="pack")  # its page offers a pack
    before = floor_state()

    response = client.post(reverse("staff:packing_hand_over", args=[order.ref]), seen, follow=True)

    assert messages_of(response) == [f"Order {order.ref} is ready to pack; pack it before handing it over."]
    assert floor_state() == before


def test_a_technician_cannot_hand_over_an_order():
    packer_client, _ = client_as("packer")
    order = _ready(shipping_method="pickup")
    _packed(packer_client, order)
    client, _ = client_as("technician")
    before = floor_state()

    response = client.post(reverse("staff:packing_hand_over", args=[order.ref]))

    assert response.status_code == 403
    assert floor_state() == before


def test_a_pickup_order_s_customer_is_told_it_is_ready_to_collect_and_then_collected(mailoutbox):
    # given a pickup order whose customer has an e-mail address
    client, _ = client_as("packer")
    order = _ready(shipping_method="pickup")

    # when it is packed, and then handed over at the counter
    _packed(client, order)
    notify_order_status_changed(order_id=order.pk, status="packed")
    station_post(client, order, step="hand_over")
    notify_order_status_changed(order_id=order.pk, status="shipped")

    # then the customer hears it waits at the counter, then that it was collected; never "on its way" with a
    # blank carrier and tracking number, as a parcel's e-mail told it before
    assert [message.subject for message in mailoutbox] == [
        f"Order {order.ref} is ready to collect",
        f"Order {order.ref} was collected",
    ]
    assert "waits for you at our counter" in mailoutbox[0].body
    assert [m for m in mailoutbox if "Tracking number" in m.body or "on its way" in m.body] == []


def _packed_notification(order: Order) -> tuple[str, str]:
    return Notification.objects.values_list("status", "skip_reason").get(order=order, order_status="packed")


def test_a_pickup_unpacked_before_its_ready_mail_ran_is_not_said_to_be_ready(mailoutbox):
    # given a packed pickup the packer unpacks (a damaged print found while taping the box) before the
    # "packed" message ran (a backed-up queue, or the sweep after a lost message)
    client, _ = client_as("packer")
    order = _ready(shipping_method="pickup")
    _packed(client, order)
    station_post(client, order, step="unpack")
    assert Order.objects.get(pk=order.pk).status == "ready_to_pack"

    # when the "packed" message runs
    notify_order_status_changed(order_id=order.pk, status="packed")

    # then the customer is not sent to the counter for a box being counted again (before: "ready to collect")
    assert mailoutbox == []
    assert _packed_notification(order) == ("skipped", "packed_over")


def test_a_pickup_collected_before_its_ready_mail_ran_is_only_said_to_be_collected(mailoutbox):
    # given a packed pickup handed over at the counter before the "packed" message ran
    client, _ = client_as("packer")
    order = _ready(shipping_method="pickup")
    _packed(client, order)
    station_post(client, order, step="hand_over")

    # when the two messages run, the "packed" one late
    notify_order_status_changed(order_id=order.pk, status="shipped")
    notify_order_status_changed(order_id=order.pk, status="packed")

    # then the customer hears only that it was collected (before: "ready to collect" after "collected")
    assert [message.subject for message in mailoutbox] == [f"Order {order.ref} was collected"]
    assert _packed_notification(order) == ("skipped", "packed_over")


def test_a_pickup_unpacked_and_packed_again_is_said_to_be_ready_once(mailoutbox):
    # given a pickup packed, unpacked and packed again, both "packed" messages lost
    client, _ = client_as("packer")
    order = _ready(shipping_method="pickup")
    _packed(client, order)
    station_post(client, order, step="unpack")
    _packed(client, order)
    OrderEvent.objects.filter(order=order).update(created_at=F("created_at") - timedelta(minutes=5))

    # when the notifications sweep sends what was lost
    notifications_sweep()

    # then the box waiting at the counter is announced once, for its last packing (before: twice)
    ready = [message for message in mailoutbox if "ready to collect" in message.subject]
    assert [message.subject for message in ready] == [f"Order {order.ref} is ready to collect"]
    assert sorted(
        Notification.objects.filter(order=order, order_status="packed").values_list("status", "skip_reason")
    ) == [("sent", ""), ("skipped", "packed_over")]


def test_a_delivery_order_s_packing_sends_no_mail_and_its_shipping_the_parcel_s(mailoutbox):
    client, _ = client_as("packer")
    order = _ready(shipping_method="standard")
    _packed(client, order)

    notify_order_status_changed(order_id=order.pk, status="packed")

    assert mailoutbox == []


def test_a_pickup_packed_in_time_keeps_its_promise_for_the_alerts_the_board_and_the_turnaround(settings):
    # given a pickup and a delivery order packed on time, both promised within the at-risk horizon
    settings.ALERT_ORDER_AT_RISK_HOURS = 12
    client, _ = client_as("packer")
    pickup, parcel = _ready(shipping_method="pickup"), _ready(shipping_method="standard")
    for order in (pickup, parcel):
        _packed(client, order)
    now = timezone.now()
    Order.objects.filter(pk__in=[pickup.pk, parcel.pk]).update(promised_by=now + timedelta(hours=6))

    # when the supervisor's checks look at promises, and later, after both promises passed
    at_risk = [order.ref for order in orders_at_risk(now=now)]
    Order.objects.filter(pk__in=[pickup.pk, parcel.pk]).update(promised_by=now - timedelta(hours=1))
    late = [order.ref for order in board_snapshot(now=now).late_orders]

    # then the pickup, waiting at the counter, is neither at risk nor late (its promise is to be ready to
    # collect); the parcel still to ship is both
    assert (at_risk, late) == ([parcel.ref], [parcel.ref])

    # and once collected two days later, its turnaround ends when it was ready, on time
    station_post(client, pickup, step="hand_over")
    OrderEvent.objects.filter(order=pickup, to_status="shipped").update(created_at=now + timedelta(days=2))
    Order.objects.filter(pk=pickup.pk).update(promised_by=now + timedelta(hours=6))
    rows = turnaround(
        filters=Filters(start=now - timedelta(days=1), end=now + timedelta(days=3), printer_id=None)
    )
    assert [(row.shipping_method, row.orders, row.on_time) for row in rows] == [("pickup", 1, 1)]


def test_a_pickup_handed_over_sends_its_status_webhook_and_no_parcel_s_shipped_event():
    # given a pickup order whose customer subscribed an endpoint to every event
    client, _ = client_as("packer")
    order = _ready(shipping_method="pickup")
    assert order.customer is not None
    WebhookEndpoint.objects.create(
        owner=order.customer,
        url="https://hooks.example.org/lab",
        secret="whsec_test",
        event_types=["order.status_changed", "order.shipped", "item.reprinted"],
    )
    _packed(client, order)

    # when it is handed over
    station_post(client, order, step="hand_over")
    notify_order_status_changed(order_id=order.pk, status="shipped")

    # then the integration hears the order is done, and of no parcel with a blank carrier on its way
    shipped_events = WebhookEvent.objects.filter(order=order, event_type="order.shipped")
    assert shipped_events.count() == 0
    assert WebhookEvent.objects.filter(order=order, event_type="order.status_changed").exists()
