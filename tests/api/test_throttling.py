"""Anonymous endpoints are throttled, with the same problem+json shape and a Retry-After."""

from __future__ import annotations

import pytest

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
