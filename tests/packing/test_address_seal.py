"""A shipping address written in the database alone labels no box (lab/orders/models.py: the address seal).

As a database administrator would try it: SQL sends a paid order's prints to an address of theirs, or makes a
parcel's order one collected at the counter (the seal covers the shipping method too). The slip, the box's
label, is not made for it, by the worker or at the packing station, and the station neither ships nor hands
the box over; the lab's own orders, and a shipped order's address emptied by its erasure, still get theirs."""

from __future__ import annotations

import importlib
import io
import json
import threading
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import DatabaseError, OperationalError, connection
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.models import Model
from django.urls import reverse
from pypdf import PdfReader

from lab.lib.errors import Conflict
from lab.lib.seals import seal_holds
from lab.orders.models import Order, address_seal
from lab.packing import station
from lab.packing.errors import PackingError
from lab.packing.models import PackingSlip
from lab.packing.services import (
    packing_slip_render,
    shipping_address_change,
    slip_data_for,
    slip_is_sealed,
)
from lab.packing.slip import render_slip
from tests.builders import (
    client_as,
    hotfolder_printer,
    messages_of,
    order_for,
    order_move,
    pack_and_ship,
    person,
    ready_to_pack_order,
)
from tests.builders.packing_station import station_token
from tests.support.dba import dba
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db
THEIRS = {"name": "Someone Else", "line1": "9 Drop Box Lane", "city": "Elsewhere", "country": "US"}


@pytest.fixture
def order() -> Order:
    hotfolder_printer("minilab", sizes=["4x6"])
    return ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])


def dba_sets_address(order: Order, address: dict[str, str]) -> None:
    dba("UPDATE orders_order SET shipping_address = %s WHERE id = %s", json.dumps(address), order.pk)


def test_an_address_written_in_the_database_gets_no_slip(order):
    dba_sets_address(order, THEIRS)

    with pytest.raises(Conflict, match="changed outside the lab"):
        packing_slip_render(order_id=order.pk)
    client, _ = client_as("packer")
    response = client.get(reverse("staff:slip", args=[order.ref]), follow=True)

    assert not response["Content-Type"].startswith("application/pdf")
    assert any("changed outside the lab" in message for message in messages_of(response))
    assert not PackingSlip.objects.filter(order=order).exists()


def test_an_order_with_an_address_written_in_the_database_does_not_hold_up_the_days_slips(order):
    # given two orders ready to pack, one of them readdressed in SQL
    other = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    dba_sets_address(order, THEIRS)
    client, _ = client_as("packer")

    response = client.get(reverse("staff:day_slips"))

    # then the other order's slip is printed and the readdressed one is named, without a slip (before: no
    # PDF at all, the whole station's day held up by one order)
    assert response.status_code == 200
    assert (response["X-Slip-Count"], response["X-Slips-Refused"]) == ("1", order.ref)
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert other.ref in text
    assert THEIRS["line1"] not in text
    station = client.get(reverse("staff:packing"))
    assert messages_of(station) == [
        f"No slip for {order.ref}: its shipping address was changed outside the lab. Ask a supervisor."
    ]


def test_the_labs_own_and_a_shipped_then_erased_orders_address_get_their_slip(order):
    assert packing_slip_render(order_id=order.pk).pages == 1
    shipped = pack_and_ship(order)
    # what an erasure leaves on a shipped order (erasure is refused from paid through packed): no address to
    # send anything to, and no seal
    dba("UPDATE orders_order SET shipping_address = '{}', address_sealed = '' WHERE id = %s", shipped.pk)
    shipped.refresh_from_db()

    assert slip_data_for(shipped).ship_to == ["-"]
    assert packing_slip_render(order_id=shipped.pk).pages == 1
    assert station.slip_pdf(code=shipped.ref, actor=person("packer")).startswith(b"%PDF")


def test_an_address_emptied_in_the_database_at_the_station_gets_no_slip(order):
    """No lab code leaves an order still to ship without an address (every order is placed with one, and an
    erasure is refused from paid through packed). Before, an empty address passed the seal as an erasure's."""
    dba_sets_address(order, {})
    order.refresh_from_db()

    with pytest.raises(Conflict) as no_slip:
        slip_data_for(order)
    with pytest.raises(Conflict) as not_rendered:
        packing_slip_render(order_id=order.pk)
    with pytest.raises(Conflict) as no_day_slips:
        station.day_slips_pdf(actor=person("packer"))

    codes = {error.value.code for error in (no_slip, not_rendered, no_day_slips)}
    assert codes == {PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB}
    assert not PackingSlip.objects.filter(order=order).exists()
    assert Order.objects.get(pk=order.pk).slip_served_at is None


