"""The Celery app's configuration: JSON only, no results, explicit queues, late acks only where a task
claims its row.

Broker: Redis/RabbitMQ from CELERY_BROKER_URL, else kombu's filesystem transport under var/broker.

It lives in `lab` (Django's usual `<project>/celery.py`) so services send tasks by name through
`lab.lib.tasks.enqueue` without importing `workers`: layers point one way, `workers` → `lab`. The worker
process loads `workers.app`, which registers the tasks on this same app.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lab.settings")

from django.conf import settings

app = Celery("printlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_default_queue="default",
    # `webhooks`: customers' endpoints decide how long an attempt waits (up to its 10 s timeout), so their
    # deliveries have their own processes and never hold up releases, polls and e-mail on `default`.
    task_queues=[Queue("default"), Queue("raster"), Queue("print"), Queue("webhooks")]
    + ([Queue(f"print.{settings.PRINT_HOST}")] if settings.PRINT_HOST else []),
    task_routes={
        "production.print_job_rasterize": {"queue": "raster"},
        "production.print_job_submit": {"queue": "print"},
        "notify.webhook_deliver": {"queue": "webhooks"},
    },
    worker_prefetch_multiplier=1,
    task_acks_late=False,
    task_reject_on_worker_lost=False,
    broker_connection_retry_on_startup=True,
    # A web request that commits and then nudges a worker must not hang on a broker that is down: a few
    # quick tries, then `enqueue` logs and leaves the work to the reconcile sweeps.
    task_publish_retry_policy={
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 1,
    },
    broker_connection_timeout=3,
    timezone="UTC",
    worker_hijack_root_logger=False,
)
# Database connections across tasks. Celery's Django fixup closes every connection before and after each task
# unless CELERY_DB_REUSE_MAX is set: a new PostgreSQL backend per task, 11.5 ms of server CPU against 1.6 ms
# on a kept connection (bench/scale/README.md). So workers keep theirs like web processes do, and before and
# after every task Django's own `close_old_connections` drops one that is broken (a PostgreSQL restart) or
# older than DATABASE_CONN_MAX_AGE, and arms the one-`SELECT 1` health check for its next use.
# (Read by the fixup as `app.conf.get("CELERY_DB_REUSE_MAX")`; a full close every 10,000 tasks on top.)
app.conf.update({"CELERY_DB_REUSE_MAX": 5000})


def sends_give_up_on_a_stalled_broker() -> None:
    """For processes that only send (web): each connect to a Redis broker, and each wait for its answer, ends
    after REDIS_TIMEOUT_SECONDS, so a Redis that takes connections and does not answer (stalled, swapping,
    frozen) fails a send in seconds (`enqueue` then leaves the work to the reconcile sweeps) instead of
    holding the request. Not for workers: a consumer whose ack timed out stopped taking messages for good
    after the Redis answered again (seen in `test_a_stalled_redis_…`); without the timeout it waits and goes
    on. Call before the first send: the broker connection pool takes the options when it is made.

    One retry, not two: a send on a kept connection that Redis closed (a restart) still gets its reconnect,
    and a stalled Redis costs a request about 6 s (measured; 8.5 s with two retries)."""
    if str(app.conf.broker_url or "").startswith(("redis://", "rediss://")):
        app.conf.broker_transport_options = {
            **(app.conf.broker_transport_options or {}),
            "socket_timeout": settings.REDIS_TIMEOUT_SECONDS,
            "socket_connect_timeout": settings.REDIS_TIMEOUT_SECONDS,
        }
        app.conf.task_publish_retry_policy = {**app.conf.task_publish_retry_policy, "max_retries": 1}


@task_prerun.connect
@task_postrun.connect
def _db_connections_tidy(*, task: Task[Any, Any], **_: object) -> None:
    # Not for a task run eagerly in a caller's transaction (tests): closing there would break the caller.
    if not getattr(task.request, "is_eager", False):
        close_old_connections()


def _sweep(task: str, seconds: float) -> dict[str, Any]:
    """A periodic sweep whose message expires after one interval: a sweep is only worth running until the next
    one is due. Without it, a `default` queue that fell behind (a long backlog, a worker down) piled up
    sweeps, and a worker then ran them back to back: in bench/scale the reconciler took 34 s a run every 30 s
    and held the default worker's only process, so the releases it was meant to back up waited behind it."""
    return {"task": task, "schedule": seconds, "options": {"expires": seconds}}


app.conf.beat_schedule = {
    "printer-poll": _sweep("production.printer_poll", settings.PRODUCTION_POLL_SECONDS),
    "production-reconcile": _sweep("production.reconcile", settings.PRODUCTION_POLL_SECONDS * 3),
    "production-alerts-check": _sweep("production.alerts_check", float(settings.ALERT_CHECK_SECONDS)),
    "printer-documents-discard": _sweep(
        "production.printer_documents_discard", float(settings.PRINTER_DOCUMENTS_DISCARD_SECONDS)
    ),
    "asset-fetches-sweep": _sweep("intake.asset_fetches_sweep", float(settings.ASSET_FETCH_SWEEP_SECONDS)),
    "refunds-reconcile": _sweep("payments.refunds_reconcile", 60.0),
    "notifications-sweep": _sweep("notify.notifications_sweep", float(settings.NOTIFY_SWEEP_SECONDS)),
    "webhook-deliveries-sweep": _sweep("notify.webhook_deliveries_sweep", 60.0),
    "privacy-retention-purge": _sweep("privacy.retention_purge", float(settings.RETENTION_SWEEP_SECONDS)),
    "privacy-receipts-sweep": _sweep("privacy.receipts_sweep", float(settings.NOTIFY_SWEEP_SECONDS)),
    # Never expired: the daily review sample, and the signed checkpoints (a dropped one is a gap the
    # verifiers report).
    "audit-review-sample-daily": {
        "task": "audit.review_sample_daily",
        "schedule": crontab(hour=0, minute=30),
    },
    # Also when nothing happened: a signed head every interval makes a silent gap visible.
    "audit-checkpoint": {"task": "audit.checkpoint", "schedule": float(settings.AUDIT_CHECKPOINT_SECONDS)},
}
