"""A staff session's idle timeout holds whatever the clock of the web host that serves a request says.

A lab runs several web hosts; each request may land on any of them. The session's expiry and its idle clock
are written and judged on the database's clock (lab/accounts/sessions.py, lab/staff/middleware.py): a host
whose clock ran behind kept an idle person signed in for as long as it was behind, one ahead signed every
person out at once. Time passes here as the database sees it (the session's stored times move back), never
by sleeping; a host's clock is moved where the lab reads it (tests/support/clock.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from lab.accounts.sessions import stored_key
from lab.customer_data.retention import retention_sweep
from lab.lib.clock import database_now
from lab.staff.middleware import LAST_ACTIVITY_KEY
from tests.builders import client_as, hotfolder_printer
from tests.support.clock import host_clock_off

pytestmark = pytest.mark.django_db

SKEW = timedelta(hours=2)  # far past the idle timeout (15 minutes)
IDLE = timedelta(minutes=15)


@pytest.fixture(autouse=True)
def floor() -> None:
    hotfolder_printer("minilab", sizes=["4x6"])


def _session_row(client: Client) -> Session:
    key = client.session.session_key
    assert key is not None
    return Session.objects.get(session_key=stored_key(key))


def _idle_for(client: Client, idle: timedelta) -> None:
    """`idle` passes without the person doing anything, on the database's clock."""
    session = client.session
    session[LAST_ACTIVITY_KEY] -= idle.total_seconds()
    session.save()
    row = _session_row(client)
    Session.objects.filter(pk=row.pk).update(expire_date=row.expire_date - idle)


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_request_on_a_host_whose_clock_is_off_keeps_the_idle_timeout_on_the_database_s_clock(
    monkeypatch, offset
):
    client, _ = client_as("technician")
    with host_clock_off(offset, monkeypatch):
        first = client.get(reverse("staff:board"))
        second = client.get(reverse("staff:board"))

    row = _session_row(client)
    assert (first.status_code, second.status_code) == (200, 200)  # a host ahead signed nobody out
    # The expiry and the idle clock it wrote are the database's, not 2 hours off it.
    assert IDLE - timedelta(seconds=30) < row.expire_date - database_now() <= IDLE
    assert abs(client.session[LAST_ACTIVITY_KEY] - database_now().timestamp()) < 30


def test_a_host_whose_clock_is_behind_signs_out_a_person_idle_past_the_timeout(monkeypatch):
    client, _ = client_as("technician")
    assert client.get(reverse("staff:board")).status_code == 200
    _idle_for(client, IDLE + timedelta(minutes=1))

    with host_clock_off(-SKEW, monkeypatch):
        response = client.get(reverse("staff:board"))

    assert response.status_code == 302
    assert response["Location"].startswith("/lab/login/")
    assert "_auth_user_id" not in client.session


def test_a_session_written_by_a_host_ahead_still_ends_after_the_idle_timeout(monkeypatch):
    client, _ = client_as("technician")
    with host_clock_off(SKEW, monkeypatch):
        assert client.get(reverse("staff:board")).status_code == 200
    _idle_for(client, IDLE + timedelta(minutes=1))

    response = client.get(reverse("staff:board"))

    assert response.status_code == 302
    assert response["Location"].startswith("/lab/login/")


def test_requests_another_site_started_do_not_keep_an_unattended_terminal_signed_in():
    # given a technician who walked away from a signed-in terminal, 14 minutes ago
    client, _ = client_as("technician")
    assert client.get(reverse("staff:board")).status_code == 200
    _idle_for(client, IDLE - timedelta(minutes=1))

    # when a page of another site loads lab URLs in the background (a photo link, the board)
    for path in (reverse("staff:board"), "/lab/photos/00000000-0000-0000-0000-000000000000/preview"):
        client.get(path, HTTP_SEC_FETCH_SITE="cross-site")
    _idle_for(client, timedelta(minutes=2))

    # then that was not their activity: the next request of theirs finds the terminal signed out
    response = client.get(reverse("staff:board"))
    assert (response.status_code, response["Location"].startswith("/lab/login/")) == (302, True)


def test_the_retention_sweep_deletes_ended_sessions_and_keeps_live_ones():
    idle_client, _ = client_as("technician")
    live_client, _ = client_as("supervisor")
    idle_client.get(reverse("staff:board"))
    live_client.get(reverse("staff:board"))
    idle_row = _session_row(idle_client)
    Session.objects.filter(pk=idle_row.pk).update(
        expire_date=idle_row.expire_date - IDLE - timedelta(seconds=1)
    )

    counts = retention_sweep()

    assert counts["sessions_expired"] == 1
    assert list(Session.objects.values_list("pk", flat=True)) == [_session_row(live_client).pk]