def _slip_text(pdf: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize("how", ["another order's slip moved here", "a slip of their own making"])
def test_a_stored_slip_written_in_the_database_is_not_served_and_the_labs_own_is_made_again(order, how):
    """The stored slip is what the packer prints and puts in the box. Before, a database administrator who
    moved their own order's slip (PDF and seal) onto a customer's order, or stored a PDF rendered with their
    address (render_slip needs no secret), had the customer's box labelled for them."""
    own = packing_slip_render(order_id=order.pk)
    theirs = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])  # the administrator's own order
    theirs.shipping_address = THEIRS
    theirs.save(update_fields=["shipping_address"])  # through the lab: sealed
    their_slip = packing_slip_render(order_id=theirs.pk)
    if how == "another order's slip moved here":
        dba(
            "UPDATE packing_packingslip SET pdf = %s, seal = %s WHERE order_id = %s",
            bytes(their_slip.pdf),
            their_slip.seal,
            order.pk,
        )
    else:
        forged = render_slip(slip=replace(slip_data_for(order), ship_to=["Someone Else", "9 Drop Box Lane"]))
        dba("UPDATE packing_packingslip SET pdf = %s WHERE order_id = %s", forged, order.pk)
    assert "Someone Else" in _slip_text(bytes(PackingSlip.objects.get(order=order).pdf))
    client, _ = client_as("packer")

    served = client.get(reverse("staff:slip", args=[order.ref]))

    assert served.status_code == 200 and served["Content-Type"] == "application/pdf"
    text = _slip_text(served.content)
    assert order.ref in text and "Someone Else" not in text
    assert order.shipping_address["name"] in text
    stored = PackingSlip.objects.get(order=order)  # made again from the order, as the lab first made it
    assert bytes(stored.pdf) == served.content == bytes(own.pdf) and slip_is_sealed(stored)


def _packed_at_the_station(order: Order) -> None:
    packer = person("packer")
    for item in order.items.all():
        seen = station_token(order, packer=packer, position=item.position)
        station.item_confirm(
            code=order.ref, position=item.position, copies_counted=item.copies, actor=packer, seen=seen
        )
    station.order_pack(code=order.ref, actor=packer, seen=station_token(order, packer=packer, step="pack"))


def test_a_parcel_made_a_pickup_in_the_database_gets_no_slip_and_is_not_handed_over(order):
    """Before, the seal covered the address alone: SQL that set a packed express order's method to "pickup"
    had the station show it as collected at the counter, its slip naming the customer, and hand the box over
    to whoever gave that name."""
    # given a packed order the customer paid to have posted express (the lab's own save seals the method)
    order.shipping_method = Order.ShippingMethod.EXPRESS
    order.save(update_fields=["shipping_method"])
    assert Order.objects.get(pk=order.pk).address_is_sealed
    _packed_at_the_station(order)

    # when a database administrator makes it a pickup
    dba("UPDATE orders_order SET shipping_method = 'pickup' WHERE id = %s", order.pk)
    order.refresh_from_db()

    # then no slip is made for it, and the station neither hands it over nor ships it
    with pytest.raises(Conflict) as no_slip:
        slip_data_for(order)
    packer = person("packer")
    seen = station_token(order, packer=packer, step="unpack")  # the packed order's page, either way
    with pytest.raises(Conflict) as not_handed_over:
        station.order_hand_over(code=order.ref, actor=packer, seen=seen)
    with pytest.raises(Conflict) as not_shipped:
        station.order_ship(
            code=order.ref, actor=packer, carrier="ups", tracking_number="1Z999AA10123456784", seen=seen
        )
    codes = {error.value.code for error in (no_slip, not_handed_over, not_shipped)}
    assert codes == {PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB}
    assert "changed outside the lab" in not_handed_over.value.message
    order.refresh_from_db()
    assert (order.status, order.shipped_at) == ("packed", None)


