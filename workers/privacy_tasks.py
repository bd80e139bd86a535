"""Thin tasks for the privacy controls: the retention sweep that beat runs on a schedule, the signed
privacy receipts (issued after an order ships or its photos are purged, mailed, swept for lost messages), and
the sweep of erasures' entries still owed to the erasure log.

The sweep locks and re-checks each photo before purging it, so an overlapping or redelivered run is harmless.
"""

from __future__ import annotations

from workers.app import app


# The default queue (task_default_queue): a task-level `queue=` attribute is deprecated in Celery 5.
@app.task(name="privacy.retention_purge", time_limit=900, soft_time_limit=840, max_retries=0)
def retention_purge() -> dict[str, int]:
    from lab.customer_data.retention import retention_sweep

    return retention_sweep()


@app.task(
    name="privacy.receipt_issue",
    time_limit=60,
    soft_time_limit=50,
    acks_late=True,  # idempotent: one receipt per order and reason, issued under the order's row lock
    max_retries=0,  # the receipts sweep issues what a failed run left
)
def receipt_issue(*, order_id: int, reason: str) -> None:
    from lab.customer_data.receipts import receipt_issue_for_order

    receipt_issue_for_order(order_id=order_id, reason=reason)


@app.task(
    name="privacy.receipt_email",
    time_limit=60,
    soft_time_limit=50,
    acks_late=True,  # idempotent: the receipt's e-mail is claimed before it is sent
    autoretry_for=(OSError,),  # the mail server was unreachable; the row is marked failed and claimable
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=6,
)
def receipt_email(*, receipt_id: str) -> None:
    from lab.customer_data.receipts import receipt_email_send

    receipt_email_send(receipt_id=receipt_id)


@app.task(name="privacy.receipts_sweep", time_limit=300, soft_time_limit=280, max_retries=0)
def receipts_sweep() -> dict[str, int]:
    from lab.customer_data.receipts import receipts_sweep as sweep

    return sweep()


@app.task(name="privacy.erasure_log_sweep", time_limit=120, soft_time_limit=100, max_retries=0)
def erasure_log_sweep() -> dict[str, int]:
    """Append to the erasure log (outside the database) every committed erasure's entry still owed: each row
    whose seal verifies and whose subject the database shows erased (any other is refused and logged)."""
    from lab.customer_data.erasure_log import erasure_log_sweep as sweep

    return sweep()
