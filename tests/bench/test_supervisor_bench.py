"""The supervisor benchmark's rows are generated in SQL, column by column: a new NOT NULL column without a
database default broke it twice unnoticed (`reprint_request_key`, `address_sealed`) until this test ran it, at
a size that takes seconds, on the suite's PostgreSQL server (in a database of its own, dropped after)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.support.celery_worker import database_url
from tests.support.web_server import PROJECT_DIR

pytestmark = pytest.mark.django_db


def test_the_supervisor_benchmark_generates_its_lab_and_measures_every_figure(tmp_path: Path) -> None:
    assert connection.vendor == "postgresql"  # the suite runs on PostgreSQL
    postgres = database_url(connection.settings_dict).rsplit("/", 1)[0]
    figures = tmp_path / "supervisor.json"

    run = subprocess.run(
        [
            *(sys.executable, "-m", "bench.supervisor.run", "--jobs", "200", "--days", "2", "--runs", "1"),
            *("--postgres", postgres, "--json", str(figures)),
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(figures.read_text())
    assert result["rows"]["production_printjob"] >= 200
    assert set(result["ranges"]) == {"7d", "30d"}
    assert all(
        value > 0 for figures_of_range in result["ranges"].values() for value in figures_of_range.values()
    )