@pytest.mark.parametrize("method", ["pickup", "express"])
def test_a_parcel_whose_address_is_emptied_in_the_database_is_neither_handed_over_nor_shipped(order, method):
    """Before, an empty address passed the seal (as an erasure's), and the method's seal with it: SQL that
    emptied a packed express order's address and made it a pickup had the station hand the box over, its slip
    naming no one, and the customer e-mailed that they had collected it."""
    # given a packed order the customer paid to have posted express
    order.shipping_method = Order.ShippingMethod.EXPRESS
    order.save(update_fields=["shipping_method"])
    _packed_at_the_station(order)

    # when a database administrator empties its address (and makes it a pickup, or leaves it express)
    dba(
        "UPDATE orders_order SET shipping_method = %s, shipping_address = '{}' WHERE id = %s",
        method,
        order.pk,
    )
    order.refresh_from_db()

    # then no slip is made for it, and the station neither hands it over nor ships it
    with pytest.raises(Conflict) as no_slip:
        slip_data_for(order)
    packer = person("packer")
    seen = station_token(order, packer=packer, step="unpack")  # the packed order's page, either way
    with pytest.raises(Conflict) as not_handed_over:
        station.order_hand_over(code=order.ref, actor=packer, seen=seen)
    with pytest.raises(Conflict) as not_shipped:
        station.order_ship(
            code=order.ref, actor=packer, carrier="ups", tracking_number="1Z999AA10123456784", seen=seen
        )
    codes = {error.value.code for error in (no_slip, not_handed_over, not_shipped)}
    assert codes == {PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB}
    assert "changed outside the lab; it is not handed over" in not_handed_over.value.message
    order.refresh_from_db()
    assert (order.status, order.shipped_at, order.tracking_number) == ("packed", None, "")


def test_a_slip_rendered_for_the_address_before_a_change_and_written_back_is_not_served():
    """A stored slip's seal covers the order's address seal as it is now. Before, it covered the order's id
    and the PDF only: a database administrator who kept a copy of the slip rendered for the old address and
    wrote it back after the customer's change had the box labelled for the old address."""
    # given an order whose slip the worker rendered, a copy of that slip's row kept aside
    order = order_move(order_for(None), "paid", "in_production", "ready_to_pack")
    old = packing_slip_render(order_id=order.pk)
    kept = (bytes(old.pdf), old.pages, old.seal)
    assert "Lens Lane" in _slip_text(kept[0])
    # and the customer's change of address while the order was back on the floor (a reprint)
    order_move(order, "in_production")
    shipping_address_change(order=order, address=THEIRS, actor=None, actor_kind="guest")
    order_move(order, "ready_to_pack")

    # when the old slip's row is written back
    dba(
        "INSERT INTO packing_packingslip (order_id, pdf, pages, rendered_at, seal) "
        "VALUES (%s, %s, %s, now(), %s)",
        order.pk,
        *kept,
    )

    # then the station serves a slip made again for the address the order has now
    served = station.slip_pdf(code=order.ref, actor=person("packer"))
    assert served != kept[0]
    text = _slip_text(served)
    assert THEIRS["line1"] in text and "Lens Lane" not in text
    assert slip_is_sealed(PackingSlip.objects.get(order=order))


