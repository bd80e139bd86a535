"""A worker whose ack failed because Redis went away goes on taking messages once Redis is back
(lab/lib/broker.py).

kombu's Redis QoS freed a message's prefetch slot only after Redis had answered the ack: an ack that failed
(Redis restarted while a task ran) left the slot taken for good, and with one slot a process (prefetch
multiplier 1) the worker never read its queues again, with no error after the one "Couldn't ack". Paid orders
then waited for a person to restart the worker; `tests/e2e/test_faults.py` met it when Redis stopped just as
an order's "received" e-mail was acked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection, transaction

from lab.orders.models import OrderEvent
from tests.support.celery_worker import CeleryWorker, database_url, default_queue_worker, wait_until
from tests.support.redis_server import PrivateRedis

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROBE = "broker_ack.probe"  # a task no worker knows: the worker logs that it took it, and drops it
PROBE_TAKEN = f"Received unregistered task of type '{PROBE}'"
ACK_FAILED = "Couldn't ack"


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture
def worker(tmp_path: Path, redis_server: PrivateRedis) -> Iterator[CeleryWorker]:
    with default_queue_worker(
        work_dir=tmp_path / "worker",
        project_dir=PROJECT_DIR,
        broker_url=redis_server.url(db=0),
        database_url=database_url(connection.settings_dict),
    ) as worker:
        yield worker


def _waiting_on_the_order_events() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            [OrderEvent._meta.db_table],
        )
        return bool(cursor.fetchone()[0])


def test_a_worker_whose_ack_failed_while_redis_was_down_takes_messages_again_once_it_is_back(
    worker: CeleryWorker, redis_server: PrivateRedis, monkeypatch: pytest.MonkeyPatch
):
    # a client of the private Redis (Celery takes the broker from the environment before its argument)
    monkeypatch.setenv("CELERY_BROKER_URL", worker.env["CELERY_BROKER_URL"])
    sender = Celery("sender", broker=worker.env["CELERY_BROKER_URL"])
    try:
        # given a late-acked task that runs while Redis goes away: it waits on a lock of the order events
        # table (any order id: the table's lock holds it), and Redis stops before it ends
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {OrderEvent._meta.db_table} IN ACCESS EXCLUSIVE MODE")
            sender.send_task("notify.order_created", kwargs={"order_id": 0}, queue="default")
            wait_until(
                _waiting_on_the_order_events,
                timeout=30,
                interval=0.1,
                what=lambda: f"the task to wait on the order events; log tail:\n{worker.log_tail()}",
            )
            redis_server.stop()
        # when the task ends with Redis down, so its ack fails, and Redis comes back
        wait_until(
            lambda: ACK_FAILED in worker.log_text(),
            timeout=30,
            interval=0.1,
            what=lambda: f"the worker's ack to fail; log tail:\n{worker.log_tail()}",
        )
        redis_server.start()

        # then the worker takes the next message (before: it never read its queue again)
        sender.send_task(PROBE, queue="default")
        wait_until(
            lambda: PROBE_TAKEN in worker.log_text() or not worker.is_running,
            timeout=90,
            interval=0.2,
            what=lambda: f"the worker to take a message after Redis was back; log tail:\n{worker.log_tail()}",
        )
        assert worker.is_running, worker.log_tail()
    finally:
        sender.close()
