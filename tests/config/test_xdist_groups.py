"""The test command's xdist groups take effect: the e2e tests with Celery or CUPS stacks run on one worker,
in order, so no two such private stacks compete for the machine's two cores and a fault test's timing is its
own; those with web servers and Chromium only run on another, in order (tests/conftest.py). A pytest that
drops the groups fails here, not as flaky fault tests."""

from __future__ import annotations

import pytest


def test_this_test_carries_its_module_group_and_xdist_runs_by_it(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("xdist_group")
    assert marker is not None
    assert marker.args == ("tests/config/test_xdist_groups.py",)
    if request.config.getoption("loadgroup", default=False):  # an xdist worker under --dist loadgroup
        # xdist's scheduler knows a test's group only from this suffix of its id.
        assert request.node.nodeid.endswith("@tests/config/test_xdist_groups.py"), request.node.nodeid
