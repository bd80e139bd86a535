"""Upgrading to the address seal that names its order's row (migration orders/0016): each order whose seal
without the row holds is sealed again with it and still gets its slip; an order refused before stays refused;
and `manage.py order_seals_upgrade` does it again for the orders a previous version sealed after 0016 ran."""

from __future__ import annotations

import importlib
import io
import logging

import pytest
from django.core.management import call_command
from django.db import DatabaseError
from django.utils import timezone

from lab.lib.seals import seal_holds
from lab.orders.models import Order, order_address_seal, shipping_seal
from lab.packing.models import PackingSlip
from lab.packing.services import packing_slip_get_or_render, slip_seal_of
from tests.builders import order_for, order_move
from tests.support.dba import dba
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db(transaction=True)

ROW_SEALED = "0016_order_address_seal_names_its_row"
BEFORE = [("orders", "0015_guest_token_sealed")]
THEIRS = '{"name": "Someone Else", "line1": "9 Drop Box Lane", "city": "Elsewhere", "country": "US"}'


def _seal_without_the_row(order: Order) -> str:
    return shipping_seal(
        ref=order.ref,
        customer_id=order.customer_id,
        address=order.shipping_address,
        shipping_method=order.shipping_method,
    )


def _seal_with_the_row(order: Order) -> str:
    return order_address_seal(
        order_id=order.pk,
        ref=order.ref,
        customer_id=order.customer_id,
        address=order.shipping_address,
        shipping_method=order.shipping_method,
    )


def _sealed_without_the_row(order: Order) -> str:
    """As a web process of the version before orders/0016 sealed it: its address and method, no row."""
    seal = _seal_without_the_row(Order.objects.get(pk=order.pk))
    dba("UPDATE orders_order SET address_sealed = %s WHERE id = %s", seal, order.pk)
    return seal


def test_the_migrations_seal_is_the_one_the_lab_makes():
    module = importlib.import_module(f"lab.orders.migrations.{ROW_SEALED}")
    order = Order.objects.get(pk=order_for(None).pk)

    assert order.address_sealed == _seal_with_the_row(order)
    assert module.sealed_with_its_row(order) and not module.sealed_without_its_row(order)
    assert seal_holds(order.address_sealed, module.ADDRESS_SEAL_SALT, module._with_the_row(order))


def test_the_upgrade_seals_with_its_row_each_order_whose_seal_held_and_no_other():
    # given two orders sealed as before 0016 (address and method, no row), one of them then readdressed in SQL
    latest = leaf_migrations("orders")
    kept, readdressed = order_for(None), order_for(None)
    migrate_to(BEFORE)
    try:
        # going back seals each order the previous version's way
        assert Order.objects.get(pk=kept.pk).address_sealed == _seal_without_the_row(kept)
        old_seal = _sealed_without_the_row(kept)
        _sealed_without_the_row(readdressed)
        dba("UPDATE orders_order SET shipping_address = %s WHERE id = %s", THEIRS, readdressed.pk)
        refused_seal = Order.objects.get(pk=readdressed.pk).address_sealed
        assert not Order.objects.get(pk=kept.pk).address_is_sealed  # this version takes no seal without a row
    finally:
        # when the lab is upgraded
        migrate_to(latest)

    # then the first is sealed with its row, and passes the check; the other is left as it was, refused
    upgraded = Order.objects.get(pk=kept.pk)
    assert upgraded.address_sealed == _seal_with_the_row(upgraded) != old_seal
    assert upgraded.address_is_sealed
    left = Order.objects.get(pk=readdressed.pk)
    assert (left.address_sealed, left.address_is_sealed) == (refused_seal, False)


def test_the_upgrade_seals_in_batches_that_each_commit_and_runs_again_after_a_failure(monkeypatch):
    # given three orders sealed as before 0016, an upgrade that seals one order per batch, and the database
    # refusing, part-way, the second order's new seal
    latest = leaf_migrations("orders")
    first, second, third = order_for(None), order_for(None), order_for(None)
    monkeypatch.setattr(importlib.import_module(f"lab.orders.migrations.{ROW_SEALED}"), "BATCH", 1)
    migrate_to(BEFORE)
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

        # then the batch before it is committed, sealed with its row, and the others keep their old seal
        sealed = {each.pk: Order.objects.get(pk=each.pk).address_is_sealed for each in (first, second, third)}
        assert sealed == {first.pk: True, second.pk: False, third.pk: False}
        assert Order.objects.get(pk=third.pk).address_sealed == _seal_without_the_row(third)

        # and when it is run again, once the cause is gone, it ends: each order is sealed with its row
        dba("DROP TRIGGER test_refuse_a_seal ON orders_order")
        dba("DROP FUNCTION test_refuse_a_seal()")
        migrate_to(latest)
        assert all(Order.objects.get(pk=each.pk).address_is_sealed for each in (first, second, third))
    finally:
        dba("DROP TRIGGER IF EXISTS test_refuse_a_seal ON orders_order")
        dba("DROP FUNCTION IF EXISTS test_refuse_a_seal()")
        migrate_to(latest)


