"""/healthz, /readyz and /metrics over a live gunicorn on a private PostgreSQL and Redis that the tests stop:
readiness names the dependency that is down while health still answers; LOG_FORMAT=json writes JSON lines."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.postgres_server import PrivatePostgres
from tests.support.processes import wait_for
from tests.support.redis_server import PrivateRedis
from tests.support.web_server import LabWebServer, app_environment

pytestmark = pytest.mark.e2e
METRICS_TOKEN = "metrics-token-for-the-live-test"


class Lab:
    def __init__(self, *, web: LabWebServer, database: PrivatePostgres, broker: PrivateRedis) -> None:
        self.web, self.database, self.broker = web, database, broker

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{self.web.url}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def get_json(self, path: str) -> tuple[int, Any]:
        status, body = self.get(path)
        return status, json.loads(body)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, migrated_schema: Path) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("observability")
    with PrivateRedis() as broker, PrivatePostgres() as database:
        env = app_environment(
            database_url=database.create_database("lab", schema=migrated_schema),
            broker_url=broker.url(db=1),
            var_dir=work / "var",
            extra={
                "METRICS_TOKEN": METRICS_TOKEN,
                "LOG_FORMAT": "json",
                # Loopback is our "proxy", so the test may name the request id it looks for in the log.
                "TRUSTED_PROXIES": "127.0.0.1",
                "LAB_STORAGE_DIR": str(work / "storage"),
            },
        )
        web = LabWebServer(work_dir=work, env=env).start()
        try:
            yield Lab(web=web, database=database, broker=broker)
        finally:
            web.stop()


def test_readyz_answers_200_with_every_check_ok_while_everything_runs(lab: Lab):
    status, body = lab.get_json("/readyz")

    assert status == 200, body
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "broker": "ok",
        "storage": "ok",
    }
    assert all(isinstance(check["duration_ms"], float | int) for check in body["checks"].values())


def test_broker_stopped_makes_readyz_503_naming_it_and_healthz_stays_200(lab: Lab):
    lab.broker.stop()
    try:
        status, body = lab.get_json("/readyz")
        health = lab.get_json("/healthz")
    finally:
        lab.broker.start()

    assert status == 503
    assert body["status"] == "unavailable"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "broker": "failed",
        "storage": "ok",
    }
    assert health == (200, {"status": "ok"})
    assert lab.get_json("/readyz")[0] == 200


def test_database_stopped_makes_readyz_503_naming_it_and_healthz_stays_200(lab: Lab):
    lab.database.stop()
    try:
        status, body = lab.get_json("/readyz")
        health = lab.get_json("/healthz")
    finally:
        lab.database.start()

    assert status == 503
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "failed",
        "broker": "ok",
        "storage": "ok",
    }
    assert body["checks"]["database"]["error"] == "OperationalError"
    assert health == (200, {"status": "ok"})
    assert lab.get_json("/readyz")[0] == 200


def test_metrics_need_the_bearer_token(lab: Lab):
    assert lab.get("/metrics")[0] == 401
    assert lab.get("/metrics", {"Authorization": "Bearer not-the-token"})[0] == 401
    assert lab.get("/metrics", {"Authorization": f"Basic {METRICS_TOKEN}"})[0] == 401


def test_metrics_scrape_parses_and_holds_request_latency_queues_and_job_counts(lab: Lab):
    lab.get("/healthz")

    status, body = lab.get("/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})

    assert status == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    health_count = (
        "printlab_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "health"), ("status_class", "2xx")),
    )
    assert samples[health_count] >= 1
    assert samples[("printlab_database_up", ())] == 1
    assert samples[("printlab_broker_up", ())] == 1
    assert {
        queue: samples[("printlab_celery_queue_depth", (("queue", queue),))]
        for queue in (
            "default",
            "raster",
            "print",
        )
    } == {"default": 0, "raster": 0, "print": 0}
    assert samples[("printlab_print_jobs", (("status", "queued"),))] == 0
    assert samples[("printlab_printers", (("state", "online"),))] == 0
    assert samples[("printlab_webhook_deliveries_due", ())] == 0


def test_json_log_line_of_a_request_carries_its_request_id_and_the_client_s_network_only(lab: Lab):
    request_id = f"test-{uuid.uuid4().hex}"

    # given a client at 203.0.113.57 behind the lab's proxy (127.0.0.1 is trusted here)
    status, _ = lab.get("/lab/no-such-page/", {"X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.57"})

    assert status == 404

    def lines() -> list[str]:
        return [line for line in lab.web.log_tail(200_000).splitlines() if request_id in line]

    # (gunicorn writes its access line after the answer is sent)
    wait_for(lambda: any(not line.startswith("{") for line in lines()), timeout=10, what="the access line")
    records = [json.loads(line) for line in lines() if line.startswith("{")]
    assert [(record["level"], record["logger"], record["message"]) for record in records] == [
        ("WARNING", "django.request", "Not Found: /lab/no-such-page/")
    ]
    assert records[0]["request_id"] == request_id
    # then the lab's line names the client's network, and no line its address (personal data, which logs
    # would keep past an erasure); the access log's peer is written as its network too
    assert records[0]["client_ip"] == "203.0.113.0/24"
    assert set(records[0]) == {"time", "level", "logger", "message", "request_id", "client_ip"}
    assert [line for line in lines() if "203.0.113.57" in line] == []
    access = [line for line in lines() if not line.startswith("{")]
    assert len(access) == 1 and access[0].startswith("127.0.0.0/24 "), access


def test_the_access_log_names_paths_never_query_strings_or_referers(lab: Lab):
    """What people type and what links hold reach gunicorn's access log as a path only (gunicorn.conf.py)."""
    request_id = f"test-{uuid.uuid4().hex}"
    receipt, asset = uuid.uuid4(), uuid.uuid4()
    typed = {
        # a staff search for a customer, a receipt link's bearer token, a justification at the photo gate
        "/lab/admin/accounts/user/?q=canary.customer%40example.org": "/lab/admin/accounts/user/",
        f"/api/v1/receipts/{receipt}?token=canarytoken1234": f"/api/v1/receipts/{receipt}",
        f"/lab/photos/{asset}/download?purpose=maintenance&justification=Canary+Lane+caller": (
            f"/lab/photos/{asset}/download"
        ),
    }
    logged_before = lab.web.log.stat().st_size
    for url in typed:
        lab.get(url, {"X-Request-ID": request_id, "Referer": f"{lab.web.url}/lab/?q=canary.referer"})

    lines = lab.web.log.read_bytes()[logged_before:].decode(errors="replace").splitlines()
    assert [line for line in lines if "canary" in line.lower()] == []
    access = [line for line in lines if request_id in line and not line.startswith("{")]  # JSON: the lab's
    assert [path for path in typed.values() if any(f" {path} HTTP/1.1" in line for line in access)] == list(
        typed.values()
    ), access


def test_a_content_type_django_cannot_parse_is_a_400_problem_from_the_lab_not_gunicorn_s_500(lab: Lab):
    # An RFC 2231 parameter naming an unknown encoding raised in Django's request constructor, before any
    # middleware or handler: gunicorn answered its own HTML 500 and logged a traceback.
    logged_before = lab.web.log.stat().st_size
    request = urllib.request.Request(
        f"{lab.web.url}/api/v1/assets",
        data=b"",
        method="POST",
        headers={"Content-Type": "multipart/form-data; boundary*=nosuch''x"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, content_type, body = response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        status, content_type, body = error.code, error.headers["Content-Type"], error.read()

    assert (status, content_type) == (400, "application/problem+json")
    assert json.loads(body)["code"] == "malformed_content_type"
    logged = lab.web.log.read_bytes()[logged_before:].decode(errors="replace")
    assert "Traceback" not in logged
    # and the same body under a staff page is a page that did not understand it, not a crash
    status, _ = lab.get("/healthz", {"Content-Type": "text/plain; charset*=nosuch''x"})
    assert status == 200
