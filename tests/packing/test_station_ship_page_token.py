"""A ship, a handover or an unpack carries its page's token, as a count and a pack do.

Before, they posted nothing of what the page showed: a page opened before another packer unpacked the box, a
reprint was made and the box was packed again with other counts shipped the box it no longer showed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from api.errors import STATUS_BY_CODE
from lab.lib.errors import DomainError
from lab.orders.models import Order
from lab.packing import station
from lab.production import reprints
from lab.production.models import PrintJob
from lab.production.tracking import order_check_printed
from tests.builders import client_as, floor_state, hotfolder_printer, job_walk, messages_of, person
from tests.builders import ready_to_pack_order as ready_order
from tests.builders.packing_station import station_confirm, station_form, station_pack, station_page

pytestmark = pytest.mark.django_db

TRACKING = "1Z999AA10123456784"


@pytest.fixture(autouse=True)
def _minilab() -> None:
    hotfolder_printer("minilab", sizes=["4x6"])


def _ready(*, shipping_method: str = "standard") -> Order:
    order = ready_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    if shipping_method != "standard":
        order.shipping_method = shipping_method
        order.save()
    return order


def _packed(client: Client, order: Order) -> None:
    station_confirm(client, order, position=1, copies=3)
    station_pack(client, order)
    assert Order.objects.get(pk=order.pk).status == "packed"


def _unpacked_reprinted_and_packed_again(order: Order) -> None:
    """Another packer opens the box, the floor reprints one of its prints, and it is packed again."""
    other, _ = client_as("packer")
    unpack = station_form(station_page(other, order), order=order, step="unpack")
    other.post(reverse("staff:packing_unpack", args=[order.ref]), unpack)
    assert Order.objects.get(pk=order.pk).status == "ready_to_pack"
    original = PrintJob.objects.get(order=order, reprint_of=None)
    reprint = reprints.job_reprint(job_id=original.pk, actor=person("technician"), reason="colour", copies=1)
    job_walk(reprint, "printed")
    assert order_check_printed(order_id=order.pk)
    _packed(other, order)


def _shipped_state(order: Order) -> tuple[str, str, str]:
    order.refresh_from_db()
    return order.status, order.carrier, order.tracking_number


def test_a_ship_from_a_page_opened_before_an_unpack_reprint_and_repack_is_refused():
    # given a tab on the packed order, then another packer's unpack, a reprint, and the box packed again
    tab, _ = client_as("packer")
    order = _ready()
    _packed(tab, order)
    stale = station_form(station_page(tab, order), order=order, step="ship")
    _unpacked_reprinted_and_packed_again(order)
    before = floor_state()
    # when the stale tab ships the box
    response = tab.post(
        reverse("staff:packing_ship", args=[order.ref]),
        {**stale, "carrier": "ups", "tracking_number": TRACKING},
        follow=True,
    )
    # then it is refused, the order still packed and nothing written; the page as it is now ships it
    assert messages_of(response) == [
        f"Order {order.ref} changed since you opened this page (a reprint): look at its checklist "
        "again before shipping. It was not shipped."
    ]
    assert _shipped_state(order) == ("packed", "", "")
    assert floor_state() == before
    fresh = station_form(station_page(tab, order), order=order, step="ship")
    tab.post(
        reverse("staff:packing_ship", args=[order.ref]),
        {**fresh, "carrier": "ups", "tracking_number": TRACKING},
    )
    assert _shipped_state(order) == ("shipped", "ups", TRACKING)


def test_a_handover_from_a_page_opened_before_an_unpack_reprint_and_repack_is_refused():
    tab, _ = client_as("packer")
    order = _ready(shipping_method="pickup")
    _packed(tab, order)
    stale = station_form(station_page(tab, order), order=order, step="hand_over")
    _unpacked_reprinted_and_packed_again(order)
    before = floor_state()

    response = tab.post(reverse("staff:packing_hand_over", args=[order.ref]), stale, follow=True)

    assert messages_of(response) == [
        f"Order {order.ref} changed since you opened this page (a reprint): look at its checklist "
        "again before handing it over. It was not handed over."
    ]
    assert _shipped_state(order) == ("packed", "", "")
    assert floor_state() == before


def test_an_unpack_from_a_page_opened_before_an_unpack_reprint_and_repack_is_refused():
    tab, _ = client_as("packer")
    order = _ready()
    _packed(tab, order)
    stale = station_form(station_page(tab, order), order=order, step="unpack")
    _unpacked_reprinted_and_packed_again(order)
    counts = list(PrintJob.objects.filter(order=order).order_by("pk").values_list("copies_packed", flat=True))
    before = floor_state()

    response = tab.post(reverse("staff:packing_unpack", args=[order.ref]), stale, follow=True)

    assert messages_of(response) == [
        f"Order {order.ref} changed since you opened this page (a reprint): look at its checklist "
        "again before unpacking. It was not unpacked."
    ]
    assert Order.objects.get(pk=order.pk).status == "packed"
    assert counts == [2, 1]
    assert floor_state() == before


def test_a_ship_handover_or_unpack_without_a_token_is_refused_with_400():
    # given a packed parcel and a packed pickup
    client, packer = client_as("packer")
    parcel, pickup = _ready(), _ready(shipping_method="pickup")
    for order in (parcel, pickup):
        _packed(client, order)
    before = floor_state()
    # when each step is posted without its page's token, at the station and to its services
    posted = [
        messages_of(client.post(url, data, follow=True))
        for url, data in (
            (
                reverse("staff:packing_ship", args=[parcel.ref]),
                {"carrier": "ups", "tracking_number": TRACKING},
            ),
            (reverse("staff:packing_hand_over", args=[pickup.ref]), {}),
            (reverse("staff:packing_unpack", args=[parcel.ref]), {}),
        )
    ]
    refused = []
    calls: list[Callable[[], Order]] = [
        lambda: station.order_ship(
            code=parcel.ref, actor=packer, carrier="ups", tracking_number=TRACKING, seen=None
        ),
        lambda: station.order_hand_over(code=pickup.ref, actor=packer, seen=""),
        lambda: station.order_unpack(code=parcel.ref, actor=packer, seen=None),
    ]
    for call in calls:
        with pytest.raises(DomainError) as error:
            call()
        refused.append((error.value.code, STATUS_BY_CODE[error.value.code]))
    # then every one is refused as a bad request and nothing is written
    assert posted == [
        [
            "This shipment was posted without the state of its page: open the order again and ship it from "
            "there. It was not shipped."
        ],
        [
            "This handover was posted without the state of its page: open the order again and hand it over "
            "from there. It was not handed over."
        ],
        [
            "This unpack was posted without the state of its page: open the order again and unpack it from "
            "there. It was not unpacked."
        ],
    ]
    assert refused == [("page_token_required", 400)] * 3
    assert floor_state() == before
    assert [_shipped_state(order) for order in (parcel, pickup)] == [("packed", "", "")] * 2


def test_a_forged_token_is_refused_with_409():
    client, packer = client_as("packer")
    order = _ready()
    _packed(client, order)
    before = floor_state()

    with pytest.raises(DomainError) as refused:
        station.order_ship(
            code=order.ref, actor=packer, carrier="ups", tracking_number=TRACKING, seen="0" * 32
        )

    assert (refused.value.code, STATUS_BY_CODE[refused.value.code]) == ("job_changed", 409)
    assert floor_state() == before


def test_a_ship_from_a_page_opened_before_an_unpack_and_repack_without_a_reprint_is_refused():
    # given a tab on the packed order, which another packer unpacked and packed again (counted anew)
    tab, _ = client_as("packer")
    order = _ready()
    _packed(tab, order)
    stale = station_form(station_page(tab, order), order=order, step="ship")
    other, _ = client_as("packer")
    other.post(
        reverse("staff:packing_unpack", args=[order.ref]),
        station_form(station_page(other, order), order=order, step="unpack"),
    )
    _packed(other, order)
    # when the stale tab ships it
    response = tab.post(
        reverse("staff:packing_ship", args=[order.ref]),
        {**stale, "carrier": "ups", "tracking_number": TRACKING},
        follow=True,
    )
    # then it is refused: the box was opened since the tab showed it
    assert messages_of(response) == [
        f"Order {order.ref} changed since you opened this page (it left the packing station and came back): "
        "look at its checklist again before shipping. It was not shipped."
    ]
    assert _shipped_state(order) == ("packed", "", "")
