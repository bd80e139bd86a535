"""Customers' named API tokens: shown once, stored as a hash, listed, revoked; a password change ends them;
staff get none."""

from __future__ import annotations

import hashlib

import pytest
from rest_framework.test import APIClient

from lab.accounts.models import ApiToken, SecurityEvent
from lab.accounts.roles import user_roles
from lab.accounts.services import policy_current
from lab.accounts.tokens import api_token_authenticate, api_token_issue
from tests.builders import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def sign_in(email: str, name: str = "api") -> str:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": PASSWORD, "name": name}, format="json"
    )
    assert response.status_code == 200, response.json()
    return str(response.json()["token"])


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_tokens_are_listed_without_their_keys_and_only_a_hash_is_stored():
    UserFactory.create(email="ada@example.org")
    laptop = sign_in("ada@example.org", name="laptop")
    phone = sign_in("ada@example.org", name="phone")

    listed = client_with(laptop).get("/api/v1/me/tokens")

    assert listed.status_code == 200
    assert [(t["name"], t["key_prefix"]) for t in listed.json()] == [
        ("phone", phone[:8]),
        ("laptop", laptop[:8]),
    ]
    assert all(set(t) == {"id", "name", "key_prefix", "created_at", "last_used_at"} for t in listed.json())
    stored = set(ApiToken.objects.values_list("key_sha256", flat=True))
    assert stored == {hashlib.sha256(laptop.encode()).hexdigest(), hashlib.sha256(phone.encode()).hexdigest()}
    assert listed.json()[1]["last_used_at"] is not None  # the laptop token was just used


def test_a_revoked_token_stops_working_at_once_and_the_others_keep_working():
    customer = UserFactory.create(email="ada@example.org")
    laptop, phone = sign_in("ada@example.org", "laptop"), sign_in("ada@example.org", "phone")
    phone_id = ApiToken.objects.get(name="phone").public_id

    revoked = client_with(laptop).delete(
        f"/api/v1/me/tokens/{phone_id}", {"password": PASSWORD}, format="json"
    )

    assert revoked.status_code == 204
    assert client_with(phone).get("/api/v1/me").status_code == 401
    assert client_with(laptop).get("/api/v1/me").status_code == 200
    event = SecurityEvent.objects.get(kind="token_revoked")
    assert (event.user, event.detail) == (customer, {"token": str(phone_id), "reason": "owner"})


