"""Thin tasks: ids in, one service call, a stable name, a queue and a time limit each."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

# Imported for their side effect: they register the audit.*, notify.* and privacy.* tasks.
import workers.audit_tasks
import workers.notify_tasks
import workers.privacy_tasks  # noqa: F401
from lab.celery import AUDIT_CHECKPOINT_TICKS
from lab.lib.errors import UpstreamError
from workers.app import app


@app.task(name="intake.asset_fetch", time_limit=120, soft_time_limit=100, max_retries=0)
def asset_fetch(*, asset_id: str) -> None:
    from lab.orders.photos import asset_fetch as fetch

    fetch(asset_id=asset_id)


@app.task(name="intake.asset_fetches_sweep", time_limit=60, max_retries=0)
def asset_fetches_sweep() -> None:
    from lab.orders.photos import asset_fetches_sweep as sweep

    sweep()


@app.task(
    name="payments.refund_issue",
    time_limit=60,
    acks_late=True,  # idempotent: one Stripe idempotency key per order refund, status moves once
    autoretry_for=(UpstreamError,),
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=8,
)
def refund_issue(*, order_id: int) -> None:
    from lab.orders.payment_refunds import refund_issue as issue

    issue(order_id=order_id)


# Beat's payments sweep under its first name (lab/celery.py): decided refunds, and owed intent cancels.
@app.task(name="payments.refunds_reconcile", time_limit=120, max_retries=0)
def refunds_reconcile() -> None:
    from lab.orders.payments import payments_reconcile as reconcile

    reconcile()


@app.task(
    name="payments.payment_intent_cancel",
    time_limit=60,
    acks_late=True,  # idempotent: it acts only while the order's cancel is owed, and Stripe's cancel is final
    autoretry_for=(UpstreamError,),
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=5,
)
def payment_intent_cancel(*, order_id: int) -> None:
    from lab.orders.payments import payment_intent_cancel as cancel

    cancel(order_id=order_id)


# --- Production -----------------------------------------------------------------------------------


# acks_late: the release locks the order and does nothing when it was released already, so a redelivery
# after a worker died mid-release is safe; the reconciler releases any paid order whose message was lost.
@app.task(
    name="production.order_release",
    time_limit=120,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=0,
)
def order_release(*, order_id: int) -> None:
    from lab.production.routing import order_release as release

    release(order_id=order_id)


# acks_late: these two claim their row first, so a redelivery after a worker died is safe and needed.
@app.task(
    name="production.print_job_rasterize",
    time_limit=300,
    soft_time_limit=280,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=0,
)
def print_job_rasterize(*, job_id: int) -> str:
    from lab.production.jobs import worker_name
    from lab.production.rasterizing import print_job_rasterize as rasterize

    # The outcome is not stored (no results); workers/observability.py counts it for raster throughput.
    return rasterize(job_id=job_id, worker=worker_name())


@app.task(
    name="production.print_job_submit",
    time_limit=120,
    soft_time_limit=100,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=0,
)
def print_job_submit(*, job_id: int) -> None:
    from lab.production.jobs import worker_name
    from lab.production.submission import print_job_submit as submit

    # Transient printer errors are retried by the service itself (job back to ready, re-enqueued with
    # backoff), so the schedule survives worker restarts and shows on the board.
    submit(job_id=job_id, worker=worker_name())


# A stalled cupsd (takes connections, answers nothing) holds a libcups call for about 60 s before libcups
# gives up (printers/cups_ipp.py `_NO_ANSWER`); a round asks each server at most once, the cancels it
# settles included (lab/production/silence.py). 180 s: that one minute, plus two for the rest of the round
# (the other servers' and hot folders' calls, the database). At 60 s, the length of that one call, the round
# was killed while it waited, and what came after it (the cancels at the printers) never ran.
@app.task(name="production.printer_poll", time_limit=180, max_retries=0)
def printer_poll() -> None:
    from lab.production.cancellation import printer_cancels_settle
    from lab.production.silence import SilentServers
    from lab.production.tracking import printer_poll as poll

    silent = SilentServers()  # one round: a server the poll found silent is not asked for its cancels
    poll(silent=silent)
    printer_cancels_settle(silent=silent)


# As the poll: a sweep asks each server at most once for its expired submit claims (libcups' minute when
# stalled), after every step that asks no printer; 180 s is that minute plus two for the rest.
@app.task(name="production.reconcile", time_limit=180, max_retries=0)
def production_reconcile() -> None:
    from lab.production.reconcile import production_reconcile as reconcile

    reconcile()


@app.task(name="production.printer_documents_discard", time_limit=300, max_retries=0)
def printer_documents_discard() -> None:
    from lab.production.spool import printer_documents_discard as discard

    discard()


@app.task(name="production.alerts_check", time_limit=120, max_retries=0)
def alerts_check() -> None:
    from lab.production.alerts import alerts_check as check

    check()


# --- Packing ---------------------------------------------------------------------------------------


@app.task(name="packing.slip_render", time_limit=60, max_retries=3, default_retry_delay=10)
def slip_render(*, order_id: int) -> None:
    from lab.packing.services import packing_slip_render

    packing_slip_render(order_id=order_id)


# --- Audit -----------------------------------------------------------------------------------------


# Above DATABASE_IDLE_IN_TRANSACTION_SECONDS (60 s): settling waits for every lane, also one a frozen writer
# holds until the database cuts it off, and the walk comes after. Killed at 60 s, that run signed nothing.
@app.task(name="audit.checkpoint", time_limit=150, soft_time_limit=130, max_retries=0)
def audit_checkpoint() -> None:
    """Sent every tick (lab.celery.AUDIT_CHECKPOINT_TICKS an interval); signs only when the last checkpoint
    is an interval less half a tick old: a lost send or a failed run costs a tick, not an interval.

    Only on the signer's worker (LAB_AUDIT_SIGNER): elsewhere the witness is not this host's to write, and a
    send to another queue (anyone who can publish to the broker) made the worker there refuse, and mail the
    auditors a false "checkpoint refused" at will."""
    import logging

    from lab.audit.signer import checkpoint_write

    if not settings.LAB_AUDIT_SIGNER:
        logging.getLogger(__name__).info("audit checkpoint not signed: this worker is not the signer")
        return

    interval = settings.AUDIT_CHECKPOINT_SECONDS
    due_after = timedelta(seconds=interval - interval / AUDIT_CHECKPOINT_TICKS / 2)
    checkpoint_write(reason="schedule", due_after=due_after)
