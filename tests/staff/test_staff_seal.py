"""A staff account changed in the database alone cannot be used (lab/accounts/seal.py).

The tampering is done as a database administrator would: SQL on the tables, with a password hash made
offline. The lab's own tools (the lab admin's forms, `manage.py staff_account_seal`, a sign-in that upgrades
a password's hash) keep the account usable.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils.html import escape

from lab.accounts.models import SecurityEvent, User
from lab.accounts.sessions import stored_key
from lab.audit.models import AuditRecord
from lab.audit.staff_seal import REFUSAL_MESSAGE
from tests.builders import PASSWORD, client_as, person
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
ADMIN = "/lab/admin/"
DBA_PASSWORD = "the dba chose this one"


def dba_grants(user: User, role: str) -> None:
    Group.objects.get_or_create(name=role)  # the role exists (a flushing test may have emptied the table)
    dba(
        "INSERT INTO accounts_user_groups (user_id, group_id) SELECT %s, id FROM auth_group WHERE name = %s",
        user.pk,
        role,
    )


def sign_in(email: str, password: str) -> tuple[Client, int]:
    client = Client()
    response = client.post("/lab/login/", {"email": email, "password": password})
    return client, response.status_code


def refusals(user: User) -> tuple[int, list[tuple[str, str]]]:
    events = SecurityEvent.objects.filter(user=user, kind="account_seal_broken").count()
    records = AuditRecord.objects.filter(action="staff.account_refused", context_id=str(user.public_id))
    return events, [(r.outcome, r.rule) for r in records]


def test_a_role_given_in_the_database_is_refused_on_every_staff_page_and_the_photo_gate_and_recorded():
    client, technician = client_as("technician")
    assert client.get("/lab/board/").status_code == 200

    dba_grants(technician, "supervisor")

    board = client.get("/lab/board/")
    assert board.status_code == 403 and escape(REFUSAL_MESSAGE) in board.content.decode()
    assert client.get("/lab/board/").status_code == 302  # signed out: sent to the sign-in page
    client.force_login(technician)
    photo = client.get(
        f"/lab/photos/{uuid.uuid4()}/full?purpose=printing&context_type=print_job&context_id=1"
        "&justification=checking the colour of this print"
    )
    assert photo.status_code == 403 and not photo["Content-Type"].startswith("image/")
    denied = ("denied", "account_changed_outside_the_lab")
    assert refusals(technician) == (2, [denied, denied])


def test_a_customer_given_a_staff_role_in_the_database_is_refused():
    customer = person("customer")
    dba_grants(customer, "technician")

    client, status = sign_in(customer.email, PASSWORD)

    assert status == 403
    assert client.get("/lab/board/").status_code == 302
    assert refusals(customer)[0] == 1


def test_a_password_hash_set_in_the_database_does_not_sign_in():
    technician = person("technician")
    dba("UPDATE accounts_user SET password = %s WHERE id = %s", make_password(DBA_PASSWORD), technician.pk)

    client, status = sign_in(technician.email, DBA_PASSWORD)

    assert status == 403
    assert client.get("/lab/board/").status_code == 302
    assert refusals(technician)[0] == 1


def test_another_accounts_password_and_seal_copied_onto_an_account_do_not_hold():
    """The seal names its account: the DBA's own staff account's seal is no good on a supervisor's."""
    own = person("technician")
    supervisor = person("supervisor")
    dba(
        "UPDATE accounts_user SET password = o.password, account_seal = o.account_seal"
        " FROM accounts_user o WHERE o.id = %s AND accounts_user.id = %s",
        own.pk,
        supervisor.pk,
    )

    assert sign_in(supervisor.email, PASSWORD)[1] == 403
    assert sign_in(own.email, PASSWORD)[1] == 302  # the copy's source is untouched


