"""The Celery app's configuration: JSON only, no results, explicit queues, late acks only where a task
claims its row.

Broker: Redis/RabbitMQ from CELERY_BROKER_URL, else kombu's filesystem transport under var/broker.

It lives in `lab` (Django's usual `<project>/celery.py`) so services send tasks by name through
`lab.lib.tasks.enqueue` without importing `workers`: layers point one way, `workers` → `lab`. The worker
process loads `workers.app`, which registers the tasks on this same app.
"""

from __future__ import annotations

import logging
import os
import ssl
from datetime import timedelta
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore
from celery.schedules import crontab
from celery.signals import task_postrun, task_prerun
from django.db import DatabaseError, close_old_connections
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lab.settings")

from django.conf import settings

logger = logging.getLogger(__name__)
# A header of beat's sweep messages (_sweep): the sweep's interval in seconds, which the worker judges it by.
SWEEP_INTERVAL_HEADER = "lab_sweep_seconds"


class LabTask(Task[Any, Any]):
    """Every task of the app. A sweep beat sent (SWEEP_INTERVAL_HEADER) is skipped when it last succeeded
    less than half its interval ago, on the database's clock (the SweepRun row its last success wrote,
    lab/production/sweeps.py): a backlog of one sweep's messages, or a second beat's copy, runs it once.
    Other sends of the same tasks (a staff action's printer poll) always run."""

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seconds = getattr(self.request, SWEEP_INTERVAL_HEADER, None)
        if seconds and _sweep_succeeded_within(self.name, timedelta(seconds=float(seconds) / 2)):
            logger.info("sweep skipped task=%s: it succeeded less than half its interval ago", self.name)
            raise Ignore()


def _sweep_succeeded_within(task: str, window: timedelta) -> bool:
    from django.apps import apps
    from django.db.models.functions import Now

    # By name: lab.lib.tasks imports this module, and lab.lib imports no app (pyproject's layers).
    SweepRun = apps.get_model("production", "SweepRun")
    try:
        return SweepRun.objects.filter(task=task, last_run_at__gt=Now() - window).exists()
    except DatabaseError:  # the sweep runs, and meets the database's trouble itself
        return False