def test_a_guest_orders_address_and_seal_swapped_onto_another_orders_row_get_no_slip():
    """The seal names its order's row. Before, it covered the ref, customer, address and method only: a
    database administrator who swapped the ref, guest e-mail, guest token, address, method and seal of their
    own guest order with a customer's paid one had that row (whose photos are bound to it by its key, so they
    still belonged to it) carry their ref and address, sealed, and the station posted the customer's prints
    to them."""
    # given the administrator's own guest order, sealed for their address, and a customer's, ready to pack
    theirs = order_for(None, guest_email="dba@example.com")
    theirs.shipping_address = THEIRS
    theirs.save(update_fields=["shipping_address"])  # through the lab: sealed
    victim = order_for(None, guest_email="customer@example.com")
    order_move(victim, "paid", "in_production", "ready_to_pack")
    assert slip_data_for(victim).order_ref == victim.ref

    # when the administrator swaps the two orders' identities in the database (through a spare ref: the
    # ref is unique)
    columns = (
        "ref",
        "guest_email",
        "guest_token_hash",
        "shipping_address",
        "shipping_method",
        "address_sealed",
    )
    rows = {each.pk: Order.objects.values_list(*columns).get(pk=each.pk) for each in (theirs, victim)}
    dba("UPDATE orders_order SET ref = 'PL-SPARE0000000' WHERE id = %s", theirs.pk)
    for row, other in ((victim.pk, theirs.pk), (theirs.pk, victim.pk)):
        ref, email, token, address, method, seal = rows[other]
        dba(
            "UPDATE orders_order SET ref = %s, guest_email = %s, guest_token_hash = %s, "
            "shipping_address = %s, shipping_method = %s, address_sealed = %s WHERE id = %s",
            ref,
            email,
            token,
            json.dumps(address),
            method,
            seal,
            row,
        )
    swapped = Order.objects.get(pk=victim.pk)
    assert (swapped.ref, swapped.shipping_address, swapped.status) == (theirs.ref, THEIRS, "ready_to_pack")

    # then no slip is made for the customer's row (before: one addressed to the administrator)
    with pytest.raises(Conflict) as no_slip:
        slip_data_for(swapped)
    assert no_slip.value.code == PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB
    with pytest.raises(Conflict) as not_rendered:
        packing_slip_render(order_id=victim.pk)
    assert not_rendered.value.code == PackingError.ADDRESS_CHANGED_OUTSIDE_THE_LAB
    assert not PackingSlip.objects.filter(order_id=victim.pk).exists()
    # and neither row's seal holds
    assert not Order.objects.get(pk=theirs.pk).address_is_sealed


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_seals_the_method_of_the_orders_whose_address_seal_holds_and_no_other():
    # given two orders sealed as before (the address alone), one of them then readdressed in SQL
    kept, readdressed = order_for(None), order_for(None)
    for each in (kept, readdressed):
        seal = address_seal(ref=each.ref, customer_id=each.customer_id, address=each.shipping_address)
        dba("UPDATE orders_order SET address_sealed = %s WHERE id = %s", seal, each.pk)
    dba_sets_address(readdressed, THEIRS)
    latest = leaf_migrations("orders")

    # when the lab is upgraded
    migrate_to([("orders", "0012_shipped_event_notes_without_tracking_numbers")])
    migrate_to(latest)

    # then the first is sealed with its method, which SQL can no longer change unseen; the other stays refused
    assert Order.objects.get(pk=kept.pk).address_is_sealed
    assert not Order.objects.get(pk=readdressed.pk).address_is_sealed
    dba("UPDATE orders_order SET shipping_method = 'pickup' WHERE id = %s", kept.pk)
    assert not Order.objects.get(pk=kept.pk).address_is_sealed


METHOD_SEALED = "0013_order_shipping_method_sealed_slip_served_at"


def _sealed_the_old_way(order: Order) -> None:
    """As a web process of the version before orders/0013 sealed it: the address alone."""
    seal = address_seal(ref=order.ref, customer_id=order.customer_id, address=order.shipping_address)
    dba("UPDATE orders_order SET address_sealed = %s WHERE id = %s", seal, order.pk)


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_seals_the_method_in_batches_that_each_commit_and_runs_again_after_a_failure(monkeypatch):
    # given three orders sealed as before, an upgrade that seals one order per batch, and the database
    # refusing, part-way, the second order's new seal
    first, second, third = order_for(None), order_for(None), order_for(None)
    for each in (first, second, third):
        _sealed_the_old_way(each)
    monkeypatch.setattr(importlib.import_module(f"lab.orders.migrations.{METHOD_SEALED}"), "BATCH", 1)
    latest = leaf_migrations("orders")
    migrate_to([("orders", "0012_shipped_event_notes_without_tracking_numbers")])
    try:
        dba(
            "CREATE FUNCTION test_refuse_a_seal() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'the upgrade stops here'; END $$"
        )
        dba(
            "CREATE TRIGGER test_refuse_a_seal BEFORE UPDATE OF address_sealed ON orders_order FOR EACH ROW "
            f"WHEN (NEW.id = {int(second.pk)}) EXECUTE FUNCTION test_refuse_a_seal()"
        )

        # when the upgrade stops there
        with pytest.raises(DatabaseError, match="the upgrade stops here"):
            migrate_to(latest)

        # then the batch before it is committed, sealed with its method (before, the whole re-seal was one
        # transaction, under the ALTER TABLE's lock on every order, and nothing was kept)
        assert _sealed_the_old_way_only([first.pk, second.pk, third.pk]) == {
            first.pk: (False, True),
            second.pk: (True, False),
            third.pk: (True, False),
        }

        # and when it is run again, once the cause is gone, it ends: each order is sealed with its method
        dba("DROP TRIGGER test_refuse_a_seal ON orders_order")
        dba("DROP FUNCTION test_refuse_a_seal()")
        migrate_to(latest)
        assert all(Order.objects.get(pk=each.pk).address_is_sealed for each in (first, second, third))
    finally:
        dba("DROP TRIGGER IF EXISTS test_refuse_a_seal ON orders_order")
        dba("DROP FUNCTION IF EXISTS test_refuse_a_seal()")
        migrate_to(latest)


