"""/metrics in process: off without a token, refused with a wrong one, and exact scrape-time figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from lab.audit.records import Entry, audit_append
from lab.production.models import Printer
from tests.support.metrics import Samples
from tests.support.metrics import scrape as metrics_scrape
from tests.support.web_server import PROJECT_DIR

pytestmark = pytest.mark.django_db
TOKEN = "a-metrics-token-of-this-test"


def scrape(client: Client) -> Samples:
    return metrics_scrape(client, token=TOKEN)


def test_metrics_answer_404_while_no_token_is_configured(settings):
    settings.METRICS_TOKEN = ""

    response = Client().get("/metrics", headers={"Authorization": "Bearer anything"})

    assert response.status_code == 404
    assert b"printlab_" not in response.content


def test_metrics_refuse_a_missing_or_wrong_token_with_401(settings):
    settings.METRICS_TOKEN = TOKEN

    missing = Client().get("/metrics")
    wrong = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"printlab_" not in missing.content + wrong.content


def test_scrape_counts_printers_by_state_and_the_print_host_queue(settings):
    settings.METRICS_TOKEN = TOKEN
    Printer.objects.create(name="alpha", backend="hotfolder", target="alpha", state="error", host="east")
    Printer.objects.create(name="bravo", backend="hotfolder", target="bravo")

    samples = scrape(Client())

    assert {
        state: samples[("printlab_printers", (("state", state),))]
        for state in ("online", "paused", "offline", "error")
    } == {"online": 1, "paused": 0, "offline": 0, "error": 1}
    assert samples[("printlab_printer_state", (("printer", "alpha"), ("state", "error")))] == 1
    assert samples[("printlab_printer_state", (("printer", "bravo"), ("state", "online")))] == 1
    assert ("printlab_celery_queue_depth", (("queue", "print.east"),)) in samples
    # every queue the app declares, the customers' webhook deliveries' own included
    for queue in ("default", "raster", "print", "webhooks"):
        assert ("printlab_celery_queue_depth", (("queue", queue),)) in samples, queue
    assert samples[("printlab_database_up", ())] == 1


def test_a_request_adds_one_observation_to_its_route_latency(settings):
    settings.METRICS_TOKEN = TOKEN
    client = Client()
    key = (
        "printlab_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "ready"), ("status_class", "2xx")),
    )
    before = scrape(client).get(key, 0)

    assert client.get("/readyz").status_code == 200

    assert scrape(client)[key] == before + 1


def test_an_audit_append_adds_one_observation_to_the_audit_latency(settings):
    settings.METRICS_TOKEN = TOKEN
    client = Client()
    key = ("printlab_audit_append_duration_seconds_count", ())
    before = scrape(client)[key]

    audit_append(
        Entry(
            action="image.view.preview", actor_id="a-1", actor_role="technician", outcome="granted", rule="r"
        )
    )

    assert scrape(client)[key] == before + 1


def test_metrics_token_can_come_from_a_file(tmp_path: Path):
    secret = tmp_path / "metrics_token"
    secret.write_text("token-from-a-file\n")
    environment = {key: value for key, value in os.environ.items() if key != "METRICS_TOKEN"}

    completed = subprocess.run(
        [sys.executable, "-c", "import lab.settings as s; print(s.METRICS_TOKEN)"],
        cwd=PROJECT_DIR,
        env={**environment, "METRICS_TOKEN_FILE": str(secret)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (completed.returncode, completed.stdout) == (0, "token-from-a-file\n"), completed.stderr
