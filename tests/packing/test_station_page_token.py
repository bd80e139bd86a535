"""Every count and pack carries its page's token, an opaque digest of the box as the page showed it.

Before, the page posted what it showed as readable text (`e<event>-j<job>x<copies>r<rejected>`), parsed back
by the station: a post without it skipped the staleness check, and one written by hand for the box as it is
now (job ids are on the floor's pages) passed it.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from api.errors import STATUS_BY_CODE
from lab.lib.errors import DomainError
from lab.orders.models import Order, OrderEvent
from lab.packing import station
from lab.production import reprints
from lab.production.models import PrintJob
from lab.production.tracking import order_check_printed
from tests.builders import client_as, floor_state, hotfolder_printer, job_walk, messages_of, person
from tests.builders import ready_to_pack_order as ready_order
from tests.builders.packing_station import page_token, station_page, station_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def order() -> Order:
    hotfolder_printer("minilab", sizes=["4x6"])
    return ready_order(lines=[("PRINT-4X6-LUSTRE", 3)])


def _reprinted(order: Order) -> None:
    original = PrintJob.objects.get(order=order, reprint_of=None)
    reprint = reprints.job_reprint(job_id=original.pk, actor=person("technician"), reason="colour", copies=1)
    job_walk(reprint, "printed")
    assert order_check_printed(order_id=order.pk)


def test_a_token_from_a_page_opened_before_a_reprint_is_refused_with_409(order):
    # given the page a packer opened, then a reprint of one of the item's prints, printed
    packer = person("packer")
    stale_item = station_token(order, packer=packer, position=1)
    _reprinted(order)
    before = floor_state()
    # when the count is posted with the stale page's token
    with pytest.raises(DomainError) as refused:
        station.item_confirm(code=order.ref, position=1, copies_counted=3, actor=packer, seen=stale_item)
    # then it is refused as a conflict, nothing written; the token names nothing of the box (no job ids)
    assert (refused.value.code, STATUS_BY_CODE[refused.value.code]) == ("job_changed", 409)
    assert floor_state() == before
    fresh_item = station_token(order, packer=packer, position=1)
    assert re.fullmatch(r"[0-9a-f]{32}", stale_item) and re.fullmatch(r"[0-9a-f]{32}", fresh_item)
    assert stale_item != fresh_item


def test_a_count_or_a_pack_from_a_page_opened_before_another_packers_count_is_refused_with_409(order):
    # given the page one packer opened (its count and pack forms), then another packer's count of the item
    first, second = person("packer"), person("packer")
    stale_item = station_token(order, packer=first, position=1)
    stale_order = station_token(order, packer=first, step="pack")
    station.item_confirm(
        code=order.ref,
        position=1,
        copies_counted=3,
        actor=second,
        seen=station_token(order, packer=second, position=1),
    )
    before = floor_state()
    # when the first packer posts a count, or a pack, from the page opened before it
    with pytest.raises(DomainError) as count_refused:
        station.item_confirm(code=order.ref, position=1, copies_counted=3, actor=first, seen=stale_item)
    with pytest.raises(DomainError) as pack_refused:
        station.order_pack(code=order.ref, actor=first, seen=stale_order)
    # then both are refused as conflicts naming the count from another page, and nothing is written (a
    # mutation review: a token that left out the prints counted went on accepting both)
    assert (count_refused.value.code, pack_refused.value.code) == ("job_changed", "job_changed")
    assert "a count from another page" in str(count_refused.value.message)
    assert floor_state() == before


def test_a_count_or_a_pack_without_a_token_is_refused_with_400(order):
    # given a packer at the order's page
    client, packer = client_as("packer")
    before = floor_state()
    # when a count and a pack are posted without the page's token
    counted = client.post(reverse("staff:packing_confirm", args=[order.ref]), {"position": 1, "copies": 3})
    shown = messages_of(client.get(reverse("staff:packing_order", args=[order.ref])))
    with pytest.raises(DomainError) as refused:
        station.order_pack(code=order.ref, actor=packer, seen=None)
    # then both are refused as bad requests, with a message that says what to do, and nothing is written
    assert counted.status_code == 302
    assert shown == [
        "This count was posted without the state of its page: open the order again and count from there. "
        "Nothing was confirmed."
    ]
    assert (refused.value.code, STATUS_BY_CODE[refused.value.code]) == ("page_token_required", 400)
    assert floor_state() == before


def test_a_forged_token_is_refused_with_409(order):
    # given the box as it is now, which a hand-written token can describe (job ids are on the floor's pages)
    client, packer = client_as("packer")
    job = PrintJob.objects.get(order=order)
    event = OrderEvent.objects.filter(order=order, kind="status_changed").order_by("-pk").first()
    assert event is not None
    described = f"e{event.pk}-j{job.pk}x{job.copies}r{job.copies_rejected}"
    before = floor_state()
    # when counts are posted with tokens no page gave, of the old readable kind and of the new one's shape
    posted = [
        messages_of(
            client.post(
                reverse("staff:packing_confirm", args=[order.ref]),
                {"position": 1, "copies": 3, "seen": forged},
                follow=True,
            )
        )
        for forged in (described, "0" * 32)
    ]
    with pytest.raises(DomainError) as refused:
        station.item_confirm(code=order.ref, position=1, copies_counted=3, actor=packer, seen="f" * 32)
    # then each is refused as a conflict and nothing is confirmed; the page's own token is still taken
    assert [len(messages) for messages in posted] == [1, 1]
    assert all(messages[0].startswith("Item 1 changed since you opened this page") for messages in posted)
    assert (refused.value.code, STATUS_BY_CODE[refused.value.code]) == ("job_changed", 409)
    assert floor_state() == before
    token = page_token(station_page(client, order), order=order, position=1)
    line = station.item_confirm(code=order.ref, position=1, copies_counted=3, actor=packer, seen=token)
    assert line.is_confirmed