def test_an_accounts_public_id_password_and_seal_moved_onto_a_colleagues_row_do_not_sign_in_as_them():
    """The seal names its row: a technician who moves their own public id, password hash and seal onto a
    colleague's row (same roles, so the seal held there before) cannot sign in as the colleague."""
    own = person("technician")
    colleague = person("technician")
    moved = User.objects.values_list("public_id", "password", "account_seal").get(pk=own.pk)
    dba("UPDATE accounts_user SET public_id = %s WHERE id = %s", str(uuid.uuid4()), own.pk)
    dba(
        "UPDATE accounts_user SET public_id = %s, password = %s, account_seal = %s WHERE id = %s",
        str(moved[0]),
        moved[1],
        moved[2],
        colleague.pk,
    )

    client, status = sign_in(colleague.email, PASSWORD)  # the colleague's e-mail, the mover's own password

    assert status == 403
    assert client.get("/lab/board/").status_code == 302
    assert SecurityEvent.objects.filter(user=colleague, kind="account_seal_broken").count() == 1
    assert AuditRecord.objects.filter(
        action="staff.account_refused", context_id=str(moved[0]), outcome="denied"
    ).exists()


def test_a_dismissed_account_made_active_again_in_the_database_is_refused():
    admin_client, _ = client_as("admin")
    technician = person("technician")
    admin_client.post(  # the lab admin deactivates it (the "active" box not sent)
        f"{ADMIN}accounts/user/{technician.pk}/change/",
        {"email": technician.email, "full_name": technician.full_name, "roles": ["technician"]},
    )
    assert sign_in(technician.email, PASSWORD)[1] == 401  # inactive: Django's backend refuses it

    dba("UPDATE accounts_user SET is_active = true WHERE id = %s", technician.pk)

    assert sign_in(technician.email, PASSWORD)[1] == 403


def test_the_lab_admins_role_and_password_changes_keep_the_account_usable():
    admin_client, _ = client_as("admin")
    technician = person("technician")

    changed = admin_client.post(
        f"{ADMIN}accounts/user/{technician.pk}/change/",
        {
            "email": technician.email,
            "full_name": technician.full_name,
            "is_active": "on",
            "roles": ["supervisor"],
        },
    )
    password = admin_client.post(
        f"{ADMIN}accounts/user/{technician.pk}/password/",
        {"password1": "a brand new secret 51", "password2": "a brand new secret 51"},
    )

    assert (changed.status_code, password.status_code) == (302, 302)
    client, status = sign_in(technician.email, "a brand new secret 51")
    assert status == 302 and client.get("/lab/supervisor/").status_code == 200
    assert AuditRecord.objects.filter(
        action="staff.account_changed", context_id=str(technician.public_id), justification="password set"
    ).exists()


def test_a_password_hash_django_upgrades_at_sign_in_keeps_the_account_sealed(settings):
    technician = person("technician")  # its hash made by the suite's fast hasher
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]

    client, status = sign_in(technician.email, PASSWORD)

    technician.refresh_from_db()
    assert technician.password.startswith("pbkdf2_sha256$")  # upgraded by Django at the sign-in
    assert status == 302 and client.get("/lab/board/").status_code == 200


def test_an_auditor_account_changed_in_the_database_cannot_read_the_log_over_the_api():
    client, auditor = client_as("auditor")
    assert client.get("/api/v1/audit/records").status_code == 200

    dba_grants(auditor, "admin")

    refused = client.get("/api/v1/audit/records")
    assert (refused.status_code, refused.json()["detail"]) == (403, REFUSAL_MESSAGE)
    assert refusals(auditor)[0] == 1


def test_an_operator_seals_an_account_again_on_the_record():
    technician = person("technician")
    dba_grants(technician, "packer")
    assert sign_in(technician.email, PASSWORD)[1] == 403

    call_command("staff_account_seal", technician.email)

    assert sign_in(technician.email, PASSWORD)[1] == 302
    record = AuditRecord.objects.get(action="staff.account_sealed")
    assert (record.context_id, record.actor_role, record.justification) == (
        str(technician.public_id),
        "system",
        "roles packer,technician; active",
    )


