"""The lab admin at /lab/admin/: lab admins edit the catalog, printers and staff accounts; every change is
recorded; nobody else gets in; the staff pages' session, cache and CSP rules hold there too."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from lab.accounts.models import User
from lab.audit.models import AuditRecord
from lab.catalog.demo import catalog_seed_demo
from lab.catalog.models import Product
from lab.production import submission, tracking
from lab.production.actions import printer_pause
from lab.production.models import Printer, PrintJob
from lab.production.states import JobStatus
from lab.staff.admin.services import staff_account_save
from lab.staff.admin.site import site
from lab.staff.middleware import CONTENT_SECURITY_POLICY, LAST_ACTIVITY_KEY
from printers import errors as printer_errors
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import process_pending
from tests.builders import (
    PASSWORD,
    WORKER,
    client_as,
    hotfolder_printer,
    job_on_the_first_of_two_minilabs,
    person,
    printer_folder,
    printer_form,
    product_form,
    released_order,
)
from tests.support.database_locks import (
    committed_right_after_the_check,
    holds_up_another_session,
    until_another_session_waits,
)

pytestmark = pytest.mark.django_db
ADMIN = "/lab/admin/"


def log_entries(model: type, obj_pk: int) -> list[tuple[int, str]]:
    content_type = ContentType.objects.get_for_model(model)
    return list(
        LogEntry.objects.filter(content_type=content_type, object_id=str(obj_pk))
        .order_by("pk")
        .values_list("action_flag", "user__email")
    )


@pytest.fixture
def product() -> Product:
    return _a_product()


def test_admin_edits_a_product_and_the_change_is_logged(product):
    client, admin = client_as("admin")

    response = client.post(
        f"{ADMIN}catalog/product/{product.pk}/change/",
        product_form(product, name="4x6 lustre, new name", price_minor="129"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    product.refresh_from_db()
    assert (product.name, product.price_minor) == ("4x6 lustre, new name", 129)
    assert log_entries(Product, product.pk) == [(CHANGE, admin.email)]
    entry = LogEntry.objects.get(object_id=str(product.pk))
    assert entry.get_change_message() == "Changed Name and Price minor."


def test_admin_edits_a_printer_host_and_media_and_the_change_is_logged():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    client, admin = client_as("admin")

    response = client.post(
        f"{ADMIN}production/printer/{printer.pk}/change/",
        printer_form(printer, host="hosta", media_sizes="4x6, 5x7", papers=["lustre", "matte"]),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    printer.refresh_from_db()
    assert (printer.host, printer.media_sizes, printer.papers) == (
        "hosta",
        ["4x6", "5x7"],
        ["lustre", "matte"],
    )
    assert log_entries(Printer, printer.pk) == [(CHANGE, admin.email)]


def test_a_printer_destination_the_admin_sets_is_recorded_in_the_audit_chain():
    """Workers send decrypted rasters to a printer's destination, and the admin's save seals whatever it is
    given: a lab admin who pointed a printer at a print server of their own had every job routed there sent
    to it, and only Django's LogEntry (which the database's owner can edit) said who. The chain says it."""
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    client, admin = client_as("admin")
    host_only = client.post(
        f"{ADMIN}production/printer/{printer.pk}/change/", printer_form(printer, location="Back room")
    )

    moved = client.post(
        f"{ADMIN}production/printer/{printer.pk}/change/",
        printer_form(printer, backend="cups", target="Minilab", cups_server="print.example.net:631"),
    )

    assert (host_only.status_code, moved.status_code) == (302, 302)
    (record,) = AuditRecord.objects.filter(action="staff.printer_destination_set")
    assert (record.actor_id, record.context_type, record.context_id) == (
        str(admin.public_id),
        "printer",
        str(printer.pk),
    )
    assert record.justification.split("; ") == [
        "backend hotfolder -> cups",
        f"target {printer.target} -> Minilab",
        "cups_server - -> print.example.net:631",
    ]
    printer.refresh_from_db()
    assert printer.destination_is_sealed


def test_the_admin_records_shifts_for_the_outside_shift_rule_and_each_change_is_in_the_chain():
    """The auditors' `outside_shift` rule reads people's shifts, which no lab tool could write (only tests
    did): it could never fire. Shifts are now kept in the lab admin, and since widening a shift after the fact
    hides views from the rule, every change is in the audit chain."""
    from lab.audit.models import StaffShift

    client, admin = client_as("admin")
    technician = person("technician")
    customer = person("customer")
    form = {"user": str(technician.pk), "weekday": "0", "start_time": "08:00", "end_time": "16:00"}

    offered = client.get(f"{ADMIN}audit/staffshift/add/").content.decode()
    added = client.post(f"{ADMIN}audit/staffshift/add/", form)
    shift = StaffShift.objects.get(user=technician)
    widened = client.post(f"{ADMIN}audit/staffshift/{shift.pk}/change/", {**form, "end_time": "23:00"})
    removed = client.post(f"{ADMIN}audit/staffshift/{shift.pk}/delete/", {"post": "yes"})

    users = re.search(r'<select name="user".*?</select>', offered, re.S)
    assert users is not None
    assert f'value="{technician.pk}"' in users.group() and f'value="{customer.pk}"' not in users.group()
    assert (added.status_code, widened.status_code, removed.status_code) == (302, 302, 302)
    assert not StaffShift.objects.exists()
    records = AuditRecord.objects.filter(action="staff.shift_changed").order_by("seq")
    assert [(r.actor_id, r.context_id, r.justification) for r in records] == [
        (str(admin.public_id), str(technician.public_id), "added Monday 08:00-16:00"),
        (str(admin.public_id), str(technician.public_id), "Monday 08:00-16:00 -> Monday 08:00-23:00"),
        (str(admin.public_id), str(technician.public_id), "removed Monday 08:00-23:00"),
    ]


def test_printer_media_size_without_printer_media_is_refused():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    client, _ = client_as("admin")

    response = client.post(
        f"{ADMIN}production/printer/{printer.pk}/change/", printer_form(printer, media_sizes="4x6, 3x9")
    )

    assert response.status_code == 200
    assert "&#x27;3x9&#x27; is not a known print size" in response.content.decode()
    printer.refresh_from_db()
    assert printer.media_sizes == ["4x6"]
    assert log_entries(Printer, printer.pk) == []


def test_unprintable_product_size_is_refused_in_the_admin_form(product):
    client, _ = client_as("admin")
    before = Product.objects.count()

    response = client.post(
        f"{ADMIN}catalog/product/add/",
        product_form(product, sku="PRINT-3X9-LUSTRE", name="odd", width_in="3.3", height_in="9.1"),
    )

    assert response.status_code == 200
    assert "No printer media is known for 3.3x9.1 in" in response.content.decode()
    assert Product.objects.count() == before
    assert not Product.objects.filter(sku="PRINT-3X9-LUSTRE").exists()
    assert LogEntry.objects.count() == 0


@pytest.mark.parametrize("size", ["0x6", "-4x6", "1e999999999x6", "NaNx6"])
def test_printer_media_size_that_is_not_a_size_is_a_form_error_not_a_500(size):
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    client, _ = client_as("admin")
    client.raise_request_exception = False

    response = client.post(
        f"{ADMIN}production/printer/{printer.pk}/change/", printer_form(printer, media_sizes=f"4x6, {size}")
    )

    assert response.status_code == 200
    assert f"&#x27;{size}&#x27; is not a known print size" in response.content.decode()
    printer.refresh_from_db()
    assert printer.media_sizes == ["4x6"]
    assert log_entries(Printer, printer.pk) == []


@pytest.mark.parametrize(("width", "height"), [("0", "6"), ("-4", "6"), ("0", "0")])
def test_a_product_size_that_is_not_positive_is_a_form_error_not_a_500(product, width, height):
    client, _ = client_as("admin")
    client.raise_request_exception = False
    before = Product.objects.count()

    response = client.post(
        f"{ADMIN}catalog/product/add/",
        product_form(product, sku="PRINT-ZERO", name="zero", width_in=width, height_in=height),
    )

    assert response.status_code == 200
    assert "No printer media is known for" in response.content.decode()
    assert Product.objects.count() == before
    assert LogEntry.objects.count() == 0


@pytest.mark.parametrize(
    "path",
    [
        "accounts/user/?q=%00",
        "catalog/product/?paper__exact=%00",
        "catalog/product/?q=a%00b",
        "production/printer/?host=%00",
        "production/printer/?state__exact=%00",
    ],
)
def test_a_nul_in_a_changelist_search_or_filter_is_a_400_not_a_500(product, path):
    """PostgreSQL refuses a NUL in text (DataError): a search or a list filter holding one was a 500."""
    hotfolder_printer("minilab", sizes=["4x6"])
    client, _ = client_as("admin")
    client.raise_request_exception = False

    response = client.get(f"{ADMIN}{path}")

    assert response.status_code == 400
    assert "<h1>Bad request</h1>" in response.content.decode()


def test_printable_product_is_created_and_logged(product):
    client, admin = client_as("admin")

    response = client.post(
        f"{ADMIN}catalog/product/add/",
        product_form(product, sku="PRINT-5X7-NEW", name="5x7 new", width_in="5", height_in="7"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    created = Product.objects.get(sku="PRINT-5X7-NEW")
    assert (created.width_in, created.height_in) == (Decimal("5.00"), Decimal("7.00"))
    assert log_entries(Product, created.pk) == [(ADDITION, admin.email)]


@pytest.mark.parametrize("roles", [("technician",), ("customer",), ("supervisor", "auditor", "packer")])
def test_everyone_but_a_lab_admin_gets_403_and_changes_nothing(product, roles):
    client, _ = client_as(*roles)
    before = product_form(product)

    pages = [ADMIN, f"{ADMIN}catalog/product/", f"{ADMIN}catalog/product/{product.pk}/change/"]
    statuses = [client.get(url).status_code for url in pages]
    response = client.post(f"{ADMIN}catalog/product/{product.pk}/change/", product_form(product, name="X"))

    assert statuses == [403, 403, 403]
    assert response.status_code == 403
    product.refresh_from_db()
    assert product_form(product) == before
    assert LogEntry.objects.count() == 0


def test_django_is_staff_alone_does_not_open_the_admin(product):
    user = person("technician")
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(User.objects.get(pk=user.pk))

    assert client.get(ADMIN).status_code == 403
    assert client.get(f"{ADMIN}catalog/product/{product.pk}/change/").status_code == 403


def test_anonymous_visitor_is_sent_to_the_staff_sign_in():
    client = Client()

    index = client.get(ADMIN)
    login = client.get(f"{ADMIN}login/?next=/lab/admin/catalog/")

    assert index.status_code == 302
    assert index["Location"] == "/lab/admin/login/?next=/lab/admin/"
    assert login.status_code == 302
    assert login["Location"] == "/lab/login/?next=%2Flab%2Fadmin%2Fcatalog%2F"


def test_admin_pages_carry_the_staff_csp_and_no_store(product):
    client, _ = client_as("admin")

    response = client.get(f"{ADMIN}catalog/product/{product.pk}/change/")

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    # Django's never_cache says more, and includes no-store: the middleware keeps a view's no-store.
    assert response["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"


def test_idle_admin_session_is_ended(product):
    client, _ = client_as("admin")
    assert client.get(ADMIN).status_code == 200
    session = client.session
    session[LAST_ACTIVITY_KEY] = time.time() - 15 * 60 - 1
    session.save()

    response = client.get(f"{ADMIN}catalog/product/")

    assert response.status_code == 302
    assert response["Location"] == "/lab/login/?next=%2Flab%2Fadmin%2Fcatalog%2Fproduct%2F"
    assert "_auth_user_id" not in client.session


def test_admin_creates_a_staff_account_with_roles_recorded_in_log_entry_and_audit_log():
    client, admin = client_as("admin")

    response = client.post(
        f"{ADMIN}accounts/user/add/",
        {
            "email": "New.Tech@lab.example",
            "full_name": "New Tech",
            "password1": "a long enough secret 42",
            "password2": "a long enough secret 42",
            "roles": ["technician"],
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    created = User.objects.get(email="new.tech@lab.example")
    assert sorted(created.groups.values_list("name", flat=True)) == ["technician"]
    assert created.check_password("a long enough secret 42")
    assert (created.is_staff, created.is_superuser) == (False, False)
    assert log_entries(User, created.pk) == [(ADDITION, admin.email)]
    record = AuditRecord.objects.get(action="staff.account_created")
    assert (record.actor_id, record.context_id, record.justification) == (
        str(admin.public_id),
        str(created.public_id),
        "created; roles - -> technician",
    )


def test_admin_changes_roles_and_deactivates_an_account_recorded_in_both_logs():
    client, admin = client_as("admin")
    technician = person("technician")

    response = client.post(
        f"{ADMIN}accounts/user/{technician.pk}/change/",
        {"email": technician.email, "full_name": technician.full_name, "roles": ["supervisor", "packer"]},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    technician.refresh_from_db()
    assert sorted(technician.groups.values_list("name", flat=True)) == ["packer", "supervisor"]
    assert technician.is_active is False  # the checkbox was not sent
    assert log_entries(User, technician.pk) == [(CHANGE, admin.email)]
    record = AuditRecord.objects.get(action="staff.account_changed")
    assert record.justification == "roles technician -> packer,supervisor; deactivated"
    assert record.context_id == str(technician.public_id)


NEW_ADMIN_PASSWORD = "a new admin secret 43"


def own_password_changed(client: Client) -> Any:
    """The signed-in admin's "Change password" form, sent with their password and a new one."""

    return client.post(
        f"{ADMIN}password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_ADMIN_PASSWORD, "new_password2": NEW_ADMIN_PASSWORD},
    )


