"""The lab admin's side doors: a page whose save changed more than it showed, or could not undo a database
write it was meant to undo (lab/staff/admin/).

A shift moved to another person, a printer changed in the database, a product's size under paid orders, a
malformed account id, an e-mail in capitals: each went through the admin's forms as described in the tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.test import Client

from lab.audit.models import AuditRecord, StaffShift
from lab.catalog.demo import catalog_seed_demo
from lab.catalog.models import Product
from lab.orders import intake
from lab.orders.models import Order
from tests.builders import (
    PASSWORD,
    UserFactory,
    asset_for,
    client_as,
    hotfolder_printer,
    messages_of,
    order_body,
    order_with_items,
    paid_order,
    person,
    printer_form,
    product_form,
)
from tests.support.database_locks import committed_right_before, until_another_session_waits
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
ADMIN = "/lab/admin/"


def test_a_shift_cannot_be_moved_to_another_person_and_its_change_names_its_own_person():
    # given a technician's Monday shift, and another technician
    client, _ = client_as("admin")
    first, second = person("technician"), person("technician")
    shift = StaffShift.objects.create(user=first, weekday=0, start_time="08:00", end_time="16:00")

    # when the admin posts the shift's page with the other person and a wider window
    response = client.post(
        f"{ADMIN}audit/staffshift/{shift.pk}/change/",
        {"user": str(second.pk), "weekday": "0", "start_time": "08:00", "end_time": "23:00"},
    )

    # then the shift stays the first technician's (before, it became the second's, the first was left with no
    # shift, so the outside_shift rule stopped judging them, and the record named the second), and the record
    # names the first
    assert response.status_code == 302
    shift.refresh_from_db()
    assert (shift.user_id, str(shift.end_time)) == (first.pk, "23:00:00")
    (record,) = AuditRecord.objects.filter(action="staff.shift_changed")
    assert (record.context_id, record.justification) == (
        str(first.public_id),
        "Monday 08:00-16:00 -> Monday 08:00-23:00",
    )
    page = client.get(f"{ADMIN}audit/staffshift/{shift.pk}/change/").content.decode()
    assert '<select name="user"' not in page


def test_the_admins_save_of_a_printer_changed_in_the_database_accepts_the_destination_shown_on_the_record():
    # given a printer whose print host a database administrator changed (its destination refused since)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    client, admin = client_as("admin")
    dba("UPDATE production_printer SET host = %s WHERE id = %s", "hostb", printer.pk)
    printer.refresh_from_db()
    assert not printer.destination_is_sealed

    # when the lab admin opens the printer's page, which shows every destination field, and saves it
    response = client.post(
        f"{ADMIN}production/printer/{printer.pk}/change/",
        printer_form(printer, location="Back room"),
        follow=True,
    )

    # then the destination shown is the lab's again (before, the save left it unsealed: the printer failed
    # every job for good, though the README and the job's failure said that saving it again was the way back),
    # the chain says what was accepted, and the admin is told
    assert response.status_code == 200
    printer.refresh_from_db()
    assert (printer.host, printer.location, printer.destination_is_sealed) == ("hostb", "Back room", True)
    (record,) = AuditRecord.objects.filter(action="staff.printer_destination_set")
    assert (record.actor_id, record.context_id, record.justification) == (
        str(admin.public_id),
        str(printer.pk),
        "accepted a destination changed outside the lab (found: backend hotfolder, target minilab,"
        " cups_server -, host hostb)",
    )
    assert any("changed outside the lab" in message for message in messages_of(response))


def test_a_products_size_paper_and_dpi_are_fixed_once_an_order_holds_it():
    # given a product that a paid order holds
    client, _ = client_as("admin")
    paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    product = Product.objects.get(sku="PRINT-4X6-LUSTRE")

    # when the admin posts its page with another size, paper and minimum dpi, and a new name
    response = client.post(
        f"{ADMIN}catalog/product/{product.pk}/change/",
        product_form(product, name="4x6 renamed", width_in="5", height_in="7", paper="glossy", min_dpi="300"),
    )

    # then only the name changed (before, the order, paid for 4x6 lustre, printed as 5x7 glossy), and the page
    # says to create a new product instead
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.name, product.width_in, product.height_in, product.paper, product.min_dpi) == (
        "4x6 renamed",
        Decimal("4.00"),
        Decimal("6.00"),
        "lustre",
        150,
    )
    page = client.get(f"{ADMIN}catalog/product/{product.pk}/change/").content.decode()
    assert "create a new product instead" in page and 'name="width_in"' not in page


@pytest.mark.django_db(transaction=True)  # the order is committed in a session of its own
def test_an_order_committed_between_the_admins_check_and_save_keeps_the_products_size_paper_and_dpi():
    # Row locks and sessions of their own: what this tests is PostgreSQL's (SQLite runs one writer at a time)
    assert connection.vendor == "postgresql"
    # given a product no order holds, whose page shows its size, paper and dpi as fields
    catalog_seed_demo()
    client, _ = client_as("admin")
    product = Product.objects.get(sku="PRINT-4X6-LUSTRE")
    page = f"{ADMIN}catalog/product/{product.pk}/change/"
    assert 'name="width_in"' in client.get(page).content.decode()
    held: list[Order] = []

    def a_customers_order_takes_it() -> None:
        with transaction.atomic():
            held.append(order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)]))

    def the_products_save(sql: str) -> bool:
        return '"catalog_product"' in sql and "UPDATE" in sql  # its UPDATE, or a lock taken for it

    # when the admin posts it as 5x7 glossy, and an order holding it commits after every check the page made
    # that no order holds it (Django asks four times), right before the product is saved
    with committed_right_before(the_products_save, a_customers_order_takes_it):
        response = client.post(
            page,
            product_form(product, name="5x7 now", width_in="5", height_in="7", paper="glossy", min_dpi="300"),
            follow=True,
        )

    # then nothing of the form was saved (before, the order, placed and priced for 4x6 lustre, held a 5x7
    # glossy product), and the admin is told why, on the page that now shows the size as fixed
    assert len(held) == 1
    product.refresh_from_db()
    assert (product.name, product.width_in, product.height_in, product.paper, product.min_dpi) == (
        '4x6" Lustre print',
        Decimal("4.00"),
        Decimal("6.00"),
        "lustre",
        150,
    )
    assert response.status_code == 200
    assert any("an order took this product" in message for message in messages_of(response))
    assert "create a new product instead" in response.content.decode()
    assert not LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Product)).exists()


@pytest.mark.django_db(transaction=True)  # the order and the admin's save run in sessions of their own
def test_an_order_being_created_makes_the_admins_save_of_its_product_wait_and_then_keeps_its_size(
    api, monkeypatch, stripe_api
):
    # Row locks and sessions of their own: what this tests is PostgreSQL's (SQLite runs one writer at a time)
    assert connection.vendor == "postgresql"
    # given a customer's order of a 4x6 lustre print, quoted and its items inserted, not yet committed:
    # paused there until another session waits for one of its locks (or 5 seconds passed)
    catalog_seed_demo()
    client, _ = client_as("admin")
    product = Product.objects.get(sku="PRINT-4X6-LUSTRE")
    customer = UserFactory.create()
    photo = asset_for(customer)
    inserted = threading.Event()
    admin_waited: list[bool] = []
    answered: list[Any] = []
    order_insert: Callable[..., Order] = intake._order_insert

    def order_insert_then_pause(**kwargs: Any) -> Order:
        order = order_insert(**kwargs)
        inserted.set()
        admin_waited.append(until_another_session_waits(timeout=5))
        return order

    def the_customer_orders() -> None:
        try:
            api.force_authenticate(customer)
            answered.append(
                api.post("/api/v1/orders", order_body(photo), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
            )
        finally:
            connection.close()

    monkeypatch.setattr(intake, "_order_insert", order_insert_then_pause)
    orderer = threading.Thread(target=the_customer_orders)
    orderer.start()
    assert inserted.wait(timeout=20)

    # when the admin posts the product's page as 5x7 glossy meanwhile
    response = client.post(
        f"{ADMIN}catalog/product/{product.pk}/change/",
        product_form(product, width_in="5", height_in="7", paper="glossy", min_dpi="300"),
        follow=True,
    )
    orderer.join(timeout=30)

    # then the save waited for the order (before, it went through at once, and the order committed items
    # priced and placed for 4x6 lustre on a 5x7 glossy product), found it, and kept nothing
    assert admin_waited == [True]
    assert answered[0].status_code == 201, answered[0].content
    (order,) = Order.objects.filter(customer=customer)
    assert list(order.items.values_list("product__sku", flat=True)) == ["PRINT-4X6-LUSTRE"]
    product.refresh_from_db()
    assert (product.width_in, product.height_in, product.paper, product.min_dpi) == (
        Decimal("4.00"),
        Decimal("6.00"),
        "lustre",
        150,
    )
    assert any("an order took this product" in message for message in messages_of(response))


def test_a_product_no_order_holds_keeps_its_size_editable():
    client, _ = client_as("admin")
    paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    unordered = Product.objects.exclude(sku="PRINT-4X6-LUSTRE").first()
    assert unordered is not None

    page = client.get(f"{ADMIN}catalog/product/{unordered.pk}/change/").content.decode()

    assert 'name="width_in"' in page and "create a new product instead" not in page


def test_the_password_page_of_an_account_id_that_cannot_be_is_404():
    # given a lab admin; when they open the password page of an id no account can have
    client, _ = client_as("admin")
    client.raise_request_exception = False

    response = client.get(f"{ADMIN}accounts/user/abc/password/")

    # then it is not found (before: a server error)
    assert response.status_code == 404


def test_an_e_mail_the_admin_edits_is_stored_lower_cased_so_its_owner_can_sign_in():
    # given a technician, whose e-mail the lab admin changes, typed with capitals
    client, _ = client_as("admin")
    technician = person("technician")

    saved = client.post(
        f"{ADMIN}accounts/user/{technician.pk}/change/",
        {
            "email": "New.Address@Lab.Example",
            "full_name": technician.full_name,
            "is_active": "on",
            "roles": ["technician"],
        },
    )

    # then it is stored lower-cased, as account creation stores it, and the technician signs in with it
    # (before, it was stored as typed and the sign-in, which lower-cases, found no such account)
    assert saved.status_code == 302
    technician.refresh_from_db()
    assert technician.email == "new.address@lab.example"
    signed_in = Client().post("/lab/login/", {"email": "New.Address@Lab.Example", "password": PASSWORD})
    assert signed_in.status_code == 302
