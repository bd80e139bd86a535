"""The client's address comes from TRUSTED_PROXIES only: a client's own X-Forwarded-For or X-Request-ID is
ignored for throttles, audit records, logs and the request id; a trusted proxy's is honoured."""

from __future__ import annotations

import logging

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from lab.audit.models import AuditRecord
from lab.lib.client_ip import client_ip
from lab.lib.middleware import RequestContextFilter
from tests.builders import client_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_registrations_per_hour(settings) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "2/hour"},
    }


def register(api: APIClient, forwarded_for: str) -> int:
    return api.post("/api/v1/accounts", {}, format="json", HTTP_X_FORWARDED_FOR=forwarded_for).status_code


def test_a_fresh_forwarded_for_per_request_does_not_pass_the_spent_limit(
    api, settings, two_registrations_per_hour
):
    # given no proxy in front: the client talks to the web server directly
    settings.TRUSTED_PROXIES = []

    # when it sends a different X-Forwarded-For with every registration
    statuses = [register(api, f"198.51.100.{n}") for n in range(5)]

    # then the limit counts its own address and stops it after two
    assert statuses == [400, 400, 429, 429, 429]


def test_a_trusted_proxys_forwarded_for_names_each_client(api, settings, two_registrations_per_hour):
    # given the test client's address (127.0.0.1) is the lab's proxy
    settings.TRUSTED_PROXIES = ["127.0.0.0/8"]

    # when one client spends its limit, also trying a spoofed left part, and then another client registers
    first = [register(api, "203.0.113.5"), register(api, "203.0.113.5")]
    spoofed = register(api, "192.0.2.77, 203.0.113.5")  # the proxy appended the real address on the right
    other = register(api, "203.0.113.6")

    # then each client has its own count and the spoofed part changes nothing
    assert (first, spoofed, other) == ([400, 400], 429, 400)


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        ([], "192.0.2.1", "203.0.113.9", "192.0.2.1"),  # no proxy: the header is the client's own words
        (["10.0.0.2"], "192.0.2.1", "203.0.113.9", "192.0.2.1"),  # header from a non-proxy peer
        (["10.0.0.2"], "10.0.0.2", "203.0.113.9", "203.0.113.9"),
        (["10.0.0.0/24"], "10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.3", "203.0.113.9"),  # two proxies
        (["10.0.0.2"], "10.0.0.2", "", "10.0.0.2"),  # the proxy itself calling
        (["10.0.0.2"], "10.0.0.2", "not-an-ip", "10.0.0.2"),
        (["10.0.0.2"], "10.0.0.2", "[2001:db8::5]:4711", "2001:db8::5"),
        (["10.0.0.2"], "::ffff:10.0.0.2", "203.0.113.9:51000", "203.0.113.9"),
    ],
)
def test_client_ip_walks_forwarded_for_from_the_right(settings, trusted, remote, forwarded, expected):
    settings.TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip(request) == expected


def test_x_request_id_is_generated_unless_a_trusted_proxy_sent_it(api, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    sent = "proxy-request-0001"

    from_client = api.get("/healthz", HTTP_X_REQUEST_ID=sent, REMOTE_ADDR="192.0.2.1")
    from_proxy = api.get("/healthz", HTTP_X_REQUEST_ID=sent, REMOTE_ADDR="10.0.0.2")

    assert from_client["X-Request-ID"] != sent
    assert len(from_client["X-Request-ID"]) == 32
    assert from_proxy["X-Request-ID"] == sent


def test_audit_records_and_log_lines_carry_the_client_behind_the_proxy(settings, caplog):
    # given the lab's proxy in front of a technician's terminal
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    client, _technician = client_as("technician")
    caplog.handler.addFilter(RequestContextFilter())
    caplog.set_level(logging.INFO)

    # when the technician asks for a photo path the gate does not serve (a recorded denial) through the proxy
    response = client.get(
        "/lab/photos/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.40", HTTP_X_REQUEST_ID="req-12345678"
    )

    # then the record and the log line name the terminal, not the proxy nor the spoofed part (the log line
    # its network only: an address is personal data, and logs outlive an erasure)
    assert response.status_code == 404
    assert AuditRecord.objects.get().client_ip == "203.0.113.40"
    watched = {"lab.gate.access", "django.request"}
    logged = [(r.name, r.client_ip, r.request_id) for r in caplog.records if r.name in watched]
    assert logged == [
        ("lab.gate.access", "203.0.113.0/24", "req-12345678"),
        ("django.request", "203.0.113.0/24", "req-12345678"),
    ]
