"""A password confirmed with an API token (PATCH me's `current_password`, DELETE me's `password`, revoking
another token) is counted and locked per token, not per account (lab/accounts/signin.py).

Before, the account's lock, which anyone sets with wrong passwords for the owner's e-mail at the token
exchange, also refused the owner's right password at My Account; and any token revoked the others alone. A
token thief locked the owner out of the password change (the cure for a stolen token), revoked the owner's
tokens and kept the account."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from lab.accounts.email_change import email_change_tokens
from lab.accounts.models import ApiToken, SecurityEvent, User
from tests.builders import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
OWNER_ADDRESS = "192.0.2.10"
NEW_PASSWORD = "another long passphrase 77"


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    settings.SIGNIN_ACCOUNT_FAILURES = 3
    settings.SIGNIN_ADDRESS_FAILURES = 20
    settings.SIGNIN_WINDOW_SECONDS = 900


def signed_in(email: str, name: str) -> APIClient:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": PASSWORD, "name": name}, format="json"
    )
    assert response.status_code == 200
    client = APIClient(REMOTE_ADDR=OWNER_ADDRESS)
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def lock_the_account(email: str) -> None:
    """Wrong passwords at the token exchange, each from an address of its own: the account's lock."""
    answers = [
        APIClient()
        .post(
            "/api/v1/auth/token",
            {"email": email, "password": f"guess {n}"},
            format="json",
            REMOTE_ADDR=f"198.18.{n}.1",
        )
        .status_code
        for n in range(3)
    ]
    assert answers == [401, 401, 401]
    locked = APIClient().post("/api/v1/auth/token", {"email": email, "password": PASSWORD}, format="json")
    assert (locked.status_code, locked.json()["code"]) == (429, "sign_in_locked")


def answer(response: Any) -> tuple[int, str]:
    return response.status_code, response.json().get("code", "") if response.content else ""


def test_a_locked_account_does_not_keep_its_owner_from_changing_the_password_with_a_token():
    customer = UserFactory.create(email="ada@example.org")
    owner = signed_in(customer.email, "owner")
    thief = signed_in(customer.email, "thief")
    lock_the_account(customer.email)

    changed = owner.patch(
        "/api/v1/me", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )

    assert changed.status_code == 200, changed.json()
    assert User.objects.get(pk=customer.pk).check_password(NEW_PASSWORD)
    # the change ended every token, the thief's among them
    assert (owner.get("/api/v1/me").status_code, thief.get("/api/v1/me").status_code) == (401, 401)
    assert ApiToken.objects.filter(user=customer).count() == 0


def test_a_locked_account_does_not_keep_its_owner_from_erasing_it_with_a_token():
    customer = UserFactory.create(email="bo@example.org")
    owner = signed_in(customer.email, "owner")
    lock_the_account(customer.email)

    erased = owner.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    assert erased.status_code == 200, erased.json()
    assert User.objects.get(pk=customer.pk).erased_at is not None


def test_wrong_passwords_with_one_token_lock_that_tokens_confirmations_and_not_the_others():
    customer = UserFactory.create(email="cy@example.org")
    thief = signed_in(customer.email, "thief")
    owner = signed_in(customer.email, "owner")
    thief_id = ApiToken.objects.get(name="thief").public_id

    guesses = [
        answer(
            thief.patch("/api/v1/me", {"email": "x@example.org", "current_password": f"g{n}"}, format="json")
        )
        for n in range(3)
    ]
    right_with_the_thiefs = answer(
        thief.patch("/api/v1/me", {"email": "x@example.org", "current_password": PASSWORD}, format="json")
    )
    sign_in = APIClient().post(
        "/api/v1/auth/token", {"email": customer.email, "password": PASSWORD}, format="json"
    )
    moved_by_the_owner = answer(
        owner.patch(
            "/api/v1/me", {"email": "cy.new@example.org", "current_password": PASSWORD}, format="json"
        )
    )

    assert guesses == [(403, "wrong_password")] * 3
    assert right_with_the_thiefs == (429, "sign_in_locked")
    assert sign_in.status_code == 200  # the token's guesses are no lock on the account
    confirmed = owner.post(
        "/api/v1/me/email/confirm",
        {"token": email_change_tokens.make_token(User.objects.get(pk=customer.pk))},
        format="json",
    )
    assert moved_by_the_owner == (200, "")
    assert confirmed.status_code == 200
    assert User.objects.get(pk=customer.pk).email == "cy.new@example.org"
    lock = SecurityEvent.objects.get(kind="sign_in_locked")
    assert (lock.user_id, lock.detail) == (
        customer.pk,
        {"scope": "token", "failures": 3, "seconds": 900, "confirms": "email_change", "token": str(thief_id)},
    )


def test_revoking_another_token_needs_the_current_password_and_a_wrong_one_revokes_nothing():
    customer = UserFactory.create(email="di@example.org")
    owner = signed_in(customer.email, "owner")
    thief = signed_in(customer.email, "thief")
    owner_id = ApiToken.objects.get(name="owner").public_id
    thief_id = ApiToken.objects.get(name="thief").public_id

    without = answer(thief.delete(f"/api/v1/me/tokens/{owner_id}"))
    wrong = answer(thief.delete(f"/api/v1/me/tokens/{owner_id}", {"password": "guess"}, format="json"))

    assert (without, wrong) == ((403, "wrong_password"), (403, "wrong_password"))
    assert owner.get("/api/v1/me").status_code == 200
    assert not SecurityEvent.objects.filter(kind="token_revoked").exists()

    # with the password, the owner revokes the thief's; and a token revokes itself with no password
    revoked = owner.delete(f"/api/v1/me/tokens/{thief_id}", {"password": PASSWORD}, format="json")
    itself = owner.delete(f"/api/v1/me/tokens/{owner_id}")

    assert (revoked.status_code, itself.status_code) == (204, 204)
    assert ApiToken.objects.filter(user=customer).count() == 0
    assert list(
        SecurityEvent.objects.filter(kind="token_revoked").order_by("pk").values_list("detail", flat=True)
    ) == [{"token": str(thief_id), "reason": "owner"}, {"token": str(owner_id), "reason": "owner"}]


def test_wrong_passwords_for_a_revocation_count_with_the_tokens_other_confirmations():
    customer = UserFactory.create(email="eve@example.org")
    owner = signed_in(customer.email, "owner")
    thief = signed_in(customer.email, "thief")
    owner_id = ApiToken.objects.get(name="owner").public_id

    guesses = [
        answer(thief.delete(f"/api/v1/me/tokens/{owner_id}", {"password": f"g{n}"}, format="json"))
        for n in range(2)
    ]
    change = answer(
        thief.patch("/api/v1/me", {"current_password": "g2", "new_password": NEW_PASSWORD}, format="json")
    )
    right = answer(thief.delete(f"/api/v1/me/tokens/{owner_id}", {"password": PASSWORD}, format="json"))

    assert guesses == [(403, "wrong_password")] * 2
    assert change == (403, "wrong_password")
    assert right == (429, "sign_in_locked")
    assert owner.get("/api/v1/me").status_code == 200
    assert list(
        SecurityEvent.objects.filter(kind="sign_in_failed").order_by("pk").values_list("detail", flat=True)
    ) == [
        *[{"confirms": "token_revoke", "token": str(ApiToken.objects.get(name="thief").public_id)}] * 2,
        {"confirms": "password_change", "token": str(ApiToken.objects.get(name="thief").public_id)},
    ]
