"""A staff member's /lab/ session reaches the API (the auditors' console reads with it), but not My Account:
the customers' password change sealed the account as it stood, so a role a database administrator had just
granted became the lab's own (lab/accounts/seal.py). Staff accounts are a lab admin's to change.

The session is a real one (signed in at /lab/login/, CSRF checked), and the grant is SQL, as a DBA writes it.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from lab.accounts.models import SecurityEvent, User
from lab.accounts.seal import account_seal_holds
from lab.audit.models import AuditRecord
from lab.audit.staff_seal import REFUSAL_MESSAGE
from tests.builders import PASSWORD, person
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a brand new passphrase 77"


def signed_in_at_the_lab(email: str) -> Client:
    """A browser that signed in on the staff login page, CSRF checks on, as a person's browser does."""
    browser = Client(enforce_csrf_checks=True)
    browser.get("/lab/login/")
    signed_in = browser.post(
        "/lab/login/",
        {"email": email, "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"].value},
    )
    assert signed_in.status_code == 302, signed_in.content.decode()[:300]
    return browser


def patch_me(browser: Client, body: dict[str, str]) -> tuple[int, dict[str, object]]:
    response = browser.patch(
        "/api/v1/me",
        body,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
    )
    return response.status_code, response.json()


def staff_login_status(email: str, password: str) -> int:
    return Client().post("/lab/login/", {"email": email, "password": password}).status_code


def test_a_role_granted_in_the_database_is_not_sealed_by_a_password_change_over_the_api():
    # given a technician signed in at /lab/, and then a DBA grants the supervisor role in SQL
    technician = person("technician")
    browser = signed_in_at_the_lab(technician.email)
    Group.objects.get_or_create(name="supervisor")
    dba(
        "INSERT INTO accounts_user_groups (user_id, group_id)"
        " SELECT %s, id FROM auth_group WHERE name = 'supervisor'",
        technician.pk,
    )
    stored_before = User.objects.values_list("password", "account_seal").get(pk=technician.pk)

    # when the technician changes the password through the customers' My Account with that session
    status, body = patch_me(browser, {"current_password": PASSWORD, "new_password": NEW_PASSWORD})

    # then it is refused on the record, nothing is written, and the account stays refused at the sign-in
    assert (status, body.get("code"), body.get("detail")) == (
        403,
        "account_changed_outside_the_lab",
        REFUSAL_MESSAGE,
    )
    assert User.objects.values_list("password", "account_seal").get(pk=technician.pk) == stored_before
    assert not account_seal_holds(User.objects.get(pk=technician.pk))
    events = SecurityEvent.objects.filter(user=technician, kind="account_seal_broken")
    assert list(events.values_list("channel", flat=True)) == ["api"]
    refused = AuditRecord.objects.get(action="staff.account_refused", context_id=str(technician.public_id))
    assert (refused.outcome, refused.rule) == ("denied", "account_changed_outside_the_lab")
    assert staff_login_status(technician.email, PASSWORD) == 403
    assert staff_login_status(technician.email, NEW_PASSWORD) == 401


def test_a_staff_member_whose_account_holds_its_seal_is_sent_to_the_lab_admin_and_nothing_changes():
    supervisor = person("supervisor")
    browser = signed_in_at_the_lab(supervisor.email)
    stored_before = User.objects.values_list("full_name", "password", "account_seal").get(pk=supervisor.pk)

    read = browser.get("/api/v1/me")
    status, body = patch_me(
        browser, {"full_name": "Someone Else", "current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )

    assert (read.status_code, read.json().get("code")) == (403, "staff_account_not_a_customer")
    assert (status, body.get("code")) == (403, "staff_account_not_a_customer")
    assert User.objects.values_list("full_name", "password", "account_seal").get(pk=supervisor.pk) == (
        stored_before
    )
    # a sealed account refused here is no tampering: nothing on the account's security log or the audit log
    assert not SecurityEvent.objects.filter(user=supervisor).exists()
    assert not AuditRecord.objects.filter(action="staff.account_refused").exists()
    assert browser.get("/lab/supervisor/").status_code == 200  # the /lab/ session goes on


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/me/export"),
        ("get", "/api/v1/me/receipts"),
        ("get", "/api/v1/me/tokens"),
        ("delete", "/api/v1/me/tokens/00000000-0000-0000-0000-000000000000"),
    ],
)
def test_the_rest_of_my_account_is_not_a_staff_members_either(method, path):
    # the customers' export, receipts and tokens: a staff session read them before, as a customer's
    browser = signed_in_at_the_lab(person("technician").email)

    response = getattr(browser, method)(path, HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)

    assert (response.status_code, response.json()["code"]) == (403, "staff_account_not_a_customer")
