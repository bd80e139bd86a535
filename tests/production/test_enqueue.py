"""`enqueue` after a failed send: the process leaves the broker alone for a few seconds, so a request that
sends several messages to a broker that does not answer waits for one send's timeouts, not for each."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kombu.exceptions import OperationalError

from lab.celery import app
from lab.lib import tasks


@pytest.fixture
def broker(monkeypatch) -> dict[str, Any]:
    """The broker as `enqueue` sees it: each send counted, failing while `down`; a quiet window of 0.5 s."""
    state: dict[str, Any] = {"down": True, "sends": 0}

    def send_task(name: str, **_: object) -> None:
        state["sends"] += 1
        if state["down"]:
            raise OperationalError("timed out")

    monkeypatch.setattr(app, "send_task", send_task)
    monkeypatch.setattr(tasks, "BROKER_QUIET_SECONDS", 0.5)
    return state


def test_after_a_failed_send_the_process_sends_nothing_for_a_few_seconds_then_tries_again(broker):
    # given a send that failed
    assert tasks.enqueue("production.order_release", order_id=1) is False

    # then the next sends, within the quiet window, are left to the reconcile sweeps without a try
    assert tasks.enqueue("notify.order_status_changed", order_id=1, status="paid") is False
    assert broker["sends"] == 1

    # and after it the broker is tried again, and a send that works ends the quiet
    time.sleep(0.6)
    broker["down"] = False
    assert tasks.enqueue("production.order_release", order_id=2) is True
    assert tasks.enqueue("production.order_release", order_id=3) is True
    assert broker["sends"] == 3
