"""Anonymous endpoints are throttled, with the same problem+json shape and a Retry-After."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from api import throttles
from tests.support.concurrency import at_once

pytestmark = pytest.mark.django_db


def test_anonymous_registration_is_throttled(api, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "2/hour"},
    }

    statuses = [api.post("/api/v1/accounts", {}, format="json").status_code for _ in range(3)]
    throttled = api.post("/api/v1/accounts", {}, format="json")

    assert statuses == [400, 400, 429]
    assert throttled.status_code == 429
    assert throttled.headers["Content-Type"] == "application/problem+json"
    assert throttled.json()["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) > 0


class _ReadAtOnce:
    """The throttles' cache, where each request's first call returns only once the other request has made its
    own: two requests on two web processes that both read the count before either wrote it."""

    def __init__(self, cache: Any, requests: int) -> None:
        self._cache = cache
        self._all_read = threading.Barrier(requests, timeout=10)
        self._request = threading.local()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._cache, name)
        if not callable(method) or getattr(self._request, "read", False):
            return method

        def then_wait_for_the_other(*args: Any, **kwargs: Any) -> Any:
            self._request.read = True
            answer = method(*args, **kwargs)
            self._all_read.wait()
            return answer

        return then_wait_for_the_other


@pytest.mark.django_db(transaction=True)
def test_two_registrations_that_reach_the_throttle_at_once_are_counted_both(settings, monkeypatch):
    # given a rate of one registration an hour, and two requests from one address at the throttle at once
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "1/hour"},
    }
    monkeypatch.setattr(throttles._RateFromSettings, "cache", _ReadAtOnce(cache, requests=2))
    responses: list[Any] = []

    at_once(lambda: responses.append(APIClient().post("/api/v1/accounts", {}, format="json")))

    # then the second is throttled: before, both read an empty history, both passed (400, the body is
    # invalid) and each wrote its own history of one request over the other's
    assert sorted(response.status_code for response in responses) == [400, 429]
    throttled = next(response for response in responses if response.status_code == 429)
    assert throttled.json()["code"] == "throttled"
    assert 0 < int(throttled.headers["Retry-After"]) <= 3600
