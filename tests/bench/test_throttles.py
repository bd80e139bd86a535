"""The benchmarks lift every throttle of the lab (bench/throttles.py): each listed its own, and a throttle
added later (order requests, 120 an hour per customer) stopped the intake benchmark with 429s."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.throttles import LIFTED, throttles_lifted
from tests.support.web_server import PROJECT_DIR


def test_every_throttle_rate_of_the_lab_is_lifted_by_the_benchmarks_environment() -> None:
    # when: the lab's settings read with the benchmarks' throttle variables
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']))"
    )
    env = {**os.environ, **throttles_lifted(), "DJANGO_SETTINGS_MODULE": "lab.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60
    )

    # then: every scope's rate is the lifted one, and there are scopes to lift
    assert result.returncode == 0, result.stderr
    rates = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(rates) >= 10
    assert {scope: rate for scope, rate in rates.items() if rate != LIFTED} == {}
