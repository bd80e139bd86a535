"""The test command's xdist groups take effect: the e2e tests with Celery or CUPS stacks run on one worker,
in order, so no two such private stacks compete for the machine's two cores and a fault test's timing is its
own; those with web servers and Chromium only run on another, in order (tests/conftest.py). A pytest that
drops the groups fails here, not as flaky fault tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_this_test_carries_its_module_group_and_xdist_runs_by_it(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("xdist_group")
    assert marker is not None
    assert marker.args == ("tests/config/test_xdist_groups.py",)
    if request.config.getoption("loadgroup", default=False):  # an xdist worker under --dist loadgroup
        # xdist's scheduler knows a test's group only from this suffix of its id.
        assert request.node.nodeid.endswith("@tests/config/test_xdist_groups.py"), request.node.nodeid


# What only the `services` group may do: start Celery workers or cupsd, or stop, restart, freeze or kill a
# service under a running lab (the fault tests, whose timing must be their own).
WEB_MARK = "pytest.mark.e2e" + '(stack="web")'  # (split: this module is not one of them)
FAULT_STACK_WORDS = ("CeleryWorker", "PrivateCups", ".restart(", ".pause(", "database.stop(", "broker.stop(")


def test_the_web_group_starts_no_celery_or_cups_stack_and_stops_no_service_under_the_lab() -> None:
    tests = Path(__file__).resolve().parents[1]
    web_modules = [path for path in tests.rglob("test_*.py") if WEB_MARK in path.read_text()]
    assert len(web_modules) >= 5
    found = {
        str(path.relative_to(tests)): word
        for path in web_modules
        for word in FAULT_STACK_WORDS
        if word in path.read_text()
    }
    assert found == {}