def own_password_changed_while(client: Client, monkeypatch: Any, meanwhile: Callable[[], None]) -> Any:
    """`own_password_changed`, `meanwhile` run after the form has checked the old password (another admin
    acting between the check and the save)."""
    from django.contrib.auth.forms import PasswordChangeForm

    old_password_check = PasswordChangeForm.clean_old_password

    def checked_then_meanwhile(form: PasswordChangeForm) -> str:
        checked: str = old_password_check(form)
        meanwhile()
        return checked

    monkeypatch.setattr(PasswordChangeForm, "clean_old_password", checked_then_meanwhile)
    return own_password_changed(client)


def test_the_admins_own_password_change_keeps_them_signed_in_and_is_recorded():
    """The admin's "Change password" link is Django's own view: it saved the hash without sealing the
    account, so the next request found the seal broken, signed the admin out (403) and recorded tampering."""

    client, admin = client_as("admin")

    changed = own_password_changed(client)
    after = client.get(ADMIN)

    assert (changed.status_code, after.status_code) == (302, 200)
    admin.refresh_from_db()
    assert admin.check_password(NEW_ADMIN_PASSWORD)
    record = AuditRecord.objects.get(action="staff.account_changed")
    assert (record.actor_id, record.context_id, record.justification) == (
        str(admin.public_id),
        str(admin.public_id),
        "password set",
    )
    assert not AuditRecord.objects.filter(action="staff.account_refused").exists()