app: Celery[Task[Any, Any]] = Celery("printlab", task_cls=LabTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_default_queue="default",
    # `webhooks`: customers' endpoints decide how long an attempt waits (up to its 10 s timeout), so their
    # deliveries have their own processes and never hold up releases, polls and e-mail on `default`.
    # `fetch`: photos sent by URL (POST /api/v1/assets, open to anonymous clients), whose host decides how
    # long a fetch waits (up to its 100 s soft limit); on `default`, URLs of a host that drops SYNs held both
    # default processes, and releases, reconcile, polls and e-mail waited behind them
    # (deploy/systemd/printlab-fetch.service). The sweep that re-sends lost fetches sends them by name, so
    # they come here too.
    # `audit`: the signed checkpoints, taken by the one worker beside beat and the witness
    # (deploy/systemd/printlab-audit.service); on `default`, the default workers of several app hosts each
    # appended checkpoints to their own host's witness file, and `audit_verify` found each one incomplete.
    task_queues=[
        Queue("default"),
        Queue("raster"),
        Queue("print"),
        Queue("webhooks"),
        Queue("fetch"),
        Queue("audit"),
    ]
    + ([Queue(f"print.{settings.PRINT_HOST}")] if settings.PRINT_HOST else []),
    task_routes={
        "production.print_job_rasterize": {"queue": "raster"},
        "production.print_job_submit": {"queue": "print"},
        "notify.webhook_deliver": {"queue": "webhooks"},
        "intake.asset_fetch": {"queue": "fetch"},
        "audit.checkpoint": {"queue": "audit"},
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
    # The crontab entries (the auditors' nightly review sample at 00:30) run on the lab's wall clock; interval
    # sweeps do not depend on it. Celery keeps its message times in UTC (enable_utc).
    timezone=settings.LAB_TIME_ZONE,
    worker_hijack_root_logger=False,
    # No remote control: nothing of the lab sends a command, and anyone who could publish to the broker
    # stopped every worker with one broadcast `shutdown` (exit 0, which Restart=on-failure left stopped) or
    # quietly stopped a queue with `cancel_consumer` (tests/e2e/test_broker_control.py).
    worker_enable_remote_control=False,
)
# Redis as broker through the lab's transport (lab/lib/broker.py): an ack Redis did not take (it restarted
# while a task ran) still frees the message's prefetch slot; with kombu's own, the worker never read its
# queues again. Given as `broker_transport`, which wins over the URL's scheme, so `rediss://` loses kombu's
# default for it (TLS without checking the certificate): here TLS checks it against the system's CAs.
if str(app.conf.broker_url or "").startswith(("redis://", "rediss://")):
    # One URL only (lab/settings.py refuses several: kombu took a failover URL's scheme as its transport).
    app.conf.broker_transport = "lab.lib.broker:Transport"
    if str(app.conf.broker_url).startswith("rediss://") and not app.conf.broker_use_ssl:
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
elif str(app.conf.broker_url or "").startswith("filesystem"):
    # The embedded broker: message files written whole before they are queued (lab/lib/broker.py).
    app.conf.broker_transport = "lab.lib.broker:FilesystemTransport"
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
    after the Redis answered again (seen in `test_a_stalled_redis_…`, before lab/lib/broker.py freed the
    slot of an ack that failed); without the timeout it waits and goes on. Call before the first send: the
    broker connection pool takes the options when it is made.

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
    """A periodic sweep, skipped by the worker when it succeeded less than half its interval ago (LabTask):
    a sweep is only worth running until the next one is due. Without a bound, a `default` queue that fell
    behind (a long backlog, a worker down) piled up sweeps, and a worker then ran them back to back: in
    bench/scale the reconciler took 34 s a run every 30 s and held the default worker's only process, so the
    releases it was meant to back up waited behind it. A run that takes more than half its interval then
    runs every other interval.

    Not Celery's `expires`: it is a time on the sender's clock (beat's), which the worker compares with its
    own, so a worker whose clock ran more than one interval ahead of beat's discarded every sweep, the
    retention purge's too. The skip reads the database's clock only."""
    return {"task": task, "schedule": seconds, "options": {"headers": {SWEEP_INTERVAL_HEADER: seconds}}}


# Beat sends the checkpoint task this many times every AUDIT_CHECKPOINT_SECONDS, and it signs only when the
# witness's last checkpoint is about an interval old (workers/tasks.py: audit_checkpoint):
# sent once an interval, one send beat lost (the broker restarted over it, beat moved to a host with a fresh
# schedule file) or one failed run put two intervals between two checkpoints, a coverage_gap for good.
AUDIT_CHECKPOINT_TICKS = 4

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
    "account-mails-sweep": _sweep("notify.account_mails_sweep", float(settings.NOTIFY_SWEEP_SECONDS)),
    "privacy-retention-purge": _sweep("privacy.retention_purge", float(settings.RETENTION_SWEEP_SECONDS)),
    "privacy-receipts-sweep": _sweep("privacy.receipts_sweep", float(settings.NOTIFY_SWEEP_SECONDS)),
    "privacy-erasure-log-sweep": _sweep("privacy.erasure_log_sweep", float(settings.NOTIFY_SWEEP_SECONDS)),
    # Never skipped: the daily review sample, and the signed checkpoints (a dropped one is a gap the
    # verifiers report).
    "audit-review-sample-daily": {
        "task": "audit.review_sample_daily",
        "schedule": crontab(hour=0, minute=30),
    },
    # Also when nothing happened: a signed head every interval makes a silent gap visible. Sent every tick
    # (AUDIT_CHECKPOINT_TICKS an interval); the task signs only when the last checkpoint is due for its next.
    "audit-checkpoint": {
        "task": "audit.checkpoint",
        "schedule": settings.AUDIT_CHECKPOINT_SECONDS / AUDIT_CHECKPOINT_TICKS,
    },
}