@pytest.mark.django_db(transaction=True)
def test_orders_a_previous_version_sealed_after_the_upgrade_are_sealed_again_by_the_command():
    # given the lab upgraded, and then orders a web process of the previous version sealed as it did (the
    # address alone): one as it placed it, one then readdressed in SQL, and one placed by a host whose clock
    # was behind, its created_at long before the upgrade
    latest = leaf_migrations("orders")
    migrate_to([("orders", "0012_shipped_event_notes_without_tracking_numbers")])
    migrate_to(latest)
    placed, readdressed, behind = order_for(None), order_for(None), order_for(None)
    for each in (placed, readdressed, behind):
        _sealed_the_old_way(each)
    dba_sets_address(readdressed, THEIRS)
    dba("UPDATE orders_order SET created_at = '2000-01-01T00:00:00Z' WHERE id = %s", behind.pk)
    with pytest.raises(Conflict, match="changed outside the lab"):
        slip_data_for(Order.objects.get(pk=placed.pk))

    # when the operator runs the command, once no process of the previous version is left
    out = io.StringIO()
    call_command("order_seals_upgrade", stdout=out)

    # then the parcels are sealed with their method and get their slip, whenever the host's clock said they
    # were placed (before, the one placed by the host behind was outside the command's window, refused for
    # good and not named); the readdressed one stays refused and is named
    printed = out.getvalue()
    assert f"sealed with its method {placed.ref} (standard)" in printed
    assert f"sealed with its method {behind.ref} (standard)" in printed
    assert f"left refused {readdressed.ref}" in printed
    for each in (placed, behind):
        assert slip_data_for(Order.objects.get(pk=each.pk)).order_ref == each.ref
    assert not Order.objects.get(pk=readdressed.pk).address_is_sealed

    # and a second run seals nothing more
    again = io.StringIO()
    call_command("order_seals_upgrade", stdout=again)
    assert "0 order(s) sealed again with their method" in again.getvalue()
    assert placed.ref not in again.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_pickup_sealed_the_old_way_is_sealed_again_by_the_command_only_when_the_operator_names_it():
    # given the lab upgraded; a pickup a web process of the previous version placed meanwhile (sealed the
    # address alone); and a parcel whose old seal, kept from before the upgrade, a DBA wrote back with the
    # method "pickup" (the old seal covers no method, so both look the same in the database)
    latest = leaf_migrations("orders")
    migrate_to([("orders", "0012_shipped_event_notes_without_tracking_numbers")])
    migrate_to(latest)
    genuine, moved = order_for(None), order_for(None)
    for each in (genuine, moved):
        dba("UPDATE orders_order SET shipping_method = 'pickup' WHERE id = %s", each.pk)
        _sealed_the_old_way(each)

    # when the operator runs the command without naming any pickup
    out = io.StringIO()
    call_command("order_seals_upgrade", stdout=out)

    # then neither is sealed (before, both were, the DBA's parcel handed over at the counter), and each is
    # named, with how to take it
    printed = out.getvalue()
    for each in (genuine, moved):
        assert f"left refused {each.ref} (pickup)" in printed
        assert f"--pickup {each.ref}" in printed
        assert not Order.objects.get(pk=each.pk).address_is_sealed
    with pytest.raises(Conflict, match="changed outside the lab"):
        slip_data_for(Order.objects.get(pk=moved.pk))

    # and when the operator names the pickup they know was placed as one, it alone is sealed
    named = io.StringIO()
    call_command("order_seals_upgrade", "--pickup", genuine.ref, stdout=named)
    assert f"sealed with its method {genuine.ref} (pickup), named by the operator" in named.getvalue()
    assert f"left refused {moved.ref} (pickup)" in named.getvalue()
    assert slip_data_for(Order.objects.get(pk=genuine.pk)).order_ref == genuine.ref
    assert not Order.objects.get(pk=moved.pk).address_is_sealed


