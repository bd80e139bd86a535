"""Upgrading past migration orders/0014: an order erased and a photo purged before the erasure blanked the
address's seal and the ICC profile's description (commit e978d66) lose them too, and nothing else does."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image

from lab.orders.models import Asset, IdempotencyKey, Order, OrderItem
from lab.production.models import JobEvent, PrintJob
from tests.builders import PERSON_PASSWORD, database_text, place_order, register
from tests.builders.orders import order_for
from tests.builders.people import new_customer
from tests.builders.production import hotfolder_printer, released_order
from tests.support.images import icc_profile_described
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("orders", "0013_order_shipping_method_sealed_slip_served_at")]
ICC_NAME = "Proofed for Ottoline Fairweather-Quince"
KEPT_NOTE = "embedded profile 'Proofed for a customer still here' will be converted to the printer profile"


@pytest.mark.usefixtures("stripe_api")  # the order is placed through the API: a PaymentIntent
def test_orders_erased_and_photos_purged_before_the_upgrade_lose_their_seal_and_icc_description(api) -> None:
    latest = leaf_migrations("orders")
    # given a customer's order of a photo whose ICC profile is described by a person's name, erased
    register(api)
    image = Image.new("RGB", (1800, 1200), (200, 120, 40))
    data = io.BytesIO()
    image.save(data, "JPEG", quality=90, icc_profile=icc_profile_described(ICC_NAME))
    uploaded = api.post(
        "/api/v1/assets",
        {"file": SimpleUploadedFile("holiday.jpg", data.getvalue(), content_type="image/jpeg")},
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.json()
    asset_id = uploaded.json()["id"]
    order = place_order(api, asset_id=asset_id, key="erased-before-0014")
    item = order.items.get()
    sealed, preflight = order.address_sealed, item.preflight
    assert sealed and ICC_NAME in preflight["color_note"]
    assert Asset.objects.get(pk=asset_id).icc_description == ICC_NAME
    erased = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")
    assert erased.status_code == 200, erased.json()
    # and another customer's order, not erased, whose photo's profile is described too
    kept = order_for(new_customer())
    kept_item = kept.items.get()
    OrderItem.objects.filter(pk=kept_item.pk).update(
        preflight={**kept_item.preflight, "color_note": KEPT_NOTE}
    )
    Asset.objects.filter(pk=kept_item.asset_id).update(icc_description="Proofed for a customer still here")
    kept_seal = kept.address_sealed
    assert kept_seal

    migrate_to(BEFORE)
    try:
        # as an erasure and a purge made before commit e978d66 left them: the seal and the description kept
        Order.objects.filter(pk=order.pk).update(address_sealed=sealed)
        OrderItem.objects.filter(pk=item.pk).update(preflight=preflight)
        Asset.objects.filter(pk=asset_id).update(icc_description=ICC_NAME)
        assert "ottoline" in database_text()
    finally:
        # when the lab is upgraded (a failed test leaves the schema current too)
        migrate_to(latest)

    # then the erased order keeps no seal nor description, the purged photo no description: the name is gone
    order.refresh_from_db()
    assert order.address_sealed == ""
    assert OrderItem.objects.get(pk=item.pk).preflight == {
        **preflight,
        "color_note": "embedded profile will be converted to the printer profile",
    }
    assert Asset.objects.get(pk=asset_id).icc_description == ""
    assert "ottoline" not in database_text()
    # and the order and photo of the customer still here keep theirs
    kept.refresh_from_db()
    assert (kept.address_sealed, kept.address_is_sealed) == (kept_seal, True)
    assert OrderItem.objects.get(pk=kept_item.pk).preflight["color_note"] == KEPT_NOTE
    assert Asset.objects.get(pk=kept_item.asset_id).icc_description == "Proofed for a customer still here"


@pytest.mark.django_db(transaction=True)
def test_rows_erased_and_purged_by_a_previous_version_after_the_upgrade_are_blanked_by_the_command() -> None:
    # given the lab upgraded (orders/0014 ran), and then a host still on the previous version erasing a
    # customer (the order anonymised, its seal and its item's note kept) and purging a photo (its ICC
    # profile's description kept), as it did
    erased = order_for(new_customer())
    item = erased.items.get()
    note = f"embedded profile '{ICC_NAME}' will be converted to the printer profile"
    Order.objects.filter(pk=erased.pk).update(is_anonymized=True, shipping_address={})
    OrderItem.objects.filter(pk=item.pk).update(preflight={**item.preflight, "color_note": note})
    Asset.objects.filter(pk=item.asset_id).update(status=Asset.Status.PURGED, icc_description=ICC_NAME)
    # and a customer still here, whose order and photo keep theirs
    kept = order_for(new_customer())
    kept_item = kept.items.get()
    OrderItem.objects.filter(pk=kept_item.pk).update(
        preflight={**kept_item.preflight, "color_note": KEPT_NOTE}
    )
    Asset.objects.filter(pk=kept_item.asset_id).update(icc_description="Proofed for a customer still here")
    assert Order.objects.get(pk=erased.pk).address_sealed
    assert "ottoline" in database_text()

    # when the operator runs the command, once no process of the previous version is left
    out = io.StringIO()
    call_command("erased_rows_blank", stdout=out)

    # then the erased order keeps no seal nor description, the purged photo no description (before, 0014 had
    # run once, and they were kept for good)
    assert Order.objects.get(pk=erased.pk).address_sealed == ""
    assert OrderItem.objects.get(pk=item.pk).preflight["color_note"] == (
        "embedded profile will be converted to the printer profile"
    )
    assert Asset.objects.get(pk=item.asset_id).icc_description == ""
    assert "ottoline" not in database_text()
    assert out.getvalue().startswith("1 erased order(s) without their address seal, 1 item note(s)")
    assert "1 purged photo(s)" in out.getvalue()
    # and the customer still here keeps theirs
    kept.refresh_from_db()
    assert kept.address_sealed and kept.address_is_sealed
    assert OrderItem.objects.get(pk=kept_item.pk).preflight["color_note"] == KEPT_NOTE
    assert Asset.objects.get(pk=kept_item.asset_id).icc_description == "Proofed for a customer still here"

    # and a second run changes nothing
    again = io.StringIO()
    call_command("erased_rows_blank", stdout=again)
    assert again.getvalue().startswith("0 erased order(s) without their address seal, 0 item note(s)")
    assert "0 purged photo(s)" in again.getvalue()


KEYS_BEFORE = [("orders", "0016_order_address_seal_names_its_row")]
GUEST_EMAIL = "ottoline@example.org"


def _erased_before_the_keys_were_blanked() -> tuple[Order, IdempotencyKey, PrintJob, PrintJob]:
    """An order erased as the erasure before commits 06bea67 and b2fb49e left it: anonymised, but its key row
    scoped by the guest's e-mail's hash with the client's key text and the body's hash, and the floor's notes
    on its print jobs (a reprint's and a cancel's) naming the customer."""
    hotfolder_printer("minilab", sizes=["4x6"])
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-5X7-LUSTRE", 1)])
    original, reprint = PrintJob.objects.filter(order=order).order_by("pk")
    PrintJob.objects.filter(pk=reprint.pk).update(reprint_of=original, reprint_reason="damaged")
    JobEvent.objects.create(job=reprint, kind="reprint_requested", note=f"{ICC_NAME} called about a scratch")
    JobEvent.objects.create(job=reprint, kind="cancelled", note=f"{ICC_NAME} is fine with it")
    row = IdempotencyKey.objects.create(
        scope="guest:" + hashlib.sha256(GUEST_EMAIL.encode()).hexdigest(),
        key="ottoline-basket-2024",
        request_sha256=hashlib.sha256(b'{"guest":{"birth_date":"1984-02-29"}}').hexdigest(),
        order=order,
    )
    Order.objects.filter(pk=order.pk).update(is_anonymized=True, guest_email="", shipping_address={})
    return order, row, original, reprint


def _a_customer_still_here() -> tuple[IdempotencyKey, JobEvent]:
    kept = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    row = IdempotencyKey.objects.create(
        scope="user:kept", key="kept-key", request_sha256="b" * 64, order=kept
    )
    job = PrintJob.objects.filter(order=kept).get()
    note = JobEvent.objects.create(job=job, kind="cancelled", note="Kept Person asked us to stop")
    return row, note


def _assert_blanked(order: Order, row: IdempotencyKey, original: PrintJob, reprint: PrintJob) -> None:
    row.refresh_from_db()
    assert (row.scope, row.key, row.request_sha256) == (f"erased:{order.ref}", str(row.pk), "")
    assert list(
        JobEvent.objects.filter(job=reprint, kind__in=["reprint_requested", "cancelled"])
        .order_by("pk")
        .values_list("kind", "note")
    ) == [
        ("reprint_requested", f"reprint of job {original.pk}: damaged"),
        ("cancelled", "cancelled by staff"),
    ]
    assert "ottoline" not in database_text()


def test_orders_erased_before_their_keys_were_blanked_lose_them_and_the_floors_notes_on_upgrade() -> None:
    latest = leaf_migrations("orders")
    # given an order erased by the erasure before commits 06bea67 and b2fb49e, and an order still here
    order, row, original, reprint = _erased_before_the_keys_were_blanked()
    kept_row, kept_note = _a_customer_still_here()
    assert "ottoline" in database_text()

    migrate_to(KEYS_BEFORE)
    # when the lab is upgraded
    migrate_to(latest)

    # then the erased order's key row names only its order, and its jobs' notes are the lab's own words
    # (before, nothing blanked them: only erasures made after those commits did)
    _assert_blanked(order, row, original, reprint)
    # and the order still here keeps its key and its notes
    kept_row.refresh_from_db()
    assert (kept_row.scope, kept_row.key, kept_row.request_sha256) == ("user:kept", "kept-key", "b" * 64)
    kept_note.refresh_from_db()
    assert kept_note.note == "Kept Person asked us to stop"


def test_orders_a_previous_version_erased_after_the_upgrade_lose_their_keys_and_notes_by_the_command() -> (
    None
):
    # given the lab upgraded, and then a host still on the previous version erasing an order as it did
    order, row, original, reprint = _erased_before_the_keys_were_blanked()
    kept_row, kept_note = _a_customer_still_here()

    # when the operator runs the command
    out = io.StringIO()
    call_command("erased_rows_blank", stdout=out)

    # then the key row names only its order, and the notes are the lab's own words
    _assert_blanked(order, row, original, reprint)
    assert (
        "1 idempotency key(s) of erased orders naming only their order, 2 print job note(s)" in out.getvalue()
    )
    kept_row.refresh_from_db()
    assert (kept_row.scope, kept_row.key, kept_row.request_sha256) == ("user:kept", "kept-key", "b" * 64)
    kept_note.refresh_from_db()
    assert kept_note.note == "Kept Person asked us to stop"
    # and a second run changes nothing
    again = io.StringIO()
    call_command("erased_rows_blank", stdout=again)
    assert (
        "0 idempotency key(s) of erased orders naming only their order, 0 print job note(s)"
        in again.getvalue()
    )
