"""The private Redis and PostgreSQL harnesses: they start, keep or lose data across a restart as configured,
stop only their own process, and run the app's worker and web server against them."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import psycopg
import pytest
import redis

from tests.support.celery_worker import CeleryWorker, wait_until
from tests.support.postgres_server import PostgresHarnessError, PrivatePostgres
from tests.support.processes import port_open
from tests.support.redis_server import PrivateRedis, RedisHarnessError
from tests.support.stripe_server import signed_event
from tests.support.web_server import PROJECT_DIR, LabWebServer, app_environment

pytestmark = pytest.mark.e2e
POLL_SUCCEEDED = re.compile(r"Task production\.printer_poll\[[0-9a-f-]+\] succeeded")


def test_redis_without_persistence_loses_keys_on_restart_and_keeps_its_port():
    with PrivateRedis() as server:
        client = redis.Redis.from_url(server.url(db=2))
        client.set("queued-message", "1")
        first_pid, port = server.pid, server.port

        server.restart()

        assert (server.port, server.url(db=2)) == (port, f"redis://127.0.0.1:{port}/2")
        assert server.pid != first_pid
        assert redis.Redis.from_url(server.url(db=2)).get("queued-message") is None
        directory = server.directory
    assert directory is not None and not directory.exists()
    assert not port_open(port)


def test_redis_with_appendonly_keeps_keys_through_sigkill():
    with PrivateRedis(appendonly=True) as server:
        redis.Redis.from_url(server.url()).set("queued-message", "1")

        server.restart(kill=True)

        assert redis.Redis.from_url(server.url()).get("queued-message") == b"1"


def test_redis_missing_program_is_a_clear_error():
    with pytest.raises(RedisHarnessError, match="apt-get install redis-server"):
        PrivateRedis(executable="redis-server-that-is-not-installed").start()


def test_postgres_table_survives_restart_and_an_old_connection_fails():
    with PrivatePostgres() as server:
        assert server.create_database("lab") == f"postgres://postgres@127.0.0.1:{server.port}/lab"
        old = psycopg.connect(server.url("lab"), autocommit=True)
        old.execute("CREATE TABLE print_order (id integer PRIMARY KEY)")
        old.execute("INSERT INTO print_order VALUES (7)")
        first_pid, port = server.pid, server.port

        server.restart()

        assert (server.port, server.pid != first_pid) == (port, True)
        with pytest.raises(psycopg.OperationalError):
            old.execute("SELECT 1")
        old.close()
        with psycopg.connect(server.url("lab")) as new:
            assert new.execute("SELECT id FROM print_order").fetchall() == [(7,)]
        directory = server.directory
    assert directory is not None and not directory.exists()
    assert not port_open(port)


def test_postgres_immediate_stop_keeps_committed_rows_by_crash_recovery():
    with PrivatePostgres() as server:
        with psycopg.connect(server.url(), autocommit=True) as connection:
            connection.execute("CREATE TABLE claim (id integer)")
            connection.execute("INSERT INTO claim VALUES (1)")

        server.stop(mode="immediate")
        assert not server.is_running
        server.start()

        with psycopg.connect(server.url()) as connection:
            assert connection.execute("SELECT id FROM claim").fetchall() == [(1,)]
        assert "database system was interrupted" in server.log_tail(20000)


def test_postgres_missing_program_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PostgresHarnessError, match="apt-get install postgresql"):
        PrivatePostgres(bin_dir=tmp_path).start()


def test_worker_and_web_server_run_against_private_redis_and_postgres(tmp_path: Path, migrated_schema: Path):
    """The explicit URLs win over the test command's DATABASE_URL / CELERY_BROKER_URL in the environment."""
    with PrivateRedis() as broker, PrivatePostgres() as database:
        database_url = database.create_database("lab", schema=migrated_schema)
        env = app_environment(
            database_url=database_url, broker_url=broker.url(db=1), var_dir=tmp_path / "var"
        )
        web = LabWebServer(work_dir=tmp_path / "web", env=env).start()
        worker = CeleryWorker(
            work_dir=tmp_path / "worker",
            project_dir=PROJECT_DIR,
            env={"LAB_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"},
            broker_url=broker.url(db=1),
            database_url=database_url,
        )
        try:
            with urllib.request.urlopen(f"{web.url}/api/v1/products", timeout=10) as response:
                page = (response.status, json.load(response))
            assert page == (200, {"count": 0, "next": None, "previous": None, "results": []})
            worker.start(purge=True)
            # Embedded beat sends printer_poll every second through the private Redis; the worker runs it
            # against the private PostgreSQL.
            wait_until(
                lambda: POLL_SUCCEEDED.search(worker.log_text()),
                timeout=30,
                what=lambda: f"a printer poll on the private services; log:\n{worker.log_tail()}",
            )
            assert worker.env["DATABASE_URL"] == database_url != os.environ.get("DATABASE_URL")
            with psycopg.connect(database_url) as connection:
                applied = connection.execute("SELECT count(*) FROM django_migrations").fetchone()
            assert applied is not None and applied[0] > 0
        finally:
            worker.stop()
            web.stop()


def _request(
    url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    """(status, headers, body) of one request, whatever its status."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_while_the_database_is_down_the_api_answers_503_and_the_retry_works(
    tmp_path: Path, migrated_schema: Path
):
    secret = "whsec_database_down"
    with PrivateRedis() as broker, PrivatePostgres() as database:
        database_url = database.create_database("lab", schema=migrated_schema)
        env = app_environment(
            database_url=database_url,
            broker_url=broker.url(db=1),
            var_dir=tmp_path / "var",
            extra={"STRIPE_WEBHOOK_SECRET": secret},
        )
        web = LabWebServer(work_dir=tmp_path / "web", env=env).start()
        payload, signature = signed_event(
            event_type="payment_intent.succeeded",
            data_object={"id": "pi_not_ours", "object": "payment_intent", "amount": 1200},
            secret=secret,
            event_id="evt_sent_while_the_database_was_down",
        )
        webhook = {"Content-Type": "application/json", "Stripe-Signature": signature}
        try:
            assert _request(f"{web.url}/api/v1/products")[0] == 200
            database.stop(mode="fast")

            status, headers, body = _request(f"{web.url}/api/v1/products")
            problem = json.loads(body)
            assert (status, headers["Content-Type"], problem["code"]) == (
                503,
                "application/problem+json",
                "database_unavailable",
            )
            assert headers["Retry-After"] == "5"
            # Stripe retries an event it did not get a 2xx for.
            stripe_status, _, _ = _request(
                f"{web.url}/api/v1/webhooks/stripe", method="POST", body=payload, headers=webhook
            )
            assert stripe_status == 503
            # A staff page whose session must be read from the database.
            page_status, page_headers, page = _request(
                f"{web.url}/lab/", headers={"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"}
            )
            assert (page_status, page_headers["Retry-After"]) == (503, "5")
            assert b"database is not answering" in page

            database.start()
            wait_until(
                lambda: _request(f"{web.url}/api/v1/products")[0] == 200,
                timeout=20,
                what=lambda: f"the API answering again; log:\n{web.log_tail()}",
            )
            stripe_status, _, _ = _request(
                f"{web.url}/api/v1/webhooks/stripe", method="POST", body=payload, headers=webhook
            )
            assert stripe_status == 200
            with psycopg.connect(database_url) as connection:
                recorded = connection.execute(
                    "SELECT outcome FROM orders_stripeevent WHERE event_id = %s",
                    ("evt_sent_while_the_database_was_down",),
                ).fetchall()
            assert recorded == [("unknown_payment_intent",)]
        finally:
            web.stop()
