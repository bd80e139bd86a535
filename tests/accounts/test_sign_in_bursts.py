"""Guesses sent together get no more password checks than the limit allows: each attempt is counted in the
shared cache before its password is checked (lab/accounts/signin.py). Counted only once it had failed, every
attempt that started before the limit-th failure was counted had its (slow) check: eight at once, eight
guesses against a limit of five.

The race is the lab's own code against itself, so the password check is held open for the burst: every
check waits, up to a moment, for one more than the limit to be inside at once. Real requests, threads of this
process; PostgreSQL and the suite's Redis do the counting and the recording.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import connections
from rest_framework.test import APIClient

from lab.accounts import signin
from lab.accounts.models import SecurityEvent
from lab.accounts.signin import SignInAttempt
from tests.builders import PASSWORD, UserFactory

LIMIT = 5
BURST = 8
ADDRESS = "198.51.100.61"


def wait_until_counted(email: str, attempts: int) -> None:
    """Until the account's count in the shared cache holds `attempts` (the attempts let in and in flight)."""
    key = SignInAttempt(email=email, client_ip=None, channel=SecurityEvent.Channel.API).counters()[0][1]
    deadline = time.monotonic() + 10
    while (cache.get(key) or 0) < attempts:
        assert time.monotonic() < deadline, "the attempts never reached the count"
        time.sleep(0.02)


def token_request(email: str, password: str) -> int:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": password}, format="json", REMOTE_ADDR=ADDRESS
    )
    return response.status_code


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_guesses_gets_no_more_password_checks_than_the_limit(settings, monkeypatch):
    # given the default limits, and a password check that waits for the others of the burst to be inside
    settings.SIGNIN_ACCOUNT_FAILURES = LIMIT
    settings.SIGNIN_ADDRESS_FAILURES = 20
    customer = UserFactory.create(email="dee@example.org")
    checks: list[str] = []
    inside_together = threading.Barrier(LIMIT + 1, timeout=5)  # a loaded box: long enough for the burst

    def held_open(request, **credentials):
        checks.append(credentials["username"])
        # More than the limit inside at once: the race was won. No more came in: the wait breaks, go on.
        with contextlib.suppress(threading.BrokenBarrierError):
            inside_together.wait()
        return authenticate(request, **credentials)

    monkeypatch.setattr("lab.accounts.signin.authenticate", held_open)
    statuses: list[int] = []

    def guess(n: int) -> None:
        try:
            statuses.append(token_request(customer.email, f"guess {n}"))
        finally:
            connections.close_all()

    # when eight guesses are sent at once
    threads = [threading.Thread(target=guess, args=(n,)) for n in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then only the limit's worth were checked, the rest refused unchecked, and the account is locked
    assert len(checks) == LIMIT
    assert sorted(statuses) == [401] * LIMIT + [429] * (BURST - LIMIT)
    assert SecurityEvent.objects.filter(user=customer, kind="sign_in_failed").count() == LIMIT
    assert SecurityEvent.objects.filter(user=customer, kind="sign_in_locked").count() == 1
    assert token_request(customer.email, PASSWORD) == 429
    assert len(checks) == LIMIT  # the right password, locked out, was not checked either


@pytest.mark.django_db(transaction=True)
def test_right_passwords_in_flight_do_not_turn_one_typo_into_a_lock(settings, monkeypatch):
    """An integration starts four workers that each sign in, and a fifth request has a typo: the limit's
    count holds the four right passwords still being checked, but the lock counts failures only (before,
    the typo's failure saw a count of five and locked the account for the window)."""
    settings.SIGNIN_ACCOUNT_FAILURES = LIMIT
    settings.SIGNIN_ADDRESS_FAILURES = 20
    customer = UserFactory.create(email="eve@example.org")
    release = threading.Event()

    def slow_when_right(request, **credentials):
        if credentials["password"] == PASSWORD:
            release.wait(timeout=10)  # the right ones are still being checked when the typo fails
        return authenticate(request, **credentials)

    monkeypatch.setattr("lab.accounts.signin.authenticate", slow_when_right)
    statuses: list[int] = []

    def sign_in(password: str) -> None:
        try:
            statuses.append(token_request(customer.email, password))
        finally:
            connections.close_all()

    rights = [threading.Thread(target=sign_in, args=(PASSWORD,)) for _ in range(LIMIT - 1)]
    for thread in rights:
        thread.start()
    wait_until_counted(customer.email, LIMIT - 1)
    sign_in("a typo")
    release.set()
    for thread in rights:
        thread.join(timeout=30)

    assert sorted(statuses) == [200] * (LIMIT - 1) + [401]
    assert not SecurityEvent.objects.filter(user=customer, kind="sign_in_locked").exists()
    assert token_request(customer.email, PASSWORD) == 200


@pytest.mark.django_db
def test_attempts_refused_while_others_are_in_flight_leave_no_count_behind(settings):
    # given an address limit of two, and two right-password checks of one address still in flight
    settings.SIGNIN_ADDRESS_FAILURES = 2
    settings.SIGNIN_ACCOUNT_FAILURES = 5
    UserFactory.create(email="ada@example.org")
    attempt = SignInAttempt(
        email="ada@example.org", client_ip="198.51.100.7", channel=SecurityEvent.Channel.API
    )
    in_flight = [signin.sign_in_count(attempt=attempt) for _ in range(2)]

    # when three more attempts come meanwhile, each refused for now, and then both checks succeed
    for _ in range(3):
        with pytest.raises(signin.SignInLocked) as refused:
            signin.sign_in_count(attempt=attempt)
        assert refused.value.retry_after_seconds == signin.IN_FLIGHT_RETRY_SECONDS
    for counts in in_flight:
        signin.sign_in_succeeded(attempt=attempt, counts=counts)

    # then the address's count is back to nothing and the next right password signs in (a mutation review:
    # refused attempts that kept their count locked the address out for the rest of the window, every retry
    # adding one more, with no failure at all)
    _, address_key, _ = attempt.counters()[1]
    assert int(cache.get(address_key) or 0) == 0
    answer = APIClient(REMOTE_ADDR="198.51.100.7").post(
        "/api/v1/auth/token", {"email": "ada@example.org", "password": PASSWORD}, format="json"
    )
    assert answer.status_code == 200, answer.json()