def test_nobody_revokes_another_customers_token_and_nothing_changes():
    UserFactory.create(email="ada@example.org")
    UserFactory.create(email="bo@example.org")
    ada, bo = sign_in("ada@example.org"), sign_in("bo@example.org")
    bos_token = ApiToken.objects.get(user__email="bo@example.org").public_id

    # with Ada's right password: the confirmation another token's revocation needs is no key to Bo's
    response = client_with(ada).delete(
        f"/api/v1/me/tokens/{bos_token}", {"password": PASSWORD}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (404, "token_not_found")
    assert client_with(bo).get("/api/v1/me").status_code == 200
    assert ApiToken.objects.count() == 2
    assert not SecurityEvent.objects.filter(kind="token_revoked").exists()


def test_a_password_change_revokes_every_token_and_a_new_sign_in_works():
    customer = UserFactory.create(email="ada@example.org")
    laptop, phone = sign_in("ada@example.org", "laptop"), sign_in("ada@example.org", "phone")

    changed = client_with(laptop).patch(
        "/api/v1/me",
        {"current_password": PASSWORD, "new_password": "a brand new passphrase 9"},
        format="json",
    )

    assert changed.status_code == 200
    assert [client_with(t).get("/api/v1/me").status_code for t in (laptop, phone)] == [401, 401]
    assert ApiToken.objects.count() == 0
    event = SecurityEvent.objects.get(kind="password_changed")
    assert (event.user, event.detail, event.client_ip) == (customer, {"tokens_revoked": 2}, "127.0.0.1")
    fresh = APIClient().post(
        "/api/v1/auth/token",
        {"email": "ada@example.org", "password": "a brand new passphrase 9"},
        format="json",
    )
    assert fresh.status_code == 200


def test_a_refused_password_change_keeps_every_token():
    UserFactory.create(email="ada@example.org")
    laptop = sign_in("ada@example.org", "laptop")

    refused = client_with(laptop).patch(
        "/api/v1/me", {"current_password": "wrong", "new_password": "a brand new passphrase 9"}, format="json"
    )

    assert (refused.status_code, refused.json()["code"]) == (403, "wrong_password")
    assert client_with(laptop).get("/api/v1/me").status_code == 200
    assert not SecurityEvent.objects.filter(kind="password_changed").exists()


def test_staff_get_no_api_token_and_a_token_left_from_before_is_refused():
    auditor = UserFactory.create(email="audrey@lab.example", roles=["auditor"])
    old_key = "0123456789abcdef0123456789abcdef01234567"  # e.g. a token from before staff had none
    ApiToken.objects.create(
        user=auditor,
        name="old",
        key_sha256=hashlib.sha256(old_key.encode()).hexdigest(),
        key_prefix="01234567",
    )

    refused = APIClient().post(
        "/api/v1/auth/token", {"email": "audrey@lab.example", "password": PASSWORD}, format="json"
    )
    with_old_token = client_with(old_key).get("/api/v1/audit/records")
    in_session = APIClient()
    in_session.force_login(auditor)

    assert (refused.status_code, refused.json()["code"]) == (403, "staff_tokens_not_issued")
    assert ApiToken.objects.count() == 1
    assert (with_old_token.status_code, with_old_token.json()["code"]) == (401, "authentication_failed")
    assert in_session.get("/api/v1/audit/records").status_code == 200


def test_issuing_beyond_the_cap_revokes_the_least_recently_used_token(settings):
    settings.API_TOKENS_PER_USER = 2
    UserFactory.create(email="ada@example.org")
    first, second = sign_in("ada@example.org", "first"), sign_in("ada@example.org", "second")
    assert client_with(first).get("/api/v1/me").status_code == 200  # first is now the most recently used

    third = sign_in("ada@example.org", "third")

    assert sorted(ApiToken.objects.values_list("name", flat=True)) == ["first", "third"]
    assert [client_with(t).get("/api/v1/me").status_code for t in (first, second, third)] == [200, 401, 200]
    assert SecurityEvent.objects.get(kind="token_revoked").detail["reason"] == "token_limit"


def test_a_token_brings_its_owners_roles_in_the_same_query(django_assert_num_queries):
    # given a customer in two roles, with a token just used (so its last-used stamp is not written again)
    customer = UserFactory.create(roles=["customer", "beta-tester"])
    key = api_token_issue(user=customer, name="phone").key
    api_token_authenticate(key=key)

    # when the token is checked and the roles of its owner are asked for
    with django_assert_num_queries(1):
        found = api_token_authenticate(key=key)
        assert found is not None
        roles = user_roles(found[0])

    # then one query answered both
    assert (found[0].pk, roles) == (customer.pk, {"customer", "beta-tester"})


def test_a_token_of_a_customer_who_also_holds_a_staff_role_is_refused():
    # given a token made before its owner also became a packer (staff are issued none)
    packer = UserFactory.create(roles=["customer", "packer"])
    old_key = "89abcdef0123456789abcdef0123456789abcdef"
    ApiToken.objects.create(
        user=packer,
        name="old",
        key_sha256=hashlib.sha256(old_key.encode()).hexdigest(),
        key_prefix="89abcdef",
    )

    refused = client_with(old_key).get("/api/v1/me")

    assert api_token_authenticate(key=old_key) is None
    assert (refused.status_code, refused.json()["code"]) == (401, "authentication_failed")
    assert ApiToken.objects.get().last_used_at is None


def test_a_password_ending_with_a_space_revokes_another_token_as_it_signs_in():
    # given an account registered with a passphrase ending with a space (as a password manager may make),
    # signed in twice with it exactly as typed
    spaced = "correct horse battery staple "
    registered = APIClient().post(
        "/api/v1/accounts",
        {
            "email": "ada@example.org",
            "password": spaced,
            "full_name": "Ada Quill",
            "address": {
                "name": "Ada Quill",
                "line1": "1 Lens Lane",
                "city": "Exposure",
                "postal_code": "12345",
                "country": "US",
            },
            "birth_date": "1990-04-01",
            "privacy_policy_version": policy_current().version,
        },
        format="json",
    )
    assert registered.status_code == 201, registered.json()
    other = APIClient().post(
        "/api/v1/auth/token", {"email": "ada@example.org", "password": spaced, "name": "phone"}, format="json"
    )
    assert other.status_code == 200
    other_id = ApiToken.objects.get(name="phone").public_id

    # when the first token revokes the other with the same password, as typed
    revoked = client_with(registered.json()["token"]).delete(
        f"/api/v1/me/tokens/{other_id}", {"password": spaced}, format="json"
    )

    # then it is revoked, as every other endpoint takes the password (trimmed), and no failure is counted
    assert revoked.status_code == 204
    assert client_with(other.json()["token"]).get("/api/v1/me").status_code == 401
    assert not SecurityEvent.objects.filter(kind="sign_in_failed").exists()
