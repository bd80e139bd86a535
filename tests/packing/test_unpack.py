"""Unpacking at the packing station: a packed box not yet shipped is ready to pack again, its counts undone.

Before, a packed order could only be shipped: a packer who found a wrong or damaged print while taping the box
had no way back to the count, a hold or a reprint.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from lab.orders.models import Order, OrderEvent
from lab.production import reprints
from lab.production.models import JobEvent, PrintJob
from tests.builders import (
    client_as,
    floor_state,
    hotfolder_printer,
    messages_of,
    pack_and_ship,
    person,
    ready_to_pack_order,
)
from tests.builders.packing_station import (
    page_token,
    station_confirm,
    station_form,
    station_pack,
    station_page,
    station_post,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def order() -> Order:
    hotfolder_printer("minilab", sizes=["4x6", "5x7"])
    return ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2), ("PRINT-5X7-GLOSSY", 1)])


def _packed(client: Client, order: Order) -> Order:
    for position, copies in ((1, 2), (2, 1)):
        station_confirm(client, order, position=position, copies=copies)
    station_pack(client, order)
    order.refresh_from_db()
    assert order.status == "packed"
    return order


def test_a_packer_unpacks_a_packed_box_and_counts_it_again(order):
    # given a box the packer packed, then found a damaged print in while taping it
    client, packer = client_as("packer")
    _packed(client, order)
    page = client.get(reverse("staff:packing_order", args=[order.ref])).content.decode()
    assert f'action="{reverse("staff:packing_unpack", args=[order.ref])}"' in page

    # when they unpack it at the station
    response = station_post(client, order, step="unpack")

    # then the order is ready to pack again, with every count undone and the step on its timeline
    assert response.redirect_chain == [(f"/lab/packing/{order.ref}/", 302)]
    assert messages_of(response) == [f"Order {order.ref} unpacked: count its items again, then pack it."]
    order.refresh_from_db()
    assert order.status == "ready_to_pack"
    assert list(PrintJob.objects.filter(order=order).values_list("copies_verified", flat=True)) == [0, 0]
    assert [line.copies_confirmed for line in response.context["checklist"]] == [0, 0]
    assert list(
        OrderEvent.objects.filter(order=order, from_status="packed").values_list("to_status", "actor", "note")
    ) == [("ready_to_pack", packer.pk, "unpacked at the packing station")]
    assert list(
        JobEvent.objects.filter(job__order=order, kind="copies_unverified").values_list("note", flat=True)
    ) == ["packing: unpacked, 0 of 2", "packing: unpacked, 0 of 1"]
    # ... and the floor may reprint the damaged print, which a packed order refused
    job = PrintJob.objects.get(order=order, item__position=1)
    reprint = reprints.job_reprint(job_id=job.pk, actor=person("technician"), reason="damaged", copies=1)
    assert reprint.copies == 1


def test_the_station_lists_the_packed_boxes_not_yet_shipped(order):
    # given one order ready to pack, one packed, one shipped
    client, _ = client_as("packer")
    ready = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    shipped = pack_and_ship(ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    _packed(client, order)

    # when the packer opens the station
    response = client.get(reverse("staff:packing"))

    # then the packed box is listed apart from the queue, and the shipped one nowhere
    assert [listed.ref for listed in response.context["waiting"]] == [ready.ref]
    assert [listed.ref for listed in response.context["packed"]] == [order.ref]
    html = response.content.decode()
    assert f'href="/lab/packing/{order.ref}/"' in html
    assert shipped.ref not in html


def test_a_supervisor_unpacks_too(order):
    client, _ = client_as("supervisor")
    _packed(client, order)

    response = station_post(client, order, step="unpack")

    assert messages_of(response) == [f"Order {order.ref} unpacked: count its items again, then pack it."]
    assert Order.objects.get(pk=order.pk).status == "ready_to_pack"


def test_only_a_packed_order_is_unpacked(order):
    # given a box not yet packed, and one already shipped
    client, _ = client_as("packer")
    station_confirm(client, order, position=1, copies=2)
    ready_page_token = page_token(station_page(client, order), order=order, step="pack")
    shipped = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    station_confirm(client, shipped, position=1, copies=1)
    station_pack(client, shipped)
    packed_page = station_form(station_page(client, shipped), order=shipped, step="unpack")
    station_post(
        client, shipped, step="ship", data={"carrier": "ups", "tracking_number": "1Z999AA10123456784"}
    )
    assert Order.objects.get(pk=shipped.pk).status == "shipped"
    before = floor_state()

    # when the packer asks to unpack each, from the pages they had open
    not_packed = client.post(
        reverse("staff:packing_unpack", args=[order.ref]), {"seen": ready_page_token}, follow=True
    )
    gone = client.post(reverse("staff:packing_unpack", args=[shipped.ref]), packed_page, follow=True)

    # then both are refused, and nothing changed (the count of the unpacked one stands)
    assert messages_of(not_packed) == [
        f"Order {order.ref} is ready to pack; only a packed order is unpacked."
    ]
    assert messages_of(gone) == [f"Order {shipped.ref} is shipped; only a packed order is unpacked."]
    assert (not_packed.redirect_chain, gone.redirect_chain) == (
        [(f"/lab/packing/{order.ref}/", 302)],
        [("/lab/packing/", 302)],  # the shipped order is not at the station: back to the scan box
    )
    assert floor_state() == before


def test_a_technician_cannot_unpack(order):
    packer_client, _ = client_as("packer")
    _packed(packer_client, order)
    client, _ = client_as("technician")
    before = floor_state()

    response = client.post(reverse("staff:packing_unpack", args=[order.ref]))

    assert response.status_code == 403
    assert floor_state() == before


def test_unpacking_needs_a_post_with_the_forms_csrf_token(order):
    packer_client, packer = client_as("packer")
    _packed(packer_client, order)
    client = Client(enforce_csrf_checks=True)
    client.force_login(packer)
    before = floor_state()

    fetched = client.get(reverse("staff:packing_unpack", args=[order.ref]))
    forged = client.post(reverse("staff:packing_unpack", args=[order.ref]))

    assert (fetched.status_code, forged.status_code) == (405, 403)
    assert floor_state() == before
