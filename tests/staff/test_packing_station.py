"""The packing station: scan, confirm counts, pack, ship, and the slip PDFs."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lab.orders.models import Order, OrderItem
from lab.packing import station
from lab.packing.models import PackingSlip
from lab.packing.services import (
    SLIP_RENDER_ATTEMPTS,
    SlipOutdated,
    packing_slip_render,
    shipping_address_change,
)
from lab.packing.slip import render_slips
from lab.production import actions, reprints
from lab.production.models import PrintJob
from tests.builders import (
    PASSWORD,
    client_as,
    floor_state,
    hotfolder_printer,
    job_walk,
    messages_of,
    order_move,
    pack_and_ship,
    person,
    ready_to_pack_order,
    released_order,
)
from tests.builders.packing_station import (
    station_confirm,
    station_form,
    station_pack,
    station_page,
    station_post,
    station_token,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def order() -> Order:
    hotfolder_printer("minilab", sizes=["4x6", "5x7"])
    return ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2), ("PRINT-5X7-GLOSSY", 1)])


# The token posted for an order no station page shows (one not at the station, a person refused the page).
NO_PAGE = "0" * 32


def confirm(client, order: Order, position: int, copies: int, *, seen: str | None = None):
    """A count posted from the order's page as it is now, with the page's token (or with `seen`)."""
    if seen is None:
        return station_confirm(client, order, position=position, copies=copies)
    return client.post(
        reverse("staff:packing_confirm", args=[order.ref]),
        {"position": str(position), "copies": str(copies), "seen": seen},
        follow=True,
    )


def test_scanning_an_order_code_opens_its_checklist(order):
    client, _ = client_as("packer")

    response = client.post(reverse("staff:packing_scan"), {"code": f"  {order.ref.lower()}\n"}, follow=True)

    assert response.redirect_chain == [(f"/lab/packing/{order.ref}/", 302)]
    html = response.content.decode()
    assert [line.copies for line in response.context["checklist"]] == [2, 1]
    assert "4x6&quot; Lustre print" in html and "5x7&quot; Glossy print" in html
    assert "<img" not in html
    assert html.count('class="photo-placeholder"') == 2


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("PL-0000000000ZZ", "No order PL-0000000000ZZ."),
        ("9780201633610", "“9780201633610” is not an order code (PL-…)."),
        ("", "Scan or type an order code."),
    ],
)
def test_a_wrong_or_unknown_code_is_refused(order, code, message):
    client, _ = client_as("packer")

    response = client.post(reverse("staff:packing_scan"), {"code": code}, follow=True)

    assert response.redirect_chain == [("/lab/packing/", 302)]
    assert messages_of(response) == [message]


def test_an_order_not_ready_to_pack_is_refused_at_the_station():
    hotfolder_printer("minilab", sizes=["4x6"])
    in_production = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    client, _ = client_as("packer")
    before = floor_state()

    response = client.post(reverse("staff:packing_scan"), {"code": in_production.ref}, follow=True)
    confirmed = confirm(client, in_production, 1, 1, seen=NO_PAGE)
    packed = client.post(
        reverse("staff:packing_pack", args=[in_production.ref]), {"seen": NO_PAGE}, follow=True
    )

    assert messages_of(response) == [f"Order {in_production.ref} is in production, not ready to pack."]
    assert messages_of(confirmed) == [f"Order {in_production.ref} is in production, not ready to pack."]
    assert messages_of(packed) == [f"Order {in_production.ref} is in production, not ready to pack."]
    assert floor_state() == before


# Too many is a mismatch too: an extra print on the table is a duplicate, a rejected print not set aside, or
# another order's print (a mutation review: a count of 3 for 2 copies survived).
@pytest.mark.parametrize("counted", [1, 3], ids=["too-few", "too-many"])
def test_a_count_mismatch_confirms_nothing(order, counted):
    client, _ = client_as("packer")
    before = floor_state()

    response = confirm(client, order, 1, counted)

    assert messages_of(response) == [f"Item 1 needs 2 copies; you counted {counted}. Nothing was confirmed."]
    assert floor_state() == before


def test_packing_needs_every_item_confirmed(order):
    client, _ = client_as("packer")
    confirm(client, order, 1, 2)
    before = floor_state()

    response = station_pack(client, order)

    assert messages_of(response) == ["Confirm every item before packing: item 2 (0 of 1)."]
    assert floor_state() == before


def test_confirm_pack_and_ship(order):
    client, packer = client_as("packer")

    first = confirm(client, order, 1, 2)
    confirm(client, order, 2, 1)
    packed = station_pack(client, order)
    shipped = station_post(
        client, order, step="ship", data={"carrier": "ups", "tracking_number": " 1z999aa10123456784 "}
    )

    order.refresh_from_db()
    assert messages_of(first) == ["Item 1 confirmed: 2 copies."]
    assert messages_of(packed) == [
        f"Order {order.ref} packed. Enter the carrier and tracking number to ship it."
    ]
    assert messages_of(shipped) == [f"Order {order.ref} shipped with UPS 1Z999AA10123456784."]
    assert (order.status, order.carrier, order.tracking_number) == ("shipped", "ups", "1Z999AA10123456784")
    assert order.shipped_at is not None
    assert list(order.events.filter(actor=packer).values_list("to_status", flat=True)) == [
        "packed",
        "shipped",
    ]
    assert sorted(PrintJob.objects.filter(order=order).values_list("copies_verified", flat=True)) == [1, 2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"carrier": "pigeon", "tracking_number": "1Z999"}, "Please check the form. carrier: Select a valid"),
        ({"carrier": "dhl", "tracking_number": "  "}, "Please check the form. tracking_number: This field"),
        ({"carrier": "dhl", "tracking_number": "<script>"}, "A tracking number is 5 to 64 letters"),
    ],
)
def test_shipping_with_a_bad_carrier_or_tracking_number_is_refused(order, data, message):
    client, _ = client_as("packer")
    confirm(client, order, 1, 2)
    confirm(client, order, 2, 1)
    station_pack(client, order)
    before = floor_state()

    response = station_post(client, order, step="ship", data=data)

    assert messages_of(response)[0].startswith(message)
    assert floor_state() == before


def _packed(client, order: Order) -> None:
    confirm(client, order, 1, 2)
    confirm(client, order, 2, 1)
    station_pack(client, order)


@pytest.mark.parametrize("scanned", ["the next box's slip", "the same slip, spaced"])
def test_an_order_code_scanned_as_the_tracking_number_is_refused(order, scanned):
    # the station asks for slips' barcodes; after "Mark packed" the cursor is in the tracking field
    client, _ = client_as("packer")
    _packed(client, order)
    following = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    code = following.ref if scanned == "the next box's slip" else " ".join(order.ref)
    before = floor_state()

    response = station_post(client, order, step="ship", data={"carrier": "ups", "tracking_number": code})

    # before: "Order … shipped with UPS PL-…", for good, and mailed to the customer with another order's ref
    assert messages_of(response) == [
        f"{code.upper()} is an order's code, not a tracking number: scan the carrier's label."
    ]
    assert floor_state() == before
    assert Order.objects.get(pk=order.pk).status == "packed"


@pytest.mark.parametrize("typed", ["as scanned", "grouped with spaces", "with dashes"])
def test_a_tracking_number_already_on_another_order_is_refused(order, typed):
    # given a box shipped with its carrier label
    shipped = pack_and_ship(ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    client, _ = client_as("packer")
    _packed(client, order)
    before = floor_state()
    number = shipped.tracking_number.lower()
    groups = [number[start : start + 4] for start in range(0, len(number), 4)]
    number = {"as scanned": number, "grouped with spaces": " ".join(groups), "with dashes": "-".join(groups)}[
        typed
    ]

    # when the same label is scanned or typed for the next box (under any carrier)
    response = station_post(client, order, step="ship", data={"carrier": "usps", "tracking_number": number})

    assert messages_of(response) == [
        f"Tracking number {number.upper()} is already order {shipped.ref}'s: scan this box's own label."
    ]
    assert floor_state() == before


def test_two_orders_cannot_hold_one_tracking_number_in_the_database(order):
    # what the station's check cannot see: two packers shipping with one label at once; the constraint refuses
    # the second commit
    shipped = pack_and_ship(ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(tracking_number=shipped.tracking_number)
    spaced = " ".join(shipped.tracking_number[start : start + 6] for start in range(0, 18, 6))
    with pytest.raises(IntegrityError), transaction.atomic():  # one parcel, however it is written
        Order.objects.filter(pk=order.pk).update(tracking_number=spaced)
    Order.objects.filter(pk=order.pk).update(tracking_number="")  # no tracking number: any number of orders


def test_the_carrier_is_chosen_not_preselected(order):
    client, _ = client_as("packer")
    _packed(client, order)

    page = client.get(reverse("staff:packing_order", args=[order.ref])).content.decode()

    # a required select with UPS first was always "chosen": a USPS label shipped as UPS
    assert re.search(r'<select name="carrier" id="carrier" required>\s*<option value="">', page)


def test_shipping_an_order_that_is_not_packed_is_refused(order):
    client, _ = client_as("packer")
    seen = station_form(station_page(client, order), order=order, step="pack")  # its page offers a pack
    before = floor_state()

    response = client.post(
        reverse("staff:packing_ship", args=[order.ref]),
        {**seen, "carrier": "usps", "tracking_number": "9400111"},
        follow=True,
    )

    assert messages_of(response) == [f"Order {order.ref} is ready to pack; pack it before shipping."]
    assert floor_state() == before


def test_a_reprint_counts_for_the_copies_its_original_lost():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    reprint = reprints.job_reprint(job_id=original.pk, actor=person("technician"), reason="damaged", copies=1)
    job_walk(reprint, "printed")
    from lab.production.tracking import order_check_printed

    assert order_check_printed(order_id=order.pk)
    client, _ = client_as("packer")

    confirm(client, order, 1, 3)

    original.refresh_from_db()
    reprint.refresh_from_db()
    assert (reprint.copies_verified, original.copies_verified) == (1, 2)
    assert station_pack(client, order, follow=False).status_code == 302
    order.refresh_from_db()
    assert order.status == "packed"


def test_the_packers_count_does_not_overrule_the_quality_checks_rejection():
    """The floor's quality check found one of two prints bad; the packer counts the two prints on the table.
    Before, the count was taken and the box packed with the rejected print."""
    from lab.production.tracking import order_check_printed

    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    original = PrintJob.objects.get(order=order)
    reprints.job_verify_copies(job_id=original.pk, actor=person("technician"), copies=1)
    client, _ = client_as("packer")
    before = floor_state()

    refused = confirm(client, order, 1, 2)

    assert messages_of(refused) == ["Item 1 has 1 good prints of 2 after the quality check: 1 to reprint."]
    assert floor_state() == before
    # ... nor does a quality check of the packer's own, from the job's page (before, it wiped the rejection,
    # and "Mark packed" packed the rejected print)
    overruled = client.post(reverse("staff:job_verify", args=[original.pk]), {"copies": "2"}, follow=True)
    assert "were rejected at a quality check" in " ".join(messages_of(overruled))
    assert floor_state() == before
    station_pack(client, order)
    assert Order.objects.get(pk=order.pk).status == "ready_to_pack"

    # the rejected print is reprinted: the good one and its replacement are the item's two copies
    reprint = reprints.job_reprint(job_id=original.pk, actor=person("technician"), reason="damaged", copies=1)
    job_walk(reprint, "printed")
    assert order_check_printed(order_id=order.pk)
    confirm(client, order, 1, 2)
    reprint.refresh_from_db()
    original.refresh_from_db()
    assert (reprint.copies_verified, original.copies_verified, original.copies_rejected) == (1, 1, 1)
    assert station_pack(client, order, follow=False).status_code == 302
    assert Order.objects.get(pk=order.pk).status == "packed"


@pytest.mark.parametrize(("reason", "reprinted", "still_counted"), [("colour", 3, 0), ("damaged", 1, 2)])
def test_a_reprint_after_the_count_undoes_the_count_of_the_copies_it_replaces(
    reason, reprinted, still_counted
):
    """The packer counted the item, then a technician rejected prints of it: the box must not be packed
    until the replacements are counted (before, the earlier count stood and the order packed without them)."""
    from lab.production.tracking import order_check_printed

    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    client, _ = client_as("packer")
    confirm(client, order, 1, 3)
    original.refresh_from_db()
    assert original.copies_verified == 3

    reprint = reprints.job_reprint(
        job_id=original.pk, actor=person("technician"), reason=reason, copies=reprinted
    )
    original.refresh_from_db()
    assert original.copies_verified == still_counted
    job_walk(reprint, "printed")
    assert order_check_printed(order_id=order.pk)

    response = station_pack(client, order)
    order.refresh_from_db()
    assert order.status == "ready_to_pack"
    assert f"item 1 ({still_counted} of 3)" in " ".join(messages_of(response))

    confirm(client, order, 1, 3)  # the replacements counted with what is left of the originals
    reprint.refresh_from_db()
    original.refresh_from_db()
    assert (reprint.copies_verified, original.copies_verified) == (reprinted, 3 - reprinted)
    assert station_pack(client, order, follow=False).status_code == 302
    order.refresh_from_db()
    assert order.status == "packed"


def test_slip_pdf_is_rendered_on_demand_then_served_from_storage(order):
    client, _ = client_as("packer")
    assert PackingSlip.objects.count() == 0

    first = client.get(reverse("staff:slip", args=[order.ref]))
    second = client.get(reverse("staff:slip", args=[order.ref]))

    assert first.status_code == 200
    assert first["Content-Type"] == "application/pdf"
    assert first["Content-Disposition"] == f'inline; filename="packing-slip-{order.ref}.pdf"'
    assert first["Cache-Control"] == "no-store"
    assert first.content.startswith(b"%PDF")
    assert second.content == bytes(PackingSlip.objects.get(order=order).pdf) == first.content


def test_a_shipped_orders_slip_is_served_the_day_it_ships_and_not_later(order, settings):
    shipped = pack_and_ship(order)
    client, _ = client_as("packer")

    # a label torn at the door is reprinted the same day
    assert client.get(reverse("staff:slip", args=[shipped.ref]))["Content-Type"] == "application/pdf"

    # later the slip is only a name and an address, and any order's ref is on the floor's job pages: before,
    # every shipped customer's slip was served to any packer who asked, for good
    Order.objects.filter(pk=shipped.pk).update(
        shipped_at=timezone.now() - timedelta(hours=settings.PACKING_SHIPPED_SLIP_HOURS, minutes=1)
    )
    response = client.get(reverse("staff:slip", args=[shipped.ref]), follow=True)
    assert not response["Content-Type"].startswith("application/pdf")
    assert messages_of(response) == [
        f"Order {shipped.ref} shipped more than 24 h ago; its slip is no longer served at the station."
    ]


# `none`: a link a desktop chat or mail client handed to the browser (Chromium sends it as for a typed URL)
@pytest.mark.parametrize("site", ["cross-site", "same-site", "none"])
def test_a_slip_link_another_site_opened_serves_nothing_and_leaves_the_address_changeable(order, site):
    # given a packer signed in, and a link to the day's slips (or one order's) in a chat or an e-mail: the
    # browser sends the packer's session with it
    client, _ = client_as("packer")

    for url in (reverse("staff:day_slips"), reverse("staff:slip", args=[order.ref])):
        response = client.get(url, headers={"Sec-Fetch-Site": site}, follow=True)

        # then no slip is served, and the order's address is not marked as on paper (before: every order
        # ready to pack was marked, and its customer's address changes refused)
        assert not response["Content-Type"].startswith("application/pdf")
        assert messages_of(response) == [
            "That slip link was opened from outside the lab; print slips from the station."
        ]
    order.refresh_from_db()
    assert order.slip_served_at is None
    assert not PackingSlip.objects.exists()

    # and the station's own link still serves it
    own = client.get(reverse("staff:day_slips"), headers={"Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200
    order.refresh_from_db()
    assert order.slip_served_at is not None


def _slip_url(which: str, order: Order) -> str:
    return reverse("staff:day_slips") if which == "day" else reverse("staff:slip", args=[order.ref])


@pytest.mark.parametrize("which", ["day", "order"])
def test_a_slip_link_another_site_opened_serves_nothing_after_the_packer_signs_in(order, which):
    # given the shared station signed out (its idle timeout), and a link to the day's slips (or one order's)
    # opened from a chat: it lands on the login page with the slip as `next`
    client, packer = Client(), person("packer")
    url = _slip_url(which, order)
    to_login = client.get(url, headers={"Sec-Fetch-Site": "cross-site"})
    assert to_login["Location"] == f"{reverse('staff:login')}?next={url.replace('/', '%2F')}"
    client.get(to_login["Location"], headers={"Sec-Fetch-Site": "cross-site"})

    # when the packer signs in on the lab's own form, and the browser follows where it is sent (same-origin)
    signed_in = client.post(
        to_login["Location"],
        {"email": packer.email, "password": PASSWORD, "next": url},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    landed = client.get(signed_in["Location"], headers={"Sec-Fetch-Site": "same-origin"})

    # then they land on the station, and no slip is served nor any address marked as on paper (before: the
    # login sent them on to the slip, and its same-origin request passed the check of where it started)
    assert (signed_in.status_code, signed_in["Location"]) == (302, reverse("staff:packing"))
    assert (landed.status_code, landed["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert not Order.objects.filter(slip_served_at__isnull=False).exists()
    assert not PackingSlip.objects.exists()


@pytest.mark.parametrize(
    "next_",
    [
        "/lab/packing/slips.pdf",
        "/lab/packing/slips.pdf?day=today",
        "/lab/packing/slips%2Epdf",
        "/lab//packing/slips.pdf",
        "/lab/board/../packing/slips.pdf",
        "/lab/\\packing/slips.pdf",
        "/lab/packing/PL-ANYREF/slip.pdf",
        "/lab/packing/PL-ANYREF%2Fslip.pdf",
    ],
)
def test_a_signed_in_packer_at_the_login_page_is_not_sent_on_to_a_slip(order, next_):
    client, _ = client_as("packer")

    response = client.get(reverse("staff:login"), {"next": next_})

    assert (response.status_code, response["Location"]) == (302, reverse("staff:packing"))
    assert not Order.objects.filter(slip_served_at__isnull=False).exists()


def test_day_slips_hold_every_order_ready_to_pack(order):
    other = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    packing_slip_render(order_id=other.pk)
    client, _ = client_as("supervisor")

    response = client.get(reverse("staff:day_slips"))

    assert response.status_code == 200
    assert response["X-Slip-Count"] == "2"
    assert response.content.startswith(b"%PDF")
    assert len(re.findall(rb"/Type /Page\b", response.content)) == 2
    for ref in (order.ref, other.ref):
        assert ref.encode() in response.content  # the outline names each order


def test_a_days_slips_that_fail_to_render_mark_no_order_as_printed(order, monkeypatch):
    # given two orders ready to pack, and the render of the day's PDF dying (an error, a worker killed)
    other = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])

    def render_dies(**_: object) -> bytes:
        raise MemoryError("the worker ran out of memory")

    monkeypatch.setattr("lab.packing.station.render_slips", render_dies)

    # when the packer asks for the day's slips
    with pytest.raises(MemoryError):
        station.day_slips_pdf(actor=person("packer"))

    # then no order is marked as having had its slip printed (before, both were, committed before the render)
    served = dict(Order.objects.filter(pk__in=[order.pk, other.pk]).values_list("pk", "slip_served_at"))
    assert served == {order.pk: None, other.pk: None}
    # and back on the floor for a reprint, the customer still changes its address (before: 409
    # order_address_locked, for a slip nobody printed)
    order_move(order, "in_production")
    address = {**order.shipping_address, "line1": "12 New Street"}
    shipping_address_change(order=order, address=address, actor=None, actor_kind="guest")
    order.refresh_from_db()
    assert (order.shipping_address["line1"], order.address_is_sealed) == ("12 New Street", True)


@pytest.mark.django_db(transaction=True)
def test_other_packers_work_on_the_orders_while_the_days_slips_render(order, monkeypatch):
    # given two orders ready to pack, and the day's PDF held mid-render until the test lets it go
    other = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    packer, other_packer = person("packer"), person("packer")
    rendering, release = threading.Event(), threading.Event()

    def render_held(*, slips):
        rendering.set()
        assert release.wait(timeout=30)
        return render_slips(slips=slips)

    monkeypatch.setattr("lab.packing.station.render_slips", render_held)
    days: list[station.DaySlips] = []
    confirmed: list[station.ChecklistLine] = []
    seen = station_token(order, packer=other_packer, position=1)

    def on_its_own_connection(work: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            try:
                work()
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    day = on_its_own_connection(lambda: days.append(station.day_slips_pdf(actor=packer)))
    assert rendering.wait(timeout=10)

    # when another packer confirms an item of one of those orders while the PDF renders
    confirm = on_its_own_connection(
        lambda: confirmed.append(
            station.item_confirm(code=order.ref, position=1, copies_counted=2, actor=other_packer, seen=seen)
        )
    )
    confirm.join(timeout=10)
    confirmed_during_the_render = not confirm.is_alive()
    release.set()
    day.join(timeout=30)
    confirm.join(timeout=30)

    # then the count went through without waiting for the render (before, it waited for the render's locks)
    assert confirmed_during_the_render
    assert [(line.position, line.copies_confirmed) for line in confirmed] == [(1, 2)]
    # and the day's slips are made, both orders marked as served once the PDF exists
    assert [(slips.count, slips.refused) for slips in days] == [(2, [])]
    assert days[0].pdf.startswith(b"%PDF")
    served = Order.objects.filter(pk__in=[order.pk, other.pk], slip_served_at__isnull=False)
    assert served.count() == 2


def test_an_order_whose_address_changed_while_the_days_slips_rendered_is_not_marked_as_printed(
    order, monkeypatch
):
    # given two orders ready to pack; while the day's PDF renders, one is held and its customer changes its
    # address (allowed: no slip was served yet)
    other = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    rendered: list[list[str]] = []

    def render_while_the_address_changes(*, slips):
        rendered.append([slip.order_ref for slip in slips])
        if len(rendered) == 1:
            order_move(order, "on_hold")
            address = {**order.shipping_address, "line1": "12 New Street"}
            shipping_address_change(order=order, address=address, actor=None, actor_kind="guest")
        return render_slips(slips=slips)

    monkeypatch.setattr("lab.packing.station.render_slips", render_while_the_address_changes)

    # when the packer asks for the day's slips
    day = station.day_slips_pdf(actor=person("packer"))

    # then the PDF with its old address is not handed out: the day is rendered again without it (it is on
    # hold now), and only the other order is marked as served (before, both were, the held one for a slip
    # with the address it no longer has)
    assert rendered == [[order.ref, other.ref], [other.ref]]  # oldest first
    assert (day.count, day.refused) == (1, [])
    assert order.ref.encode() not in day.pdf and other.ref.encode() in day.pdf
    served = dict(Order.objects.filter(pk__in=[order.pk, other.pk]).values_list("pk", "slip_served_at"))
    assert served[order.pk] is None and served[other.pk] is not None


def test_days_slips_whose_orders_change_during_every_render_are_not_handed_out(order, monkeypatch):
    # given an order whose items change during each render of the day's PDF
    other = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    renders: list[int] = []

    def render_while_the_items_change(*, slips):
        renders.append(len(slips))
        OrderItem.objects.filter(order=other).update(copies=F("copies") + 1)
        return render_slips(slips=slips)

    monkeypatch.setattr("lab.packing.station.render_slips", render_while_the_items_change)

    # when the packer asks for the day's slips
    with pytest.raises(SlipOutdated):
        station.day_slips_pdf(actor=person("packer"))

    # then it was rendered SLIP_RENDER_ATTEMPTS times and no order is marked as served
    assert renders == [2] * SLIP_RENDER_ATTEMPTS
    served = dict(Order.objects.filter(pk__in=[order.pk, other.pk]).values_list("pk", "slip_served_at"))
    assert served == {order.pk: None, other.pk: None}


def test_day_slips_without_orders_say_so():
    client, _ = client_as("packer")

    response = client.get(reverse("staff:day_slips"), follow=True)

    assert messages_of(response) == ["No order is ready to pack."]


def test_a_technician_cannot_use_the_packing_station(order):
    client, _ = client_as("technician")
    before = floor_state()

    assert client.get(reverse("staff:packing")).status_code == 403
    assert confirm(client, order, 1, 2, seen=NO_PAGE).status_code == 403
    assert client.get(reverse("staff:slip", args=[order.ref])).status_code == 403
    assert floor_state() == before


def test_a_reprint_cancelled_as_not_needed_gives_back_only_the_rejection_it_made():
    """A reprint rejects the prints it replaces; cancelled as not needed, it must give them back. Before, they
    stayed rejected, and the station refused the item's count until someone reprinted prints nobody had
    found bad. What the quality check rejected stays rejected."""
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    technician = person("technician")
    reprints.job_verify_copies(job_id=original.pk, actor=technician, copies=2)  # one print found bad
    reprint = reprints.job_reprint(job_id=original.pk, actor=technician, reason="damaged", copies=2)
    original.refresh_from_db()
    assert original.copies_rejected == 2

    actions.job_cancel(job_id=reprint.pk, actor=technician, note="not needed after all")

    original.refresh_from_db()
    assert (original.copies_rejected, original.copies_rejected_at_check) == (1, 1)
    client, _ = client_as("packer")
    refused = confirm(client, order, 1, 3)
    assert messages_of(refused) == ["Item 1 has 2 good prints of 3 after the quality check: 1 to reprint."]


def test_slips_open_in_the_browser_and_are_never_saved_to_the_stations_disk(order):
    # An attachment lands in the shared station's Downloads folder: every customer's name and address on its
    # disk for good, past the slip window and past erasure.
    client, _ = client_as("packer")

    slip = client.get(reverse("staff:slip", args=[order.ref]))
    day = client.get(reverse("staff:day_slips"))

    for response, filename in ((slip, f"packing-slip-{order.ref}.pdf"), (day, "packing-slips.pdf")):
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert response["Content-Disposition"].startswith("inline")
        assert response["Content-Disposition"] == f'inline; filename="{filename}"'
        assert response["Cache-Control"] == "no-store"
        # Chromium's viewer is an <embed> styled inline: object-src 'none' (or a default-src / style-src
        # without 'unsafe-inline') leaves a top-level PDF blocked or blank
        policy = response["Content-Security-Policy"]
        directives = {directive.split()[0] for directive in policy.split("; ")}
        assert not directives & {"object-src", "default-src", "style-src", "sandbox"}, policy
        assert "frame-ancestors 'none'" in policy


def test_a_check_after_a_reprint_keeps_what_an_earlier_check_rejected_once_the_reprint_is_cancelled():
    """The second check cannot look at the prints the reprint replaces, one of which the first check rejected:
    before, it wiped that rejection, and cancelling the reprint let the rejected print be packed."""
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 3)])
    original = PrintJob.objects.get(order=order)
    technician = person("technician")
    reprints.job_verify_copies(job_id=original.pk, actor=technician, copies=2)  # one print found bad
    reprint = reprints.job_reprint(job_id=original.pk, actor=technician, reason="damaged", copies=2)
    reprints.job_verify_copies(job_id=original.pk, actor=technician, copies=1)  # the print not replaced: good

    actions.job_cancel(job_id=reprint.pk, actor=technician, note="not needed after all")

    original.refresh_from_db()
    assert (original.copies_rejected, original.copies_rejected_at_check) == (1, 1)
    client, _ = client_as("packer")
    refused = confirm(client, order, 1, 3)
    assert messages_of(refused) == ["Item 1 has 2 good prints of 3 after the quality check: 1 to reprint."]
