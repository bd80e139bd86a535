"""Thin tasks for customer notifications: order e-mails and webhooks, webhook delivery and its sweeper, and
the mails a change of an account owes its holder (lab.notify.account_mails) and their sweep.

Each task takes ids and calls one lab.notify service; the services claim their rows, so redelivery is safe.
"""

from __future__ import annotations

from datetime import timedelta

from workers.app import app

# A lost countdown message is noticed by the sweeper once a delivery is this late.
SWEEP_GRACE = timedelta(minutes=2)


@app.task(
    name="notify.order_created",
    queue="default",
    time_limit=60,
    soft_time_limit=50,
    acks_late=True,  # idempotent: the notification row is claimed before anything is sent
    autoretry_for=(OSError,),  # the mail server was unreachable; the claim row lets the retry resend
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=6,
)
def order_created(*, order_id: int) -> None:
    from lab.notify.services import notify_order_created

    notify_order_created(order_id=order_id)


@app.task(
    name="notify.order_status_changed",
    queue="default",
    time_limit=60,
    soft_time_limit=50,
    acks_late=True,  # idempotent: the notification row is claimed before anything is sent
    autoretry_for=(OSError,),
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=6,
)
def order_status_changed(*, order_id: int, status: str) -> None:
    from lab.notify.services import notify_order_status_changed

    notify_order_status_changed(order_id=order_id, status=status)


@app.task(name="notify.notifications_sweep", queue="default", time_limit=300, max_retries=0)
def notifications_sweep() -> int:
    from lab.notify.services import notifications_sweep as sweep

    return sweep()


@app.task(
    name="notify.account_mail_send",
    queue="default",  # with the order e-mails
    time_limit=60,
    soft_time_limit=50,
    acks_late=True,  # idempotent: the account mail row is claimed before anything is sent
    autoretry_for=(OSError,),  # the mail server was unreachable (a refusal is recorded, not raised)
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=6,
)
def account_mail_send(*, account_mail_id: int) -> None:
    from lab.notify.account_mails import account_mail_send as send

    send(account_mail_id=account_mail_id)


@app.task(name="notify.account_mails_sweep", queue="default", time_limit=300, max_retries=0)
def account_mails_sweep() -> int:
    from lab.notify.account_mails import account_mails_sweep as sweep

    return sweep()


# The service schedules its own retries (30 s doubling to 1 h, for 24 h), so Celery never retries this task.
@app.task(
    name="notify.webhook_deliver",
    queue="webhooks",  # its own workers: a customer's slow endpoint must not hold the default queue
    time_limit=60,
    soft_time_limit=50,
    acks_late=True,  # idempotent: an attempt claims its delivery row; a lost worker's claim runs out
    max_retries=0,
)
def webhook_deliver(*, delivery_id: str) -> None:
    from lab.notify.delivery import webhook_deliver as deliver

    deliver(delivery_id=delivery_id)


@app.task(name="notify.webhook_deliveries_sweep", queue="default", time_limit=60, max_retries=0)
def webhook_deliveries_sweep() -> int:
    from lab.lib.clock import database_now
    from lab.lib.tasks import queue_depth
    from lab.notify.selectors import webhook_deliveries_due

    # Claims are written on the database's clock, so they are judged on it (lab/lib/clock.py).
    due = webhook_deliveries_due(due_before=database_now() - SWEEP_GRACE)
    # Only as many as the queue lacks, as the reconciler does for rasters: with no webhooks worker running (a
    # host upgraded without printlab-webhooks enabled) every sweep sent every due delivery again, up to 500 a
    # minute piling up in Redis; messages waiting are attempts still to come.
    depth = queue_depth("webhooks") if due else 0
    resend = due if depth is None else due[: max(len(due) - depth, 0)]
    for delivery_id in resend:
        webhook_deliver.apply_async(kwargs={"delivery_id": delivery_id})
    return len(resend)