def test_orders_a_previous_version_sealed_without_their_row_are_sealed_again_by_the_command():
    # given the lab upgraded, and then orders a web process of the previous version sealed as it did (address
    # and method, no row): a parcel as it placed it, one then readdressed in SQL, and a pickup
    migrate_to(leaf_migrations("orders"))
    placed, readdressed, pickup = order_for(None), order_for(None), order_for(None)
    dba("UPDATE orders_order SET shipping_method = 'pickup' WHERE id = %s", pickup.pk)
    for each in (placed, readdressed, pickup):
        _sealed_without_the_row(each)
    dba("UPDATE orders_order SET shipping_address = %s WHERE id = %s", THEIRS, readdressed.pk)
    assert not any(Order.objects.get(pk=each.pk).address_is_sealed for each in (placed, readdressed, pickup))

    # when the operator runs the command, once no process of the previous version is left
    out = io.StringIO()
    call_command("order_seals_upgrade", stdout=out)

    # then the parcel is sealed with its row (before, it stayed refused for good); the readdressed one stays
    # refused, and the pickup is left until the operator names it, each named
    printed = out.getvalue()
    assert f"sealed with its row {placed.ref} (standard)" in printed
    assert f"left refused {readdressed.ref}: its seal holds in no format" in printed
    assert f"left refused {pickup.ref} (pickup)" in printed and f"--pickup {pickup.ref}" in printed
    assert "1 order(s) sealed again with their row (0 pickup(s) named)" in printed
    sealed = {
        each.pk: Order.objects.get(pk=each.pk).address_is_sealed for each in (placed, readdressed, pickup)
    }
    assert sealed == {placed.pk: True, readdressed.pk: False, pickup.pk: False}

    # and when the operator names the pickup, it is sealed too; a second run seals nothing more
    named = io.StringIO()
    call_command("order_seals_upgrade", "--pickup", pickup.ref, stdout=named)
    assert f"sealed with its row {pickup.ref} (pickup), named by the operator" in named.getvalue()
    assert Order.objects.get(pk=pickup.pk).address_is_sealed
    again = io.StringIO()
    call_command("order_seals_upgrade", stdout=again)
    assert "0 order(s) sealed again with their method (0 pickup(s) named), 0 order(s) sealed again with " in (
        again.getvalue()
    )
    assert placed.ref not in again.getvalue()


def test_a_slip_stored_before_the_upgrade_is_rendered_again_without_a_tamper_alarm(caplog):
    # given an order at the packing station whose slip was stored while the order was sealed without its row
    guest_order = order_for(None, guest_email="guest@example.org")
    order = order_move(guest_order, "paid", "in_production", "ready_to_pack")
    dba("UPDATE orders_order SET address_sealed = %s WHERE id = %s", _seal_without_the_row(order), order.pk)
    old = Order.objects.get(pk=order.pk)
    pdf = b"%PDF-1.4 the slip a previous version stored"
    PackingSlip.objects.create(
        order=old, pdf=pdf, pages=1, rendered_at=timezone.now(), seal=slip_seal_of(order=old, pdf=pdf)
    )
    # and the upgrade (0016 or the command) sealing the order again with its row
    dba("UPDATE orders_order SET address_sealed = %s WHERE id = %s", _seal_with_the_row(order), order.pk)

    # when the station asks for the slip
    with caplog.at_level(logging.INFO, logger="lab.packing.services"):
        slip = packing_slip_get_or_render(order_id=order.pk)

    # then it is rendered again, and logged as the upgrade's doing, not as a slip changed outside the lab
    assert bytes(slip.pdf) != pdf
    assert [record.levelname for record in caplog.records if "outside the lab" in record.getMessage()] == []
    assert any("named their row" in record.getMessage() for record in caplog.records)
