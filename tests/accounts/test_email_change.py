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

from lab.accounts.models import ApiToken, SecurityEvent, User
from tests.builders import PASSWORD, UserFactory, token_client

pytestmark = pytest.mark.django_db
ADDRESS = "198.51.100.47"
OLD = "ada@example.org"
NEW = "ada.new@example.org"
THIEFS = "mallory@example.org"
OWNER_ADDRESS = "192.0.2.10"


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


def test_wrong_current_passwords_stay_counted_against_the_token_and_address_across_an_email_change(settings):
    # given a thief holding two of the account's tokens, the owner another, elsewhere; three failures lock a
    # token's confirmations, four the address's
    settings.SIGNIN_ADDRESS_FAILURES = 4
    customer = UserFactory.create(email=OLD)
    thief = holder_of_a_token(customer)
    first = str(ApiToken.objects.get(user=customer).public_id)
    owner = token_client(APIClient(REMOTE_ADDR=OWNER_ADDRESS), customer)

    # when the thief guesses twice, the owner moves the account to a new e-mail, and the thief guesses again
    guesses = [change(thief, {"email": THIEFS, "current_password": f"guess {n}"}) for n in range(2)]
    moved = change(owner, {"email": NEW, "current_password": PASSWORD})
    third = change(thief, {"email": THIEFS, "current_password": "guess 2"})
    right = change(thief, {"email": THIEFS, "current_password": PASSWORD})
    # and then with the other token, from the same address
    other_token = holder_of_a_token(customer)
    second = str(ApiToken.objects.latest("pk").public_id)  # the token made last
    fourth = change(other_token, {"email": THIEFS, "current_password": "guess 3"})
    right_with_the_other = change(other_token, {"email": THIEFS, "current_password": PASSWORD})

    # then the third guess is the token's third failure and locks it, even for the right password; the
    # other token's first is the address's fourth and locks that. Before, the count was the account's, kept
    # under its e-mail, and the change started it again; the token and the address are the same after it
    assert guesses == [(403, "wrong_password")] * 2
    assert (moved, third, right) == ((200, ""), (403, "wrong_password"), (429, "sign_in_locked"))
    assert (fourth, right_with_the_other) == ((403, "wrong_password"), (429, "sign_in_locked"))
    assert User.objects.get(pk=customer.pk).email == NEW
    # each event names the account and the token, neither e-mail nor its hash (the account has them)
    events = SecurityEvent.objects.filter(kind__startswith="sign_in").order_by("pk")

    def confirmation(token: str) -> dict[str, object]:
        return {"confirms": "email_change", "token": token}

    def lock(scope: str, failures: int, token: str) -> dict[str, object]:
        return {"scope": scope, "failures": failures, "seconds": 900, **confirmation(token)}

    assert list(events.values_list("kind", "user", "email_sha256", "client_ip", "detail")) == [
        *[("sign_in_failed", customer.pk, "", ADDRESS, confirmation(first))] * 3,
        ("sign_in_locked", customer.pk, "", ADDRESS, lock("token", 3, first)),
        ("sign_in_failed", customer.pk, "", ADDRESS, confirmation(second)),
        ("sign_in_locked", customer.pk, "", ADDRESS, lock("address", 4, second)),
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
    # the earlier address by its digest only (its failed sign-ins stay the account's to export and erase)
    old_digest = hashlib.sha256(OLD.encode()).hexdigest()
    assert (event.user_id, event.channel, event.email_sha256, event.detail) == (
        customer.pk,
        "api",
        "",
        {"previous_email_sha256": old_digest},
    )
    assert event.client_ip == ADDRESS  # where the change came from, as the account's other events say
    written = json.dumps(
        [event.email_sha256, event.client_ip, event.detail, event.kind, event.channel], default=str
    ).lower()
    assert [
        needle for needle in (OLD, NEW, hashlib.sha256(NEW.encode()).hexdigest()) if needle in written
    ] == []


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