def test_a_live_session_read_from_the_database_opens_nothing():
    """The session table holds keyed hashes of the cookies' keys: a DBA who reads it cannot be the person."""
    client, _ = client_as("supervisor")
    assert client.get("/lab/board/").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_key FROM django_session")
        keys = [row[0] for row in cursor.fetchall()]
    assert keys and client.cookies["sessionid"].value not in keys

    for key in keys:
        thief = Client()
        thief.cookies["sessionid"] = key
        assert thief.get("/lab/board/").status_code == 302  # sent to the sign-in page
    assert client.get("/lab/board/").status_code == 200  # the supervisor's own session goes on


def session_data_of(client: Client) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT session_data FROM django_session WHERE session_key = %s",
            [stored_key(client.cookies["sessionid"].value)],
        )
        return str(cursor.fetchone()[0])


def test_an_admins_session_data_copied_onto_a_technicians_session_opens_nothing():
    """A session's data is signed for its own key: a technician who copies a live admin's session data onto
    the row of their own session (whose cookie they hold) is signed out, not the admin."""
    admin, _ = client_as("admin")
    technician, _ = client_as("technician")
    assert admin.get(ADMIN).status_code == 200 and technician.get(ADMIN).status_code == 403

    dba(
        "UPDATE django_session SET session_data = %s WHERE session_key = %s",
        session_data_of(admin),
        stored_key(technician.cookies["sessionid"].value),
    )

    assert technician.get(ADMIN).status_code == 302  # an empty session: sent to the sign-in page
    assert technician.get("/lab/board/").status_code == 302
    assert admin.get(ADMIN).status_code == 200  # the admin's own session goes on


def test_a_session_goes_on_across_requests_and_across_the_sign_ins_new_key():
    # given a session that holds something before the sign-in (whose new key it keeps, re-signed for it)
    technician = person("technician")
    client = Client()
    session = client.session
    session["before_sign_in"] = "kept"
    session.save()
    before = session.session_key

    response = client.post("/lab/login/", {"email": technician.email, "password": PASSWORD})

    assert response.status_code == 302 and client.cookies["sessionid"].value != before
    assert client.session["before_sign_in"] == "kept"
    assert [client.get("/lab/board/").status_code for _ in range(3)] == [200, 200, 200]
    # and a key cycled again (as another sign-in would) keeps it signed in under the new key
    session = client.session
    session.cycle_key()
    client.cookies["sessionid"] = str(session.session_key)
    assert client.get("/lab/board/").status_code == 200 and client.session["before_sign_in"] == "kept"


