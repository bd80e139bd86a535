"""Orders on hold for customer clarification: order_hold / order_release_hold and their page."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from api.errors import http_status
from lab.lib.errors import Conflict, PermissionDenied
from lab.orders.models import ClarificationCase, Order, OrderEvent
from lab.production.errors import ProductionError
from lab.production.holds import order_hold, order_release_hold
from lab.production.models import PrintJob
from tests.builders import (
    client_as,
    floor_state,
    hotfolder_printer,
    job_walk,
    messages_of,
    order_move,
    paid_order,
    person,
    ready_to_pack_order,
    released_order,
)

pytestmark = pytest.mark.django_db


def test_hold_an_order_in_production_and_release_it():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    client, technician = client_as("technician")

    held = client.post(
        reverse("staff:order_hold", args=[order.ref]),
        {"message": "Your photo is 300 px wide; is a 4x6 print what you want?"},
        follow=True,
    )
    order.refresh_from_db()
    assert (order.status, order.hold_message) == (
        "on_hold",
        "Your photo is 300 px wide; is a 4x6 print what you want?",
    )
    assert messages_of(held) == [f"Order {order.ref} is on hold until the customer answers."]
    assert "Your photo is 300 px wide" in held.content.decode()

    released = client.post(reverse("staff:order_release_hold", args=[order.ref]), follow=True)

    order.refresh_from_db()
    assert (order.status, order.hold_message) == ("in_production", "")
    assert messages_of(released) == [f"Order {order.ref} released from hold (in production)."]
    events = list(
        OrderEvent.objects.filter(order=order, actor=technician).values_list("from_status", "to_status")
    )
    assert events == [("in_production", "on_hold"), ("on_hold", "in_production")]


def test_a_paid_order_held_before_release_goes_back_to_paid():
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    supervisor = person("supervisor")

    order_hold(order_ref=order.ref, actor=supervisor, message="Which address?")
    released = order_release_hold(order_ref=order.ref, actor=supervisor)

    assert released.status == "paid"


def test_release_of_an_order_whose_jobs_all_printed_makes_it_ready_to_pack():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    technician = person("technician")
    order_hold(order_ref=order.ref, actor=technician, message="Crop ok?")
    job_walk(PrintJob.objects.get(order=order), "printed")

    released = order_release_hold(order_ref=order.ref, actor=technician)

    assert released.status == "ready_to_pack"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("   ", "Please check the form. message: This field is required."),
        ("x" * 1001, "Please check the form. message: Ensure this value has at most 1000 characters"),
    ],
)
def test_hold_without_a_usable_message_is_refused(message, expected):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    client, _ = client_as("technician")
    before = floor_state()

    response = client.post(reverse("staff:order_hold", args=[order.ref]), {"message": message}, follow=True)

    assert messages_of(response)[0].startswith(expected)
    assert floor_state() == before


def test_hold_of_an_order_already_packed_is_refused():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = order_move(ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)]), "packed")
    client, _ = client_as("technician")
    before = floor_state()

    response = client.post(reverse("staff:order_hold", args=[order.ref]), {"message": "?"}, follow=True)
    release = client.post(reverse("staff:order_release_hold", args=[order.ref]), follow=True)

    assert messages_of(response) == [
        f"Order {order.ref} is packed; only paid orders not yet packed can be held."
    ]
    assert messages_of(release) == [f"Order {order.ref} is packed, not on hold."]
    assert floor_state() == before


def test_an_order_ready_to_pack_is_held_and_released_back_to_packing():
    """A box unpacked at the station (a wrong print found while taping it) is held from there; before, only
    paid and in-production orders were, and the station's unpack promised a hold the floor refused."""
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    client, _ = client_as("technician")

    held = client.post(reverse("staff:order_hold", args=[order.ref]), {"message": "Print 1 is scratched."})
    order.refresh_from_db()
    assert (held.status_code, order.status, order.hold_message) == (302, "on_hold", "Print 1 is scratched.")

    client.post(reverse("staff:order_release_hold", args=[order.ref]))
    order.refresh_from_db()
    assert (order.status, order.hold_message) == ("ready_to_pack", "")


def test_a_packer_may_not_hold_orders():
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    packer = person("packer")
    before = floor_state()

    with pytest.raises(PermissionDenied):
        order_hold(order_ref=order.ref, actor=packer, message="?")

    assert floor_state() == before


def release_form_of(client: Client, order: Order) -> tuple[str, dict[str, str]]:
    """The order page's "Release hold" form as the page gives it: its action and its fields."""
    page = client.get(reverse("staff:order", args=[order.ref])).content.decode()
    action = reverse("staff:order_release_hold", args=[order.ref])
    form = re.search(rf'<form method="post" action="{re.escape(action)}">(.*?)</form>', page, flags=re.S)
    assert form is not None, "the page shows no release form"
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(1))
    return action, {name: html.unescape(value) for name, value in fields}


def test_a_release_form_from_a_page_that_showed_an_earlier_hold_releases_nothing():
    # given technician A's page of the order held with Q1, and B releasing it and holding it again with Q2
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    client_a, _ = client_as("technician")
    technician_b = person("technician")
    order_hold(order_ref=order.ref, actor=technician_b, message="Q1: which crop?")
    action, fields = release_form_of(client_a, order)
    order_release_hold(order_ref=order.ref, actor=technician_b)
    order_hold(order_ref=order.ref, actor=technician_b, message="Q2: which paper?")
    before = floor_state()

    # when A sends the page's form
    refused = client_a.post(action, fields, follow=True)

    # then Q2's hold stands, its question still open, and A is told why; before, the order went to production
    # and Q2's case was closed unanswered
    order.refresh_from_db()
    assert (order.status, order.hold_message) == ("on_hold", "Q2: which paper?")
    assert list(
        ClarificationCase.objects.filter(order=order, closed_at__isnull=True).values_list("question")
    ) == [("Q2: which paper?",)]
    assert messages_of(refused) == [
        f"Order {order.ref} was released and held again since you opened this page; nothing was released. "
        "Look at the new hold before releasing it."
    ]
    assert floor_state() == before
    # the stale-page refusal of the reprint, resolve and packing forms: 409 where the API answers it
    with pytest.raises(Conflict) as stale:
        order_release_hold(order_ref=order.ref, actor=technician_b, hold_seen=int(fields["hold_seen"]))
    assert (stale.value.code, http_status(stale.value)) == (ProductionError.JOB_CHANGED, 409)


def test_the_release_form_of_a_page_opened_after_the_hold_releases_it():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    client, _ = client_as("technician")
    order_hold(order_ref=order.ref, actor=person("technician"), message="Q1: which crop?")
    order_release_hold(order_ref=order.ref, actor=person("technician"))
    order_hold(order_ref=order.ref, actor=person("technician"), message="Q2: which paper?")
    action, fields = release_form_of(client, order)

    released = client.post(action, fields, follow=True)

    order.refresh_from_db()
    assert (order.status, order.hold_message) == ("in_production", "")
    assert messages_of(released) == [f"Order {order.ref} released from hold (in production)."]
    assert not ClarificationCase.objects.filter(order=order, closed_at__isnull=True).exists()
