"""Accounts guarantees a review's mutations found no test for: a token is neither issued nor accepted for an
inactive account, a new password is checked against the account as it is as well as as it will be (and
against its name: Django's similarity check compared names the lab's User does not have), and a sign-in
refused under two locks is told to wait for the later one."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from lab.accounts.errors import AccountError
from lab.accounts.models import ApiToken, SecurityEvent, User
from lab.accounts.seal import account_seal_set
from lab.accounts.tokens import api_token_authenticate, api_token_issue
from lab.lib.errors import Conflict
from tests.builders import PASSWORD, UserFactory, token_client
from tests.builders.customers import registration_body

pytestmark = pytest.mark.django_db

ADDRESS = "198.51.100.47"


def deactivated_by_the_lab(user: User) -> None:
    """The account turned off and sealed so (as the lab's own tools would), its password unchanged: the
    seal holds, so nothing but `is_active` tells it from an active account."""
    row = User.objects.get(pk=user.pk)
    row.is_active = False
    row.save(update_fields=["is_active"])
    account_seal_set(row)


# A token for an inactive account.


def test_no_token_is_issued_for_an_account_deactivated_after_its_sign_in_read_it():
    # given the account as a sign-in read it (active, its password checked), then deactivated meanwhile
    signed_in = UserFactory.create(email="ada@example.org")
    deactivated_by_the_lab(signed_in)

    # when the sign-in goes on to issue its token
    with pytest.raises(Conflict) as refused:
        api_token_issue(user=signed_in, name="laptop", client_ip=ADDRESS)

    # then none is issued (before the check of the locked row's is_active, one was, and recorded)
    assert refused.value.code == AccountError.PASSWORD_CHANGED_MEANWHILE
    assert not ApiToken.objects.exists()
    assert not SecurityEvent.objects.filter(kind="token_issued").exists()


def test_a_token_of_an_account_deactivated_since_is_refused_though_its_seal_holds():
    # given a customer's token, and the account deactivated afterwards (its seal made again, so it holds)
    customer = UserFactory.create(email="ada@example.org")
    key = api_token_issue(user=customer, name="laptop").key
    assert api_token_authenticate(key=key) is not None
    deactivated_by_the_lab(customer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    # when the token is used
    response = client.get("/api/v1/me")

    # then it is refused for the account being inactive: not as an account changed outside the lab
    assert api_token_authenticate(key=key) is None
    assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")
    assert not SecurityEvent.objects.filter(kind="account_seal_broken").exists()


# The new password against the account as it is.


def test_a_new_password_like_the_email_the_account_still_has_is_refused_when_the_change_moves_the_email():
    # given an account whose e-mail's local part would be the new password, the same change moving the
    # e-mail elsewhere (the new one only waits for its confirmation: the old one stays the account's)
    customer = UserFactory.create(email="zebracorn1977@example.org", full_name="Ada")
    client = token_client(APIClient(REMOTE_ADDR=ADDRESS), customer)

    response = client.patch(
        "/api/v1/me",
        {"email": "ada@example.org", "new_password": "zebracorn1977", "current_password": PASSWORD},
        format="json",
    )

    # then it is checked against the account as it is too, and nothing changed
    assert (response.status_code, response.json().get("code")) == (400, "weak_password")
    customer.refresh_from_db()
    assert (customer.email, customer.pending_email, customer.check_password(PASSWORD)) == (
        "zebracorn1977@example.org",
        "",
        True,
    )
    assert not SecurityEvent.objects.filter(kind__in=["email_changed", "password_changed"]).exists()


def test_a_new_password_like_the_new_name_of_the_same_change_is_refused():
    # given a customer changing their name and password in one request, the password their new name
    customer = UserFactory.create(email="ada@example.org", full_name="Ada")
    client = token_client(APIClient(REMOTE_ADDR=ADDRESS), customer)

    # when My Account takes the change
    response = client.patch(
        "/api/v1/me",
        {
            "full_name": "Zebracorn Quintessa",
            "new_password": "zebracorn quintessa",
            "current_password": PASSWORD,
        },
        format="json",
    )

    # then it is refused as weak (before: 200; Django's similarity check compares first_name and last_name,
    # which the lab's User does not have, so `full_name` was never compared) and nothing changed
    assert (response.status_code, response.json().get("code")) == (400, "weak_password")
    assert User.objects.filter(pk=customer.pk).values_list("full_name", flat=True).get() == "Ada"


def test_a_registration_whose_password_is_its_name_is_refused():
    # given a registration whose password is the name it gives
    body = registration_body() | {"full_name": "Zebracorn Quintessa", "password": "zebracorn quintessa"}

    # when it is sent
    response = APIClient().post("/api/v1/accounts", body, format="json")

    # then it is refused as weak, and no account is made
    assert (response.status_code, response.json().get("code")) == (400, "weak_password")
    assert not User.objects.filter(email=body["email"]).exists()


# Retry-After under two locks.


def token_request(email: str, password: str, address: str):
    return APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": password}, format="json", REMOTE_ADDR=address
    )


def lock_the_address(address: str) -> None:
    statuses = [token_request(f"nobody{n}@example.org", "guess", address).status_code for n in range(5)]
    assert statuses == [401] * 5


def lock_the_account(email: str, address: str) -> None:
    statuses = [token_request(email, f"guess {n}", address).status_code for n in range(3)]
    assert statuses == [401] * 3


@pytest.mark.parametrize("locked_first", ["address", "account"])
def test_a_sign_in_under_both_locks_is_told_to_wait_for_the_later_one(settings, locked_first):
    # given the address and the account both locked, the one locked first for a shorter window (the window
    # was changed in between): the first lock ends 10 minutes before the second
    settings.SIGNIN_ACCOUNT_FAILURES = 3
    settings.SIGNIN_ADDRESS_FAILURES = 5
    UserFactory.create(email="ada@example.org")
    locks = {
        "address": lambda: lock_the_address("198.51.100.7"),
        # from another address: the locked one would refuse the account's failures unchecked
        "account": lambda: lock_the_account("ada@example.org", "203.0.113.9"),
    }
    locked_second = "account" if locked_first == "address" else "address"
    settings.SIGNIN_WINDOW_SECONDS = 300
    locks[locked_first]()
    settings.SIGNIN_WINDOW_SECONDS = 900
    locks[locked_second]()
    windows = SecurityEvent.objects.filter(kind="sign_in_locked").order_by("pk")
    assert list(windows.values_list("detail__scope", "detail__seconds")) == [
        (locked_first, 300),
        (locked_second, 900),
    ]

    # when the account signs in from the locked address, with its right password
    locked = token_request("ada@example.org", PASSWORD, "198.51.100.7")

    # then it is told to wait until both locks have ended: the later one's time, not the earlier one's
    assert (locked.status_code, locked.json()["code"]) == (429, "sign_in_locked")
    assert 890 <= int(locked["Retry-After"]) <= 900
    assert locked.json()["retry_after_seconds"] == int(locked["Retry-After"])
    assert not ApiToken.objects.exists()
