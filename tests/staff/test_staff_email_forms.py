"""Staff and operator paths take an e-mail address in the form the lab stores it (lab/lib/email_address.py
`email_canonical`: the domain as its mail goes to, IDNA): a staff member whose address has a non-ASCII domain
is stored as anna@xn--bcher-kva.example since accounts/0010, and signs in, is looked up by the operator's
commands and by the lab admin's forms with the address as she types it, anna@bücher.example."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from lab.accounts.models import SecurityEvent, User
from lab.accounts.seal import account_seal_holds
from lab.accounts.signin import SignInAttempt
from lab.audit.models import AuditRecord
from lab.gate.selectors import actor_id_for
from tests.builders import PASSWORD, client_as, person
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
TYPED = "Anna@Bücher.example"
STORED = "anna@xn--bcher-kva.example"


def staff_sign_in(email: str, password: str) -> int:
    return Client().post("/lab/login/", {"email": email, "password": password}).status_code


def test_a_staff_member_with_a_non_ascii_domain_signs_in_with_her_address_as_she_types_it():
    anna = person("technician", email=STORED)

    assert staff_sign_in(TYPED, PASSWORD) == 302
    assert staff_sign_in("anna@bücher.example", PASSWORD) == 302
    assert staff_sign_in(STORED, PASSWORD) == 302
    assert actor_id_for(employee=TYPED) == str(anna.public_id)


def test_every_spelling_of_a_staff_address_is_counted_against_one_account():
    # the staff login passes the address as typed; counted per spelling, each was a fresh limit
    spellings = [TYPED, STORED, "anna@b\u00adücher.example", "anna@\uff42ücher.example"]
    counted = {
        SignInAttempt(email=email, client_ip=None, channel=SecurityEvent.Channel.STAFF_LOGIN).email_sha256
        for email in spellings
    }

    assert len(counted) == 1


def test_the_operators_commands_find_and_create_an_account_by_its_address_as_typed(tmp_path: Path):
    # given a technician whose role was written in the database, refused until an operator seals it
    anna = person("technician", email=STORED)
    Group.objects.get_or_create(
        name="supervisor"
    )  # the role exists (a flushing test may have emptied the table)
    dba(
        "INSERT INTO accounts_user_groups (user_id, group_id) SELECT %s, id FROM auth_group WHERE name = %s",
        anna.pk,
        "supervisor",
    )
    assert staff_sign_in(STORED, PASSWORD) == 403

    # when the operator seals it, naming the address as she spells it, then it is found and sealed
    out = StringIO()
    call_command("staff_account_seal", TYPED, stdout=out)

    assert f"sealed {anna.public_id}" in out.getvalue()
    assert account_seal_holds(User.objects.get(pk=anna.pk))
    assert staff_sign_in(TYPED, PASSWORD) == 302

    # and an account created by the operator's command is stored in that form, and one already there in it is
    # found
    secret = tmp_path / "secret"
    secret.write_text("a long enough secret 42\n")
    call_command(
        "staff_account_create", "Ben@Bücher.example", "--role", "admin", "--password-file", str(secret)
    )
    assert User.objects.filter(email="ben@xn--bcher-kva.example").exists()
    with pytest.raises(Exception, match="exists already"):
        call_command("staff_account_create", TYPED, "--role", "admin", "--password-file", str(secret))


def test_the_lab_admin_stores_a_staff_address_in_the_form_its_mail_goes_to():
    client, _admin = client_as("admin")

    response = client.post(
        "/lab/admin/accounts/user/add/",
        {
            "email": "Carl@Bücher.example",
            "full_name": "Carl",
            "password1": "a long enough secret 42",
            "password2": "a long enough secret 42",
            "roles": ["technician"],
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    created = User.objects.get(email="carl@xn--bcher-kva.example")
    assert AuditRecord.objects.filter(
        action="staff.account_created", context_id=str(created.public_id)
    ).exists()
    assert staff_sign_in("carl@bücher.example", "a long enough secret 42") == 302
