"""The security events of a customer's export (GET me/export) name the address of a failed or locked
sign-in by its network only: whoever typed the customer's e-mail address with a wrong password, a guesser as
likely as them. Before, the export carried that person's IP address whole. What the holder did (signed in,
changed the e-mail address) keeps its address."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from tests.builders import PERSON, email_change_confirmed, register

pytestmark = pytest.mark.django_db

GUESSER_IPV4, GUESSER_IPV6 = "203.0.113.77", "2001:db8:1:2::77"
HOLDER_ADDRESS = "198.51.100.20"
NEW_EMAIL = "w.quarrington.new@example.org"


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    settings.SIGNIN_ACCOUNT_FAILURES = 3
    settings.SIGNIN_ADDRESS_FAILURES = 5
    settings.SIGNIN_WINDOW_SECONDS = 900


def _guess(address: str) -> int:
    return (
        APIClient()
        .post(
            "/api/v1/auth/token",
            {"email": NEW_EMAIL, "password": "a guess"},
            format="json",
            REMOTE_ADDR=address,
        )
        .status_code
    )


def test_the_export_names_the_address_of_someone_else_s_sign_in_attempts_by_its_network_only(api):
    # given a customer who changed their e-mail address from their own address
    register(api)
    email_change_confirmed(api, NEW_EMAIL, client_ip=HOLDER_ADDRESS)
    # and someone who then guessed at their password from elsewhere until the account was locked
    guesses = [_guess(GUESSER_IPV4), _guess(GUESSER_IPV6), _guess(GUESSER_IPV4), _guess(GUESSER_IPV4)]
    assert guesses == [401, 401, 401, 429]

    # when the customer asks for their export
    exported = api.get("/api/v1/me/export")

    # then the guesses are there by their networks (a /24, a /48), never by the guesser's address
    assert exported.status_code == 200, exported.content
    events = exported.json()["security_events"]
    text = json.dumps(events)
    assert [address for address in (GUESSER_IPV4, "2001:db8:1:2:") if address in text] == []
    assert [
        (event["kind"], event["client_ip"], event["client_network"])
        for event in events
        if event["kind"] in ("sign_in_failed", "sign_in_locked")
    ] == [
        ("sign_in_failed", None, "203.0.113.0/24"),
        ("sign_in_failed", None, "2001:db8:1::/48"),
        ("sign_in_failed", None, "203.0.113.0/24"),
        ("sign_in_locked", None, "203.0.113.0/24"),
    ]
    # and what the customer did keeps its address
    assert [
        (event["kind"], event["client_ip"], event["client_network"])
        for event in events
        if event["kind"] == "email_changed"
    ] == [("email_changed", HOLDER_ADDRESS, "198.51.100.0/24")]


def test_a_failed_sign_in_that_found_no_account_is_exported_without_even_its_network(api):
    # given someone who guessed at a password for an address before any account had it
    failed = APIClient().post(
        "/api/v1/auth/token",
        {"email": PERSON.email, "password": "a guess"},
        format="json",
        REMOTE_ADDR=GUESSER_IPV4,
    )
    assert failed.status_code == 401
    # and the customer who then registered with that address
    register(api)

    # when the customer asks for their export
    events = api.get("/api/v1/me/export").json()["security_events"]

    # then the attempt is there, but neither the guesser's address nor its network is
    assert [
        (event["client_ip"], event["client_network"]) for event in events if event["kind"] == "sign_in_failed"
    ] == [(None, None)]
