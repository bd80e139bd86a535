"""Failed sign-ins are counted per client address, and an IPv6 client's address is its /64 (lab/lib/
client_ip.py: address_for_limits): whoever holds a /64 may use any of its 2^64 addresses, and counted per
full address got a fresh count with every request."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from lab.accounts.models import SecurityEvent
from tests.builders import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
ONE_SUBSCRIBER = [f"2001:db8:4:7:{n:x}::{n:x}" for n in range(1, 26)]  # 25 addresses of one /64


def token_request(email: str, password: str, address: str) -> int:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": password}, format="json", REMOTE_ADDR=address
    )
    return response.status_code


def test_failed_sign_ins_from_addresses_of_one_ipv6_64_are_counted_as_one_address(settings):
    settings.SIGNIN_ACCOUNT_FAILURES = 5
    settings.SIGNIN_ADDRESS_FAILURES = 20
    customer = UserFactory.create(email="eve@example.org")

    # one guess per account (no account's own limit is near), each from a new address of the /64
    statuses = [
        token_request(f"nobody{n}@example.org", "guess", address) for n, address in enumerate(ONE_SUBSCRIBER)
    ]
    next_subscriber = token_request(customer.email, PASSWORD, "2001:db8:4:8::1")

    assert statuses == [401] * 20 + [429] * 5
    assert next_subscriber == 200  # the next /64 is another subscriber
    lock = SecurityEvent.objects.get(kind="sign_in_locked")
    assert lock.detail == {"scope": "address", "failures": 20, "seconds": settings.SIGNIN_WINDOW_SECONDS}
    # the record keeps the address each failure came from; only the count is the /64's
    recorded = SecurityEvent.objects.filter(kind="sign_in_failed").order_by("pk")
    assert list(recorded.values_list("client_ip", flat=True)) == ONE_SUBSCRIBER[:20]


def test_ipv4_addresses_are_still_counted_one_by_one(settings):
    settings.SIGNIN_ADDRESS_FAILURES = 3

    statuses = [token_request(f"nobody{n}@example.org", "guess", f"203.0.113.{n}") for n in range(5)]

    assert statuses == [401] * 5
    assert not SecurityEvent.objects.filter(kind="sign_in_locked").exists()
