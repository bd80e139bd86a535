"""A database administrator cannot take over a customer's account to download their photos: a password hash
they set gets no token, and a token row they make up or move to another account authenticates nobody
(lab/accounts/seal.py, lab/accounts/tokens.py). The tampering is SQL, as the administrator writes it."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from django.contrib.auth.hashers import make_password
from rest_framework.test import APIClient

from lab.accounts.models import ApiToken, SecurityEvent, User
from lab.accounts.services import policy_current
from tests.builders import PASSWORD, UserFactory
from tests.builders.orders import asset_for
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
DBA_PASSWORD = "the dba chose this one"


def token_for(email: str, password: str) -> tuple[int, dict[str, object]]:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": password, "name": "dba"}, format="json"
    )
    return response.status_code, response.json()


def as_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_password_hash_set_in_the_database_gets_no_token():
    customer = UserFactory.create()
    dba("UPDATE accounts_user SET password = %s WHERE id = %s", make_password(DBA_PASSWORD), customer.pk)

    status, body = token_for(customer.email, DBA_PASSWORD)

    assert (status, body["code"]) == (403, "account_changed_outside_the_lab")
    assert not ApiToken.objects.filter(user=customer).exists()
    assert SecurityEvent.objects.filter(user=customer, kind="account_seal_broken").count() == 1


def test_a_token_row_made_up_in_the_database_reads_nothing_of_the_account():
    customer = UserFactory.create()
    photo = asset_for(customer)
    key = secrets.token_hex(20)
    dba(
        "INSERT INTO accounts_apitoken"
        " (public_id, user_id, name, key_sha256, key_prefix, binding, created_at)"
        " VALUES (gen_random_uuid(), %s, 'dba', %s, %s, %s, now())",
        customer.pk,
        hashlib.sha256(key.encode()).hexdigest(),
        key[:8],
        hashlib.sha256(b"a binding made up").hexdigest(),
    )

    assert as_token(key).get("/api/v1/me").status_code == 401
    assert as_token(key).get(f"/api/v1/assets/{photo.pk}/content").status_code == 401


def test_a_token_moved_to_another_account_authenticates_nobody():
    dba_account = UserFactory.create()
    victim = UserFactory.create()
    status, body = token_for(dba_account.email, PASSWORD)
    assert status == 200 and as_token(str(body["token"])).get("/api/v1/me").status_code == 200

    dba("UPDATE accounts_apitoken SET user_id = %s WHERE user_id = %s", victim.pk, dba_account.pk)

    assert as_token(str(body["token"])).get("/api/v1/me").status_code == 401


def test_a_token_moved_to_another_account_with_its_public_id_reads_nothing_of_that_account():
    # given the DBA's own customer account with a token, and another customer's photo
    dba_account = UserFactory.create()
    victim = UserFactory.create()
    photo = asset_for(victim)
    status, body = token_for(dba_account.email, PASSWORD)
    key = str(body["token"])
    assert status == 200 and as_token(key).get("/api/v1/me").status_code == 200

    # when the DBA moves the token and its owner's public id (which its binding covers) to the victim's row
    dba("UPDATE accounts_user SET public_id = gen_random_uuid() WHERE id = %s", dba_account.pk)
    dba("UPDATE accounts_user SET public_id = %s WHERE id = %s", str(dba_account.public_id), victim.pk)
    dba("UPDATE accounts_apitoken SET user_id = %s WHERE user_id = %s", victim.pk, dba_account.pk)

    # then the token authenticates nobody (the victim's account seal no longer holds), on the record
    assert as_token(key).get("/api/v1/me").status_code == 401
    assert as_token(key).get(f"/api/v1/assets/{photo.pk}/content").status_code == 401
    assert SecurityEvent.objects.filter(user=victim, kind="account_seal_broken").count() == 2


def test_the_customers_own_password_change_and_registration_keep_the_account_usable():
    registered = APIClient().post(
        "/api/v1/accounts",
        {
            "email": "new.customer@example.org",
            "password": "a long first secret 19",
            "full_name": "New Customer",
            "address": {
                "name": "New Customer",
                "line1": "1 Harbour Road",
                "city": "Portville",
                "postal_code": "97035",
                "country": "US",
            },
            "birth_date": "1990-01-01",
            "privacy_policy_version": policy_current().version,
        },
        format="json",
    )
    assert registered.status_code == 201, registered.json()
    changed = as_token(registered.json()["token"]).patch(
        "/api/v1/me",
        {"current_password": "a long first secret 19", "new_password": "a long second secret 23"},
        format="json",
    )
    assert changed.status_code == 200, changed.json()

    status, body = token_for("new.customer@example.org", "a long second secret 23")

    assert status == 200 and as_token(str(body["token"])).get("/api/v1/me").status_code == 200
    assert User.objects.get(email="new.customer@example.org").account_seal
