"""Failed sign-ins are limited per account and per address, at the API and at the staff login alike."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.test import Client

from lab.accounts.models import ApiToken, SecurityEvent
from lab.accounts.signin import SignInAttempt
from tests.builders import UserFactory
from tests.support.http import stalled

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    settings.SIGNIN_ACCOUNT_FAILURES = 3
    settings.SIGNIN_ADDRESS_FAILURES = 5
    settings.SIGNIN_WINDOW_SECONDS = 900


def token_request(api, email: str, password: str, address: str = "198.51.100.7"):
    return api.post(
        "/api/v1/auth/token", {"email": email, "password": password}, format="json", REMOTE_ADDR=address
    )


def test_an_account_is_locked_after_its_failures_even_for_the_right_password(api, caplog):
    customer = UserFactory.create(email="ada@example.org")

    failures = [token_request(api, "Ada@Example.org", f"guess {n}").status_code for n in range(3)]
    locked = token_request(api, "ada@example.org", PASSWORD)

    assert failures == [401, 401, 401]
    assert (locked.status_code, locked["Content-Type"], locked.json()["code"]) == (
        429,
        PROBLEM,
        "sign_in_locked",
    )
    assert 890 <= int(locked["Retry-After"]) <= 900
    assert locked.json()["retry_after_seconds"] == int(locked["Retry-After"])
    assert ApiToken.objects.count() == 0
    events = list(SecurityEvent.objects.order_by("pk").values_list("kind", "channel", "user", "client_ip"))
    assert events == [
        ("sign_in_failed", "api", customer.pk, "198.51.100.7"),
        ("sign_in_failed", "api", customer.pk, "198.51.100.7"),
        ("sign_in_failed", "api", customer.pk, "198.51.100.7"),
        ("sign_in_locked", "api", customer.pk, "198.51.100.7"),
    ]
    assert SecurityEvent.objects.get(kind="sign_in_locked").detail == {
        "scope": "account",
        "failures": 3,
        "seconds": 900,
    }
    assert "ada@" not in caplog.text.lower() and "guess" not in caplog.text and PASSWORD not in caplog.text


def test_an_address_is_locked_after_failures_on_many_accounts_and_other_addresses_are_not(api):
    UserFactory.create(email="ada@example.org")

    failures = [token_request(api, f"nobody{n}@example.org", "guess").status_code for n in range(5)]
    from_that_address = token_request(api, "ada@example.org", PASSWORD)
    from_elsewhere = token_request(api, "ada@example.org", PASSWORD, address="203.0.113.9")

    assert failures == [401] * 5
    assert (from_that_address.status_code, from_that_address.json()["code"]) == (429, "sign_in_locked")
    assert from_elsewhere.status_code == 200
    unknown = SecurityEvent.objects.filter(kind="sign_in_failed", user=None)
    assert unknown.count() == 5
    assert all(len(event.email_sha256) == 64 for event in unknown)
    assert SecurityEvent.objects.get(kind="sign_in_locked").detail["scope"] == "address"


def test_a_successful_sign_in_resets_the_account_count_but_not_the_address_count(api):
    UserFactory.create(email="ada@example.org")

    early = [token_request(api, "ada@example.org", "guess").status_code for _ in range(2)]
    success = token_request(api, "ada@example.org", PASSWORD)
    later = [token_request(api, "ada@example.org", "guess").status_code for _ in range(3)]

    assert (early, success.status_code, later) == ([401, 401], 200, [401, 401, 401])
    # 5 failures from the address in all: the address is locked, though the account's count restarted at 3.
    assert token_request(api, "ada@example.org", PASSWORD).status_code == 429
    assert set(
        SecurityEvent.objects.filter(kind="sign_in_locked").values_list("detail__scope", flat=True)
    ) == {
        "account",
        "address",
    }


def test_the_staff_login_is_locked_with_an_html_message_and_shares_the_account_count(api):
    supervisor = UserFactory.create(email="sam@lab.example", roles=["supervisor"])
    browser = Client(REMOTE_ADDR="198.51.100.7")

    api_failure = token_request(api, "sam@lab.example", "guess")
    page_failures = [
        browser.post("/lab/login/", {"email": "sam@lab.example", "password": "guess"}).status_code
        for _ in range(2)
    ]
    locked = browser.post("/lab/login/", {"email": "sam@lab.example", "password": PASSWORD})

    assert (api_failure.status_code, page_failures) == (401, [401, 401])
    assert locked.status_code == 429
    assert locked["Content-Type"].startswith("text/html")
    assert "Too many failed sign-ins" in locked.content.decode()
    assert int(locked["Retry-After"]) > 0
    assert "_auth_user_id" not in browser.session
    assert list(
        SecurityEvent.objects.filter(user=supervisor).order_by("pk").values_list("kind", "channel")
    ) == [
        ("sign_in_failed", "api"),
        ("sign_in_failed", "staff_login"),
        ("sign_in_failed", "staff_login"),
        ("sign_in_locked", "staff_login"),
    ]


def test_a_shared_cache_that_takes_connections_and_never_answers_is_a_prompt_503_not_a_hang(api, settings):
    # given the shared cache stalled (frozen, swapping: it takes the connection and says nothing); the
    # settings' own options, timeouts included, as the lab runs them
    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache"), "the test command runs Redis"
    user = UserFactory.create(email="stalled@example.org", password="a long right password")
    with stalled() as url:
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://{url[7:]}/0"}}

        # when a customer asks for a token and a technician signs in
        started = time.monotonic()
        response = token_request(api, user.email, "a long right password")
        page = Client().post("/lab/login/", {"email": user.email, "password": "a long right password"})
        took = time.monotonic() - started

    # then each is told the sign-in is unavailable within the cache's timeout, not held until gunicorn's
    # 60 s kill (README, "When a service goes away, or stalls": REDIS_TIMEOUT_SECONDS a call)
    assert (response.status_code, response.json()["code"]) == (503, "sign_in_unavailable")
    assert page.status_code == 503
    assert took < 4 * settings.REDIS_TIMEOUT_SECONDS + 2, took


def test_without_the_shared_cache_nobody_signs_in_and_the_answer_says_so(api, settings):
    user = UserFactory.create(email="cacheless@example.org", password="a long right password")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }

    response = token_request(api, user.email, "a long right password")
    page = Client().post("/lab/login/", {"email": user.email, "password": "a long right password"})

    assert (response.status_code, response.json()["code"]) == (503, "sign_in_unavailable")
    assert page.status_code == 503 and "unavailable" in page.content.decode()


def test_a_lock_holds_its_whole_time_after_the_count_of_failures_has_expired(api):
    # given an account locked by its third failure, then its counts' window over (the counts started at the
    # first attempt; the lock, at the failure that took the limit): the count keys gone, the locks left
    UserFactory.create(email="ada@example.org")
    assert [token_request(api, "ada@example.org", f"guess {n}").status_code for n in range(3)] == [401] * 3
    attempt = SignInAttempt(
        email="ada@example.org", client_ip="198.51.100.7", channel=SecurityEvent.Channel.API
    )
    assert cache.get(f"{attempt.holder()[1]}:locked_until") is not None
    for _, key, _ in attempt.counters():
        cache.delete_many([key, f"{key}:failures"])

    # when the right password comes while the lock still holds
    locked = token_request(api, "ada@example.org", PASSWORD)

    # then it is refused for the rest of the lock, no token issued (a mutation review: without the check
    # before counting, a token was issued mid-lock once the counts had expired)
    assert (locked.status_code, locked.json()["code"]) == (429, "sign_in_locked")
    assert int(locked["Retry-After"]) > 5
    assert ApiToken.objects.count() == 0
