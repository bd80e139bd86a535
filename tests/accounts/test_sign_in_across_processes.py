"""The sign-in limits and the DRF throttles hold across web processes: two gunicorn servers, one Redis.

Neither server is given CACHE_URL: with a Redis broker the cache defaults to that Redis (the next database
number), which is what makes the counts shared. With per-process caches each server would see half.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from lab.accounts.models import SecurityEvent
from tests.builders import UserFactory
from tests.support.celery_worker import database_url
from tests.support.redis_server import PrivateRedis
from tests.support.web_server import LabWebServer, app_environment

pytestmark = pytest.mark.e2e(stack="web")

PASSWORD = "correct horse battery"


@pytest.fixture
def two_web_servers(tmp_path: Path) -> Iterator[tuple[LabWebServer, LabWebServer]]:
    if connection.vendor != "postgresql":
        pytest.fail("this test needs the PostgreSQL test database (DATABASE_URL=postgres://…)")
    with PrivateRedis() as redis:
        env = app_environment(
            database_url=database_url(connection.settings_dict),
            broker_url=redis.url(db=4),
            var_dir=tmp_path / "var",
            extra={
                "SIGNIN_ACCOUNT_FAILURES": "4",
                "SIGNIN_ADDRESS_FAILURES": "100",
                "API_ANON_THROTTLE": "3/min",
            },
        )
        env.pop("CACHE_URL", None)
        servers = [LabWebServer(work_dir=tmp_path / f"web{n}", env=env) for n in (1, 2)]
        try:
            for server in servers:
                server.start()
            yield servers[0], servers[1]
        finally:
            for server in servers:
                server.stop()


def post_json(url: str, body: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.django_db(transaction=True)
def test_failed_sign_ins_and_throttles_are_counted_once_across_two_web_processes(two_web_servers):
    first, second = two_web_servers
    assert first.pid != second.pid
    UserFactory.create(email="ada@example.org")
    guess = {"email": "ada@example.org", "password": "a guess"}

    failures = [post_json(f"{server.url}/api/v1/auth/token", guess)[0] for server in (first, second) * 2]
    locked_status, locked = post_json(
        f"{first.url}/api/v1/auth/token", {"email": "ada@example.org", "password": PASSWORD}
    )
    products = [get_status(f"{server.url}/api/v1/products") for server in (first, second, first, second)]

    assert failures == [401, 401, 401, 401]
    assert (locked_status, locked["code"]) == (429, "sign_in_locked")
    assert SecurityEvent.objects.filter(kind="sign_in_locked").count() == 1
    assert products == [200, 200, 200, 429]