def test_the_first_lab_admin_is_made_on_the_app_host_sealed_and_on_the_record(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("the first admin's long secret 8\n")

    call_command(
        "staff_account_create", "First.Admin@lab.example", "--role", "admin", "--password-file", str(secret)
    )

    client, status = sign_in("first.admin@lab.example", "the first admin's long secret 8")
    assert status == 302 and client.get("/lab/admin/").status_code == 200
    record = AuditRecord.objects.get(action="staff.account_created")
    assert (record.actor_role, record.rule, record.justification) == (
        "system",
        "operator_command",
        "created; roles - -> admin",
    )
    secret.write_text("short")
    with pytest.raises(CommandError, match="too short"):
        call_command(
            "staff_account_create", "second@lab.example", "--role", "admin", "--password-file", str(secret)
        )
    assert not User.objects.filter(email="second@lab.example").exists()


def test_a_secret_key_rotation_keeps_seals_while_the_old_key_is_a_fallback(settings):
    technician = person("technician")
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a new secret key for the rotation, fifty characters or more long"

    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert sign_in(technician.email, PASSWORD)[1] == 302
    settings.SECRET_KEY_FALLBACKS = []  # dropped before the accounts were sealed again
    assert sign_in(technician.email, PASSWORD)[1] == 403
    call_command("staff_account_seal", "--all")
    assert sign_in(technician.email, PASSWORD)[1] == 302


def test_the_lab_admin_setting_a_password_does_not_seal_a_role_granted_in_the_database():
    # given a technician given the supervisor role in SQL (refused since), and a lab admin who resets their
    # password from the admin's password form, which shows no roles
    admin_client, _ = client_as("admin")
    technician = person("technician")
    dba_grants(technician, "supervisor")

    reset = admin_client.post(
        f"{ADMIN}accounts/user/{technician.pk}/password/",
        {"password1": "a brand new secret 52", "password2": "a brand new secret 52"},
    )

    # then the password is set but the account stays refused, and the record says why (before, the form
    # sealed the account as it stood: the role granted in SQL became the lab's own, unseen)
    assert reset.status_code == 302
    assert sign_in(technician.email, "a brand new secret 52")[1] == 403
    assert AuditRecord.objects.filter(
        action="staff.account_changed",
        context_id=str(technician.public_id),
        justification="password set; not sealed: the account was changed outside the lab",
    ).exists()

    # when the admin saves the account's page, which shows its roles, the state is accepted on the record;
    # the page shows no password, so the one the account holds is not accepted with it (the lab cannot tell
    # it from a hash written in the database): it is made unusable, and the admin sets it again
    saved = admin_client.post(
        f"{ADMIN}accounts/user/{technician.pk}/change/",
        {
            "email": technician.email,
            "full_name": technician.full_name,
            "is_active": "on",
            "roles": ["supervisor", "technician"],
        },
    )
    assert saved.status_code == 302
    assert sign_in(technician.email, "a brand new secret 52")[1] == 401
    assert AuditRecord.objects.filter(
        action="staff.account_changed",
        context_id=str(technician.public_id),
        justification="accepted a state changed outside the lab (roles found: supervisor,technician);"
        " password made unusable: set a new one",
    ).exists()
    set_again = admin_client.post(
        f"{ADMIN}accounts/user/{technician.pk}/password/",
        {"password1": "a brand new secret 52", "password2": "a brand new secret 52"},
    )
    assert set_again.status_code == 302
    assert sign_in(technician.email, "a brand new secret 52")[1] == 302


def test_saving_the_page_of_an_account_whose_password_the_dba_wrote_does_not_make_that_password_usable():
    # given a technician on whom a database administrator wrote a password hash of their own (refused since)
    admin_client, _ = client_as("admin")
    technician = person("technician")
    dba("UPDATE accounts_user SET password = %s WHERE id = %s", make_password(DBA_PASSWORD), technician.pk)
    assert sign_in(technician.email, DBA_PASSWORD)[1] == 403

    # when a lab admin opens the account's page, sees the right roles and saves it
    saved = admin_client.post(
        f"{ADMIN}accounts/user/{technician.pk}/change/",
        {
            "email": technician.email,
            "full_name": technician.full_name,
            "is_active": "on",
            "roles": ["technician"],
        },
        follow=True,
    )

    # then the page never showed the password, so its save did not accept it: the account is sealed with no
    # usable password (before, the DBA signed in as the technician), the admin is told to set a new one, and
    # the record says so
    assert saved.status_code == 200
    assert sign_in(technician.email, DBA_PASSWORD)[1] == 401
    technician.refresh_from_db()
    assert technician.has_usable_password() is False
    assert any("password was made unusable" in str(message) for message in saved.context["messages"])
    assert AuditRecord.objects.filter(
        action="staff.account_changed",
        context_id=str(technician.public_id),
        justification="accepted a state changed outside the lab (roles found: technician); password made "
        "unusable: set a new one",
    ).exists()

    # and the lab admin's password form, now on a sealed account, gives it a password it can sign in with
    admin_client.post(
        f"{ADMIN}accounts/user/{technician.pk}/password/",
        {"password1": "a brand new secret 53", "password2": "a brand new secret 53"},
    )
    client, status = sign_in(technician.email, "a brand new secret 53")
    assert status == 302 and client.get("/lab/board/").status_code == 200
