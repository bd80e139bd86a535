"""The messages waiting on the suite's real Redis broker: Celery keeps each queue as a Redis list."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import redis
from django.conf import settings


@contextlib.contextmanager
def emptied_queues(*queues: str) -> Iterator[redis.Redis]:
    """A client of the suite's Redis broker with `queues` empty before and after."""
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "the suite runs with Redis as the broker"
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(*queues)
    try:
        yield client
    finally:
        client.delete(*queues)


def queued_tasks(broker: redis.Redis, queue: str) -> list[tuple[str, dict[str, Any]]]:
    """(task name, keyword arguments) of every message waiting in `queue`, oldest last."""
    messages = [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[1]) for m in messages]
