"""Enqueue Celery tasks by name from services without importing `workers` (layers point one way).

Call it inside `transaction.on_commit` so a task never runs against a row that was rolled back.

A message is a nudge, never the only record of work to do: every hand-off is also visible in the database
(an order `paid` without jobs, a job `queued`, a refund `refund_pending`, an order event without its
notification, a photo by URL `pending`), and the reconcile sweeps on beat find it again. So a broker that is
down, restarting or lost its queue costs latency, not work — and `enqueue` must not turn a committed change
into an error for the caller (a 500 to Stripe after the order was already paid would make Stripe's retry
change nothing).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.exceptions import OperationalError

from lab.celery import app

logger = logging.getLogger(__name__)


# After a send failed, this process sends nothing for a few seconds. A broker that takes connections and does
# not answer costs each send its timeouts (REDIS_TIMEOUT_SECONDS, tried twice): a request sending three
# messages would wait for all three, past the patience of a proxy or of Stripe. The sends skipped are nudges
# like the failed one, redone by the reconcile sweeps.
BROKER_QUIET_SECONDS = 5.0
_broker_failed_at: float | None = None


def enqueue(
    task_name: str, *, queue: str | None = None, countdown: float | None = None, **kwargs: Any
) -> bool:
    """Send the task; False (logged) when the broker cannot take it — the reconcile sweeps will."""
    global _broker_failed_at
    if _broker_failed_at is not None and time.monotonic() - _broker_failed_at < BROKER_QUIET_SECONDS:
        logger.warning("broker unavailable a moment ago, task left to the reconciler task=%s", task_name)
        return False
    options: dict[str, Any] = {}
    if queue:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    try:
        app.send_task(task_name, kwargs=kwargs, **options)
    except (OperationalError, OSError) as error:
        _broker_failed_at = time.monotonic()
        logger.warning(
            "broker unavailable, task left to the reconciler task=%s error=%s",
            task_name,
            type(error).__name__,
        )
        return False
    _broker_failed_at = None
    return True


def broker_failures_forget() -> None:
    """Send again from the next `enqueue` on, whenever the last failure was (tests that fail the broker)."""
    global _broker_failed_at
    _broker_failed_at = None


def queue_depth(queue: str) -> int | None:
    """Messages waiting in `queue` on the broker, or None when the broker cannot say (down, restarting).

    The reconciler compares it with the work the database says is waiting: fewer messages than waiting
    jobs means some were lost (a broker restart without persistence), so it sends them again.
    """
    try:
        with app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as error:
        logger.info("queue depth unknown queue=%s error=%s", queue, type(error).__name__)
        return None