def _sealed_the_old_way_only(pks: list[int]) -> dict[int, tuple[bool, bool]]:
    """Each order's seal: (holds as the previous version seals it, holds as this one does)."""
    module = importlib.import_module(f"lab.orders.migrations.{METHOD_SEALED}")
    rows = Order.objects.only(*module.SEALED_FIELDS).filter(pk__in=pks)
    return {
        row.pk: (
            seal_holds(row.address_sealed, module.ADDRESS_SEAL_SALT, module._address_alone(row)),
            seal_holds(row.address_sealed, module.ADDRESS_SEAL_SALT, module._address_and_method(row)),
        )
        for row in rows
    }


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_seals_no_order_until_its_column_is_added_and_runs_again_after_that_failed(monkeypatch):
    # given two orders sealed as before, and the database failing the column's ALTER TABLE once (a lock
    # not granted, a deadlock, a dropped connection)
    first, second = order_for(None), order_for(None)
    latest = leaf_migrations("orders")
    migrate_to([("orders", "0012_shipped_event_notes_without_tracking_numbers")])
    try:
        for each in (first, second):
            _sealed_the_old_way(each)
        editor = type(connection.schema_editor())
        add_field = editor.add_field
        failures: list[str] = []

        def add_field_once_refused(self: BaseDatabaseSchemaEditor, model: type[Model], field: Any) -> None:
            if field.name == "slip_served_at" and not failures:
                failures.append(field.name)
                raise OperationalError("canceling statement due to lock timeout")
            add_field(self, model, field)

        monkeypatch.setattr(editor, "add_field", add_field_once_refused)

        # when the upgrade fails there
        with pytest.raises(OperationalError, match="lock timeout"):
            migrate_to(latest)

        # then no order is sealed with its method: the previous version, still serving (or rolled back to),
        # takes each as before (before, every order was sealed first, and it refused them all)
        assert _sealed_the_old_way_only([first.pk, second.pk]) == {
            first.pk: (True, False),
            second.pk: (True, False),
        }

        # and run again, it ends: the column added, each order sealed with its method
        migrate_to(latest)
        assert failures == ["slip_served_at"]
        assert all(Order.objects.get(pk=each.pk).address_is_sealed for each in (first, second))
    finally:
        migrate_to(latest)


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_waits_a_bounded_time_for_the_lock_of_its_column_and_seals_nothing_then(
    monkeypatch, capsys
):
    # given an order sealed as before, and another session reading orders_order in a transaction still open
    # (its lock conflicts with the ALTER TABLE's)
    order = order_for(None)
    module = importlib.import_module(f"lab.orders.migrations.{METHOD_SEALED}")
    monkeypatch.setattr(module, "LOCK_TIMEOUT", "300ms", raising=False)
    latest = leaf_migrations("orders")
    migrate_to([("orders", "0012_shipped_event_notes_without_tracking_numbers")])
    settings = connection.settings_dict
    reader = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
    )
    # (the reader's transaction ends on its own after a while: before, the ALTER waited for it)
    ends = threading.Timer(10, reader.rollback)
    try:
        _sealed_the_old_way(order)
        reader.execute("SELECT count(*) FROM orders_order")
        ends.start()

        # when the lab is upgraded meanwhile, the migrate exits once LOCK_TIMEOUT has passed, with 75
        # (EX_TEMPFAIL), which printlab-migrate.service does not restart (RestartPreventExitStatus=75)
        with pytest.raises(SystemExit) as exited:
            migrate_to(latest)
        assert exited.value.code == 75
        cause = exited.value.__cause__
        assert isinstance(cause, OperationalError) and "lock timeout" in str(cause)
        assert "orders/0013: the lock of orders_order was not granted within 300ms" in capsys.readouterr().err

        # and the order keeps its seal of before, which the previous version still takes
        assert _sealed_the_old_way_only([order.pk]) == {order.pk: (True, False)}
    finally:
        ends.cancel()
        reader.close()
        migrate_to(latest)
    assert Order.objects.get(pk=order.pk).address_is_sealed
