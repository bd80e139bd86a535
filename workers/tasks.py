"""Thin tasks: ids in, one service call, a stable name, a queue and a time limit each."""

from __future__ import annotations

from workers.app import app


@app.task(name="intake.asset_fetch", time_limit=120, soft_time_limit=100, max_retries=0)
def asset_fetch(*, asset_id: str) -> None:
    from lab.orders.services import asset_fetch as fetch

    fetch(asset_id=asset_id)


@app.task(name="payments.payment_intent_cancel", time_limit=60, max_retries=3)
def payment_intent_cancel(*, order_id: int) -> None:
    from lab.orders.payments import payment_intent_cancel as cancel

    cancel(order_id=order_id)
