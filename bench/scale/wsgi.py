"""gunicorn's application for the scale bench: `lab.wsgi` itself, with the one call order intake makes to
Stripe (create the order's PaymentIntent) answered in this process instead of over the network.

Everything else is the production path: the bench's customers upload photos and create orders over HTTP,
and pay them with a `payment_intent.succeeded` event the bench signs with `STRIPE_WEBHOOK_SECRET` and posts
to `/api/v1/webhooks/stripe`, which verifies it and calls `lab.orders.stripe_events.webhook_event_handle`, as
for Stripe's own. 10,000 orders through localstripe would measure localstripe (bench/intake/README.md: its
cost per PaymentIntent grows with every one it holds), not the lab.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

from lab.wsgi import application

# isort: split
# After lab.wsgi, which sets Django up: the models behind payments need it.
from lab.orders import payments


class _PaymentIntents:
    def create(self, *, params: dict[str, Any], options: dict[str, Any]) -> SimpleNamespace:
        # One id per idempotency key (order-<ref>-payment-intent), as Stripe returns the same one on a retry.
        digest = hashlib.sha256(str(options["idempotency_key"]).encode()).hexdigest()[:24]
        return SimpleNamespace(id=f"pi_bench_{digest}", client_secret=f"pi_bench_{digest}_secret_bench")


class _BenchStripe:
    v1 = SimpleNamespace(payment_intents=_PaymentIntents())


def _bench_stripe_client() -> Any:
    return _BenchStripe()


payments.stripe_client = _bench_stripe_client

__all__ = ["application"]
