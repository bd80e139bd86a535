"""LOG_FORMAT=json: each record is one JSON object with the ids in context, and nothing else."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from lab.lib import log_context
from lab.lib.client_ip import address_for_logs
from lab.lib.log_format import JsonFormatter
from tests.support.web_server import PROJECT_DIR


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("lab.production", logging.INFO, __file__, 1, message, args, None)


def test_a_task_log_line_carries_the_task_and_job_ids():
    task_token = log_context.task_id.set("5b1c-task")
    job_token = log_context.job_id.set("42")
    try:
        line = JsonFormatter().format(record("job claimed job=%s", 42))
    finally:
        log_context.job_id.reset(job_token)
        log_context.task_id.reset(task_token)

    parsed = json.loads(line)
    assert {key: parsed[key] for key in ("level", "logger", "message", "task_id", "job_id")} == {
        "level": "INFO",
        "logger": "lab.production",
        "message": "job claimed job=42",
        "task_id": "5b1c-task",
        "job_id": "42",
    }
    assert set(parsed) == {"time", "level", "logger", "message", "task_id", "job_id"}


def test_outside_a_task_or_request_no_ids_are_written():
    parsed = json.loads(JsonFormatter().format(record("sweep done")))

    assert set(parsed) == {"time", "level", "logger", "message"}


def test_an_unknown_log_format_stops_the_process_naming_it():
    completed = subprocess.run(
        [sys.executable, "-c", "import lab.settings"],
        cwd=PROJECT_DIR,
        env={**os.environ, "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: LOG_FORMAT='xml': use plain or json."
    )


@pytest.mark.parametrize(
    ("address", "logged_as"),
    [
        ("203.0.113.57", "203.0.113.0/24"),
        ("[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        # 6to4 (2002::/16) carries the client's IPv4 address in its next 32 bits: a /48 was the whole of it
        ("2002:cb00:7139:1::5", "2002:cb00:7100::/40"),
        ("", "-"),
        ("not an address", "-"),
    ],
)
def test_log_lines_name_the_client_s_network_never_its_address(address, logged_as):
    assert address_for_logs(address) == logged_as