def test_an_admins_own_password_change_leaves_a_deactivation_made_meanwhile_in_place(monkeypatch):
    """Django's view saved the whole row of the copy the request loaded, then sealed it: another admin's
    deactivation, committed while the form was checked, was undone and the account sealed active again (the
    chain said deactivated, then password set). A deactivated admin changes nothing."""
    from lab.accounts.seal import account_seal_holds

    client, admin = client_as("admin")
    other_admin = person("admin")

    def deactivated() -> None:
        account = User.objects.get(pk=admin.pk)
        account.is_active = False
        staff_account_save(actor=other_admin, user=account, roles=["admin"], is_new=False)

    response = own_password_changed_while(client, monkeypatch, deactivated)

    assert response.status_code == 200
    assert "was deactivated" in response.content.decode()
    admin.refresh_from_db()
    assert admin.is_active is False
    assert admin.check_password(PASSWORD)
    assert account_seal_holds(admin)
    records = AuditRecord.objects.filter(action="staff.account_changed").order_by("seq")
    assert [(r.actor_id, r.context_id, r.justification) for r in records] == [
        (str(other_admin.public_id), str(admin.public_id), "deactivated")
    ]


def test_an_admins_own_password_change_keeps_a_password_another_admin_set_meanwhile(monkeypatch):
    """The old password was checked on the copy the request loaded: a reset another admin committed meanwhile
    (say, of a password thought stolen) was overwritten by a form sent with the old one."""
    client, admin = client_as("admin")

    def reset() -> None:
        account = User.objects.get(pk=admin.pk)
        account.set_password("the other admin's reset 44")
        account.save(update_fields=["password"])

    response = own_password_changed_while(client, monkeypatch, reset)

    assert response.status_code == 200
    assert "password was changed while the form was sent" in response.content.decode()
    admin.refresh_from_db()
    assert admin.check_password("the other admin's reset 44")
    assert not AuditRecord.objects.filter(action="staff.account_changed").exists()


