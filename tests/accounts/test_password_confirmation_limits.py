"""The password My Account asks for again (PATCH me's `current_password` for a new password or e-mail, DELETE
me's `password`) is counted and limited as a sign-in (lab/accounts/signin.py), per token when made with one
(tests/accounts/test_token_confirmation_locks.py): checked on its own, a stolen token was a licence for
unlimited guesses, with no security event, no lock and no throttle."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from lab.accounts.models import ApiToken, SecurityEvent, User
from tests.builders import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
ADDRESS = "198.51.100.23"
NEW_PASSWORD = "a brand new passphrase 58"


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    settings.SIGNIN_ACCOUNT_FAILURES = 3
    settings.SIGNIN_ADDRESS_FAILURES = 20
    settings.SIGNIN_WINDOW_SECONDS = 900


def token_client(email: str) -> APIClient:
    """A client holding a token of the account, as a script (or a thief who took the key) does."""
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": PASSWORD, "name": "script"}, format="json"
    )
    assert response.status_code == 200
    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def change_password(client: APIClient, current: str) -> tuple[int, str]:
    response = client.patch(
        "/api/v1/me", {"current_password": current, "new_password": NEW_PASSWORD}, format="json"
    )
    return response.status_code, response.json().get("code", "")


def test_wrong_current_passwords_lock_the_tokens_confirmations_then_even_the_right_one_is_refused():
    customer = UserFactory.create(email="ada@example.org")
    client = token_client(customer.email)
    token = str(ApiToken.objects.get(user=customer).public_id)

    guesses = [change_password(client, f"guess {n}") for n in range(3)]
    right = client.patch(
        "/api/v1/me", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )

    assert guesses == [(403, "wrong_password")] * 3
    assert (right.status_code, right.json().get("code")) == (429, "sign_in_locked")
    assert 890 <= int(right["Retry-After"]) <= 900
    assert User.objects.get(pk=customer.pk).check_password(PASSWORD)  # not changed
    events = SecurityEvent.objects.filter(kind__startswith="sign_in").order_by("pk")
    assert list(events.values_list("kind", "channel", "user", "client_ip", "detail")) == [
        *[("sign_in_failed", "api", customer.pk, ADDRESS, {"confirms": "password_change", "token": token})]
        * 3,
        (
            "sign_in_locked",
            "api",
            customer.pk,
            ADDRESS,
            {"scope": "token", "failures": 3, "seconds": 900, "confirms": "password_change", "token": token},
        ),
    ]


def test_erasure_passwords_count_with_the_tokens_other_confirmations_and_a_locked_token_erases_nothing():
    customer = UserFactory.create(email="bo@example.org")
    client = token_client(customer.email)

    # a failed sign-in is the account's count, not the token's
    sign_in = APIClient().post(
        "/api/v1/auth/token", {"email": customer.email, "password": "guess"}, format="json"
    )
    change = change_password(client, "guess")
    erasures = [
        client.delete("/api/v1/me", {"password": f"guess {n}"}, format="json").status_code for n in range(2)
    ]
    right = client.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    assert (sign_in.status_code, change, erasures) == (401, (403, "wrong_password"), [403, 403])
    assert (right.status_code, right.json().get("code")) == (429, "sign_in_locked")
    customer.refresh_from_db()
    assert (customer.erased_at, customer.email, customer.is_active) == (None, "bo@example.org", True)
    token = str(ApiToken.objects.get(user=customer).public_id)
    assert list(
        SecurityEvent.objects.filter(kind="sign_in_failed").order_by("pk").values_list("detail", flat=True)
    ) == [
        {},
        {"confirms": "password_change", "token": token},
        *[{"confirms": "erasure", "token": token}] * 2,
    ]
    lock = SecurityEvent.objects.get(kind="sign_in_locked", user=customer)
    assert lock.detail == {
        "scope": "token",
        "failures": 3,
        "seconds": 900,
        "confirms": "erasure",
        "token": token,
    }


def test_a_right_current_password_clears_the_tokens_count_as_a_sign_in_clears_the_accounts():
    customer = UserFactory.create(email="cy@example.org")
    client = token_client(customer.email)

    early = [change_password(client, f"guess {n}") for n in range(2)]
    # the right current password, with a new one too weak to take: confirmed, and nothing changed
    confirmed = client.patch(
        "/api/v1/me", {"current_password": PASSWORD, "new_password": "short"}, format="json"
    )
    later = [change_password(client, f"guess {n}") for n in range(2)]

    assert early == later == [(403, "wrong_password")] * 2
    assert (confirmed.status_code, confirmed.json().get("code")) == (400, "weak_password")
    assert not SecurityEvent.objects.filter(kind="sign_in_locked").exists()
    assert User.objects.get(pk=customer.pk).check_password(PASSWORD)


def test_an_email_change_does_not_start_the_accounts_count_of_wrong_passwords_again():
    # Before, a token alone changed the e-mail, and the count, kept under the e-mail, began again: unlimited
    # guesses at the password, three at a time.
    customer = UserFactory.create(email="di@example.org")
    client = token_client(customer.email)

    guesses = [change_password(client, f"guess {n}") for n in range(3)]
    moved = client.patch(
        "/api/v1/me", {"email": "di.elsewhere@example.org", "current_password": PASSWORD}, format="json"
    )
    moved_without = client.patch("/api/v1/me", {"email": "di.elsewhere@example.org"}, format="json")
    another = change_password(client, "guess 3")

    assert guesses == [(403, "wrong_password")] * 3
    assert (moved.status_code, moved.json().get("code")) == (429, "sign_in_locked")
    assert (moved_without.status_code, moved_without.json().get("code")) == (403, "wrong_password")
    assert another == (429, "sign_in_locked")
    customer.refresh_from_db()
    assert (customer.email, customer.check_password(PASSWORD)) == ("di@example.org", True)
    assert not SecurityEvent.objects.filter(kind="email_changed").exists()


def test_wrong_passwords_for_an_email_change_count_with_those_for_a_password_change():
    customer = UserFactory.create(email="eve@example.org")
    client = token_client(customer.email)

    guesses = [change_password(client, f"guess {n}") for n in range(2)]
    moved = client.patch(
        "/api/v1/me", {"email": "eve.elsewhere@example.org", "current_password": "guess 2"}, format="json"
    )
    right = client.patch(
        "/api/v1/me", {"email": "eve.elsewhere@example.org", "current_password": PASSWORD}, format="json"
    )

    assert guesses == [(403, "wrong_password")] * 2
    assert (moved.status_code, moved.json().get("code")) == (403, "wrong_password")
    assert (right.status_code, right.json().get("code")) == (429, "sign_in_locked")
    assert User.objects.get(pk=customer.pk).email == "eve@example.org"
    lock = SecurityEvent.objects.get(kind="sign_in_locked")
    assert (lock.user_id, lock.detail) == (
        customer.pk,
        {
            "scope": "token",
            "failures": 3,
            "seconds": 900,
            "confirms": "email_change",
            "token": str(ApiToken.objects.get(user=customer).public_id),
        },
    )
