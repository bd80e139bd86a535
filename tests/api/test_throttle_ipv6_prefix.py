"""The API's throttles count an IPv6 client by its /64, as sign-in failures are counted (lab/lib/client_ip.py:
address_for_limits): counted per full address, a /64 holder passed every rate by changing address."""

from __future__ import annotations

import pytest

from lab.lib.client_ip import address_for_limits

pytestmark = pytest.mark.django_db


def test_anonymous_requests_from_addresses_of_one_ipv6_64_share_one_rate(api, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "20/min", "registration": "10000/min"},
    }
    settings.TRUSTED_PROXIES = []

    statuses = [
        api.get("/api/v1/products", REMOTE_ADDR=f"2001:db8:9:1:{n:x}:{n:x}::1").status_code for n in range(25)
    ]
    next_subscriber = api.get("/api/v1/products", REMOTE_ADDR="2001:db8:9:2::1")

    assert statuses == [200] * 20 + [429] * 5
    assert next_subscriber.status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_ipv6_client_is_counted_by_its_64(api, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "2/hour"},
    }
    settings.TRUSTED_PROXIES = ["127.0.0.0/8"]

    statuses = [
        api.post(
            "/api/v1/accounts", {}, format="json", HTTP_X_FORWARDED_FOR=f"[2001:db8:9:3::{n + 1:x}]:443"
        ).status_code
        for n in range(3)
    ]

    assert statuses == [400, 400, 429]


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:9:1:aaaa:bbbb:cccc:dddd", "2001:db8:9:1::/64"),
        ("2001:db8:9:1::", "2001:db8:9:1::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),  # an IPv4 client seen through a dual-stack socket
        ("", ""),
    ],
)
def test_the_address_limits_count(address, counted_as):
    assert address_for_limits(address) == counted_as