def test_a_password_form_the_admin_rejects_as_conflicting_records_nothing():
    """Django's form redirects also when it rejects a submission ("Conflicting form data": disabling the
    password without the "unset-password" button): the lab took any redirect for a save, and recorded
    "password set" (sealing again) for a password nobody changed."""
    client, _ = client_as("admin")
    technician = person("technician")
    stored = User.objects.get(pk=technician.pk).password

    response = client.post(f"{ADMIN}accounts/user/{technician.pk}/password/", {"usable_password": "false"})

    assert response.status_code == 302
    technician.refresh_from_db()
    assert technician.password == stored
    assert not AuditRecord.objects.filter(action="staff.account_changed").exists()


def test_a_password_the_admin_disables_is_recorded_as_disabled():
    from lab.accounts.seal import account_seal_holds

    client, admin = client_as("admin")
    technician = person("technician")

    response = client.post(
        f"{ADMIN}accounts/user/{technician.pk}/password/",
        {"usable_password": "false", "unset-password": "1"},
    )

    assert response.status_code == 302
    technician.refresh_from_db()
    assert technician.has_usable_password() is False
    assert account_seal_holds(technician)
    records = AuditRecord.objects.filter(action="staff.account_changed")
    assert [(r.actor_id, r.context_id, r.justification) for r in records] == [
        (str(admin.public_id), str(technician.public_id), "password disabled")
    ]


