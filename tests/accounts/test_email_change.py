"""My Account's e-mail change (PATCH me `email`) asks for the current password, as the password change does.

Before, a token alone changed the e-mail: with a stolen token that took the account over (the owner's e-mail
no longer signed in, so they could not get a token to change the password), nothing was recorded, and the
account's count of failed passwords, kept under its e-mail, started again. And every change answered whether
another account had an address (409 `email_taken`), as often as asked: PATCH me is throttled per customer."""

from __future__ import annotations

import hashlib
import json

import pytest
from rest_framework.test import APIClient

from lab.accounts.models import SecurityEvent, User
from tests.builders import PASSWORD, UserFactory, token_client

pytestmark = pytest.mark.django_db
ADDRESS = "198.51.100.47"
OLD = "ada@example.org"
NEW = "ada.new@example.org"


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    settings.SIGNIN_ACCOUNT_FAILURES = 3
    settings.SIGNIN_ADDRESS_FAILURES = 20
    settings.SIGNIN_WINDOW_SECONDS = 900


def holder_of_a_token(user: User) -> APIClient:
    """A client with one of the account's tokens: its owner's script, or a thief who took the key."""
    return token_client(APIClient(REMOTE_ADDR=ADDRESS), user)


def change(client: APIClient, body: dict[str, str]) -> tuple[int, str]:
    response = client.patch("/api/v1/me", body, format="json")
    return response.status_code, response.json().get("code", "")


def signs_in(email: str) -> int:
    return (
        APIClient()
        .post("/api/v1/auth/token", {"email": email, "password": PASSWORD}, format="json")
        .status_code
    )


def test_an_email_change_without_the_current_password_is_refused_and_changes_nothing():
    customer = UserFactory.create(email=OLD, full_name="Ada")
    thief = holder_of_a_token(customer)

    answer = change(thief, {"email": NEW, "full_name": "Mallory"})

    assert answer == (403, "wrong_password")
    customer.refresh_from_db()
    assert (customer.email, customer.full_name) == (OLD, "Ada")
    assert not SecurityEvent.objects.filter(kind="email_changed").exists()
    assert (signs_in(OLD), signs_in(NEW)) == (200, 401)


def test_a_wrong_current_password_for_an_email_change_is_counted_under_the_old_email():
    customer = UserFactory.create(email=OLD)
    thief = holder_of_a_token(customer)

    guesses = [change(thief, {"email": NEW, "current_password": f"guess {n}"}) for n in range(2)]
    # the third failure for the account: a sign-in with its (old) e-mail, which locks it
    sign_in = APIClient().post("/api/v1/auth/token", {"email": OLD, "password": "guess"}, format="json")
    right = change(thief, {"email": NEW, "current_password": PASSWORD})

    assert guesses == [(403, "wrong_password")] * 2
    assert sign_in.status_code == 401
    assert right == (429, "sign_in_locked")
    assert User.objects.get(pk=customer.pk).email == OLD
    failed = SecurityEvent.objects.filter(kind="sign_in_failed").order_by("pk")
    assert list(failed.values_list("user", "client_ip", "detail")) == [
        (customer.pk, ADDRESS, {"confirms": "email_change"}),
        (customer.pk, ADDRESS, {"confirms": "email_change"}),
        (customer.pk, "127.0.0.1", {}),
    ]


def test_an_email_taken_by_another_account_is_told_only_after_the_password():
    UserFactory.create(email="taken@example.org")
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)

    without = change(client, {"email": "taken@example.org"})
    wrong = change(client, {"email": "taken@example.org", "current_password": "guess"})
    right = change(client, {"email": "taken@example.org", "current_password": PASSWORD})

    assert (without, wrong, right) == ((403, "wrong_password"), (403, "wrong_password"), (409, "email_taken"))
    assert User.objects.get(pk=customer.pk).email == OLD


def test_with_the_current_password_the_email_changes_and_the_log_says_so_without_an_address():
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)

    response = client.patch("/api/v1/me", {"email": NEW, "current_password": PASSWORD}, format="json")
    # the same address again (any case) is no change: no password asked, nothing recorded
    same = change(client, {"email": NEW.upper(), "full_name": "Ada Q."})

    assert (response.status_code, response.json()["email"]) == (200, NEW)
    assert same == (200, "")
    assert (signs_in(OLD), signs_in(NEW)) == (401, 200)
    event = SecurityEvent.objects.get(kind="email_changed")
    assert (event.user_id, event.channel, event.email_sha256, event.detail) == (customer.pk, "api", "", {})
    assert event.client_ip == ADDRESS  # where the change came from, as the account's other events say
    written = json.dumps(
        [event.email_sha256, event.client_ip, event.detail, event.kind, event.channel], default=str
    ).lower()
    for address in (OLD, NEW):
        assert address not in written
        assert hashlib.sha256(address.encode()).hexdigest() not in written


def test_changes_to_an_account_are_throttled_per_customer(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "account_changes": "2/hour",
        },
    }
    prober = holder_of_a_token(UserFactory.create(email=OLD))
    other = holder_of_a_token(UserFactory.create(email="bo@example.org"))

    statuses = [change(prober, {"full_name": f"Name {n}"})[0] for n in range(2)]
    throttled = prober.patch(
        "/api/v1/me", {"email": "bo@example.org", "current_password": PASSWORD}, format="json"
    )

    assert statuses == [200, 200]
    assert throttled.status_code == 429
    assert throttled.headers["Content-Type"] == "application/problem+json"
    assert throttled.json()["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) > 0
    # reading one's account is not a change, and another customer has a count of their own
    assert prober.get("/api/v1/me").status_code == 200
    assert change(other, {"full_name": "Bo"}) == (200, "")
