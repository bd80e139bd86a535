"""The Celery app's configuration: JSON only, no results, explicit queues, late acks only where a task
claims its row.

Broker: Redis/RabbitMQ from CELERY_BROKER_URL, else kombu's filesystem transport under var/broker.

It lives in `lab` (Django's usual `<project>/celery.py`) so services send tasks by name through
`lab.lib.tasks.enqueue` without importing `workers`: layers point one way, `workers` → `lab`. The worker
process loads `workers.app`, which registers the tasks on this same app.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab
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
    task_queues=[Queue("default"), Queue("raster"), Queue("print")]
    + ([Queue(f"print.{settings.PRINT_HOST}")] if settings.PRINT_HOST else []),
    task_routes={
        "production.print_job_rasterize": {"queue": "raster"},
        "production.print_job_submit": {"queue": "print"},
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
app.conf.beat_schedule = {
    "printer-poll": {"task": "production.printer_poll", "schedule": settings.PRODUCTION_POLL_SECONDS},
    "production-reconcile": {
        "task": "production.reconcile",
        "schedule": settings.PRODUCTION_POLL_SECONDS * 3,
    },
    "production-alerts-check": {
        "task": "production.alerts_check",
        "schedule": float(settings.ALERT_CHECK_SECONDS),
    },
    "refunds-reconcile": {"task": "payments.refunds_reconcile", "schedule": 60.0},
    "notifications-sweep": {
        "task": "notify.notifications_sweep",
        "schedule": float(settings.NOTIFY_SWEEP_SECONDS),
    },
    "webhook-deliveries-sweep": {"task": "notify.webhook_deliveries_sweep", "schedule": 60.0},
    "privacy-retention-purge": {
        "task": "privacy.retention_purge",
        "schedule": float(settings.RETENTION_SWEEP_SECONDS),
    },
    "privacy-receipts-sweep": {
        "task": "privacy.receipts_sweep",
        "schedule": float(settings.NOTIFY_SWEEP_SECONDS),
    },
    "audit-review-sample-daily": {
        "task": "audit.review_sample_daily",
        "schedule": crontab(hour=0, minute=30),
    },
    # Also when nothing happened: a signed head every interval makes a silent gap visible.
    "audit-checkpoint": {"task": "audit.checkpoint", "schedule": float(settings.AUDIT_CHECKPOINT_SECONDS)},
}