def test_admin_reactivates_an_account_recorded_in_the_audit_chain():
    client, admin = client_as("admin")
    technician = person("technician", is_active=False)

    response = client.post(
        f"{ADMIN}accounts/user/{technician.pk}/change/",
        {
            "email": technician.email,
            "full_name": technician.full_name,
            "is_active": "on",
            "roles": ["technician"],
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    technician.refresh_from_db()
    assert technician.is_active is True
    records = AuditRecord.objects.filter(action="staff.account_changed")
    assert [(r.actor_id, r.context_id, r.justification) for r in records] == [
        (str(admin.public_id), str(technician.public_id), "activated")
    ]


def test_a_printer_the_admin_creates_is_recorded_in_the_audit_chain_with_its_destination():
    template = hotfolder_printer("minilab", sizes=["4x6"])
    client, admin = client_as("admin")

    response = client.post(
        f"{ADMIN}production/printer/add/",
        printer_form(
            template,
            name="minilab-new",
            backend="cups",
            target="Minilab",
            cups_server="print.example.net:631",
            host="alpha",
        ),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    created = Printer.objects.get(name="minilab-new")
    assert created.destination_is_sealed
    (record,) = AuditRecord.objects.filter(action="staff.printer_destination_set")
    assert (record.actor_id, record.context_type, record.context_id) == (
        str(admin.public_id),
        "printer",
        str(created.pk),
    )
    assert record.justification.split("; ") == [
        "backend - -> cups",
        "target - -> Minilab",
        "cups_server - -> print.example.net:631",
        "host - -> alpha",
    ]


def test_customers_are_not_listed_or_opened_in_the_admin():
    client, _ = client_as("admin")
    customer = person("customer")

    listing = client.get(f"{ADMIN}accounts/user/")
    opened = client.get(f"{ADMIN}accounts/user/{customer.pk}/change/")

    assert listing.status_code == 200
    assert customer.email not in listing.content.decode()
    assert opened.status_code == 302  # Django's "does not exist" answer: back to the admin index


def _a_product() -> Product:
    catalog_seed_demo()
    return Product.objects.get(sku="PRINT-4X6-LUSTRE")


def _a_printer_with_a_job() -> Printer:
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    return printer


def _a_staff_account() -> User:
    return person("technician")


@pytest.mark.parametrize(
    ("page", "made"),
    [
        ("catalog/product", _a_product),
        ("production/printer", _a_printer_with_a_job),
        ("accounts/user", _a_staff_account),
    ],
)
def test_only_catalog_printers_staff_accounts_and_shifts_are_registered_and_none_but_shifts_deleted(
    page, made
):
    # a product, a printer or a person deleted would orphan the orders, jobs and audit records naming them
    obj = made()
    client, _ = client_as("admin")

    registered = sorted(model._meta.label for model in site._registry)
    refused = client.post(f"{ADMIN}{page}/{obj.pk}/delete/", {"post": "yes"})

    # shifts may be removed (a person's shift ends); each change is in the audit chain
    assert registered == ["accounts.User", "audit.StaffShift", "catalog.Product", "production.Printer"]
    assert refused.status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_the_admins_own_styles_are_served_by_the_app_and_nothing_outside_them():
    client = Client()

    stylesheet = client.get("/static/admin/css/base.css")
    escape = client.get("/static/admin/../../../../settings.py")

    assert stylesheet.status_code == 200
    assert stylesheet["Content-Type"] == "text/css"
    assert escape.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_admins_saving_one_account_at_once_leave_an_audit_trail_that_ends_with_its_roles():
    # given a packer, and two lab admins (or one in two tabs) saving that account at the same moment
    first_admin, second_admin = person("admin"), person("admin")
    packer = person("packer")
    first: list[threading.Thread] = []

    def first_admin_saves() -> None:
        try:
            account = User.objects.get(pk=packer.pk)
            staff_account_save(actor=first_admin, user=account, roles=["packer", "technician"], is_new=False)
        finally:
            connection.close()  # this thread's own session, so the test database can be dropped

    def the_first_saves_meanwhile(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not first and "auth_group" in sql:
            # right after the second admin read the roles it changes, the first admin's save runs
            first.append(threading.Thread(target=first_admin_saves))
            first[0].start()
            deadline = time.monotonic() + 10
            while first[0].is_alive() and not holds_up_another_session() and time.monotonic() < deadline:
                time.sleep(0.02)
        return result

    with connection.execute_wrapper(the_first_saves_meanwhile):
        staff_account_save(
            actor=second_admin, user=User.objects.get(pk=packer.pk), roles=["auditor"], is_new=False
        )
    first[0].join(timeout=10)

    # then the audit trail, read in order, ends with the roles the account has: nobody holds a role the
    # log does not show (a change computed from roles read before the other save committed would hide one)
    roles = sorted(packer.groups.values_list("name", flat=True))
    changes = list(
        AuditRecord.objects.filter(action="staff.account_changed", context_id=str(packer.public_id))
        .order_by("seq")
        .values_list("justification", flat=True)
    )
    assert len(changes) == 2
    assert changes[-1].endswith(f"-> {','.join(roles)}"), (changes, roles)
    assert changes[0].startswith("roles packer ->")
    assert changes[1].startswith(f"roles {changes[0].rsplit('-> ', 1)[1]} ->"), changes


@pytest.mark.django_db(transaction=True)  # the other admin's account is committed in a session of its own
def test_an_e_mail_saved_by_another_admin_between_the_check_and_the_save_is_an_error_and_keeps_nothing():
    # given an admin's "add staff account" form for an address nobody has yet
    client, _ = client_as("admin")
    created_elsewhere: list[int] = []

    def another_admin_adds_it() -> None:
        created_elsewhere.append(person("technician", email="race@lab.example").pk)

    # when the form is saved after another admin's form, checked at the same moment, committed its account
    with committed_right_after_the_check("race@lab.example", another_admin_adds_it):
        response = client.post(
            f"{ADMIN}accounts/user/add/",
            {
                "email": "race@lab.example",
                "full_name": "Second Form",
                "password1": "a long enough secret 42",
                "password2": "a long enough secret 42",
                "roles": ["admin"],
            },
        )

    # then the admin is sent back to the form with the reason, and nothing of this form was saved: no second
    # account, no admin role, no LogEntry, no audit record of a creation
    assert response.status_code == 302, response.content.decode()[:3000]
    assert response["Location"] == f"{ADMIN}accounts/user/add/"
    page = client.get(response["Location"]).content.decode()
    assert "saved by someone else at the same moment" in page
    (account,) = User.objects.filter(email__iexact="race@lab.example")
    assert account.pk == created_elsewhere[0]
    assert sorted(account.groups.values_list("name", flat=True)) == ["technician"]
    assert not LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(User)).exists()
    assert not AuditRecord.objects.filter(action="staff.account_created").exists()


def test_the_admins_view_on_site_shortcut_answers_404_for_an_id_a_uuid_key_cannot_be():
    # Django's shortcut turned the UUID field's ValidationError into a 500 (seen in the URL crawl, when the
    # content type it filled in with a job's number was a model with a UUID key)
    from django.contrib.contenttypes.models import ContentType

    from lab.orders.models import Asset

    client, _ = client_as("admin")
    content_type = ContentType.objects.get_for_model(Asset)
    client.raise_request_exception = False

    response = client.get(f"/lab/admin/r/{content_type.pk}/38/")

    assert response.status_code == 404


def _admin_post_in_its_own_session(
    client: Client, path: str, data: dict[str, object]
) -> tuple[threading.Thread, list[Any]]:
    """The admin's POST, started in a thread (a session of its own) while this session holds a row lock."""
    responses: list[Any] = []

    def post() -> None:
        try:
            responses.append(client.post(path, data))
        finally:
            connection.close()  # this thread's own session, so the test database can be dropped

    thread = threading.Thread(target=post)
    thread.start()
    return thread, responses


@pytest.mark.django_db(
    transaction=True
)  # the technician's pause commits in this session, the admin's in its own
def test_a_printer_saved_in_the_admin_while_it_is_paused_and_its_restarts_read_keeps_its_live_state():
    """The admin's page read the printer (not paused), then waited for its row lock while a technician paused
    it on the board and the restart check moved its cursor: the save wrote every column of the page's copy,
    so the pause was undone (jobs sent during a paper change) and the cursor went back (a restart handled
    again, a printing job marked suspect for nothing). The page writes only what it edits."""
    assert connection.vendor == "postgresql"  # the wait is seen in pg_locks
    printer = hotfolder_printer("minilab", sizes=["4x6"], server_watch_id=12, server_event_sequence=40)
    technician = person("technician")
    client, _ = client_as("admin")
    changed_at = timezone.now() - timedelta(hours=1)

    with transaction.atomic():
        printer_pause(printer_id=printer.pk, actor=technician)  # holds the printer's row lock until commit
        Printer.objects.filter(pk=printer.pk).update(
            server_event_sequence=41,
            state="error",
            state_reasons=["media-empty"],
            state_changed_at=changed_at,
        )
        thread, responses = _admin_post_in_its_own_session(
            client,
            f"{ADMIN}production/printer/{printer.pk}/change/",
            printer_form(printer, location="Back room"),
        )
        assert until_another_session_waits(), "the admin's save never waited for the printer's row lock"
    thread.join(timeout=10)

    assert responses and responses[0].status_code == 302, responses and responses[0].content.decode()[:2000]
    printer.refresh_from_db()
    assert printer.location == "Back room"
    assert printer.is_paused_by_lab is True
    assert (printer.server_watch_id, printer.server_event_sequence) == (12, 41)
    assert (printer.state, printer.state_reasons, printer.state_changed_at) == (
        "error",
        ["media-empty"],
        changed_at,
    )
    assert printer.destination_is_sealed


@pytest.mark.django_db(transaction=True)  # the sign-in commits in this session, the admin's save in its own
def test_a_staff_account_saved_in_the_admin_while_its_owner_signs_in_keeps_what_the_page_does_not_show():
    """The page read the account, then waited for its row lock while its owner signed in (and changed their
    own profile): the save wrote every column of the page's copy, the sign-in's time and the profile's
    fields among them. The page writes only what it shows."""
    assert connection.vendor == "postgresql"  # the wait is seen in pg_locks
    technician = person("technician", last_login=None)
    client, _ = client_as("admin")
    signed_in_at = timezone.now()

    with transaction.atomic():
        User.objects.select_for_update().filter(pk=technician.pk).update(
            last_login=signed_in_at, marketing_opt_in=True, address={"city": "Leeds"}
        )
        thread, responses = _admin_post_in_its_own_session(
            client,
            f"{ADMIN}accounts/user/{technician.pk}/change/",
            {"email": technician.email, "full_name": "New Name", "is_active": "on", "roles": ["technician"]},
        )
        assert until_another_session_waits(), "the admin's save never waited for the account's row lock"
    thread.join(timeout=10)

    assert responses and responses[0].status_code == 302, responses and responses[0].content.decode()[:2000]
    technician.refresh_from_db()
    assert technician.full_name == "New Name"
    assert (technician.last_login, technician.marketing_opt_in, technician.address) == (
        signed_in_at,
        True,
        {"city": "Leeds"},
    )


def test_a_printer_the_admin_renames_and_moves_to_another_print_server_is_sealed_and_forgets_its_watch():
    """The admin's save writes only the fields it changed: the seal is still made of the row as stored, and a
    move to another print server still drops the old server's restart watch (Printer.save)."""
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    Printer.objects.filter(pk=printer.pk).update(
        is_paused_by_lab=True, server_watch_id=3, server_event_sequence=9
    )
    client, _ = client_as("admin")

    response = client.post(
        f"{ADMIN}production/printer/{printer.pk}/change/",
        printer_form(printer, name="minilab-2", backend="cups", target="Minilab", cups_server="10.0.0.2:631"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    printer.refresh_from_db()
    assert (printer.name, printer.backend, printer.target, printer.cups_server) == (
        "minilab-2",
        "cups",
        "Minilab",
        "10.0.0.2:631",
    )
    assert printer.destination_is_sealed
    assert (printer.server_watch_id, printer.server_event_sequence) == (None, 0)
    assert printer.is_paused_by_lab is True


def _printed_through_the_hot_folder() -> tuple[PrintJob, Printer]:
    """A job the printer's hot folder printed and the poll read (`printed`), its print file still in done/."""
    job, printer, _ = job_on_the_first_of_two_minilabs()
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    process_pending(folder=printer_folder(printer), delay_seconds=0)
    tracking.printer_poll()
    job.refresh_from_db()
    assert job.status == JobStatus.PRINTED
    assert _print_files(printer) == [f"{job.backend_job_id}.jpg"]
    return job, printer


def _print_files(printer: Printer) -> list[str]:
    return sorted(path.name for path in (printer_folder(printer) / "done").glob("*.jpg"))


def test_a_printer_moved_in_the_admin_leaves_no_copy_of_a_printed_job_at_its_old_destination():
    """The discard sweep asks each printer only at its destination as stored: a printer moved before the
    sweep erased its printed jobs' files left them at the old destination for ever (a hot folder's done/;
    a CUPS spool for a day). The move erases them there first."""
    job, printer = _printed_through_the_hot_folder()
    old_done = printer_folder(printer) / "done"
    client, _ = client_as("admin")

    response = client.post(
        f"{ADMIN}production/printer/{printer.pk}/change/", printer_form(printer, target="minilab-b")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Printer.objects.get(pk=printer.pk).target == "minilab-b"
    assert _print_files(printer) == []
    assert (old_done / f"{job.backend_job_id}.json").exists()  # the ticket, which says what printed, stays


def test_a_printer_whose_old_destination_does_not_answer_moves_only_if_the_admin_leaves_its_copies(
    monkeypatch,
):
    job, printer = _printed_through_the_hot_folder()
    client, _ = client_as("admin")

    def unreachable(self, *, title_prefix):
        raise printer_errors.TransientPrinterError(
            code=printer_errors.PRINTER_UNREACHABLE, message="cannot read hot folder"
        )

    monkeypatch.setattr(HotFolderBackend, "jobs_holding_documents", unreachable)
    url = f"{ADMIN}production/printer/{printer.pk}/change/"

    refused = client.post(url, printer_form(printer, target="minilab-b"))

    assert refused.status_code == 200
    assert "current destination does not answer" in refused.content.decode()
    assert Printer.objects.get(pk=printer.pk).target == "minilab"
    assert _print_files(printer) == [f"{job.backend_job_id}.jpg"]
    assert not AuditRecord.objects.filter(action="staff.printer_destination_set").exists()

    # moved all the same, on the record
    moved = client.post(url, printer_form(printer, target="minilab-b", old_copies_left="on"))

    assert moved.status_code == 302, moved.content.decode()[:2000]
    assert Printer.objects.get(pk=printer.pk).target == "minilab-b"
    (record,) = AuditRecord.objects.filter(action="staff.printer_destination_set")
    assert record.justification.split("; ") == [
        "target minilab -> minilab-b",
        "moved all the same: the old destination did not answer, copies of finished jobs stay there",
    ]
