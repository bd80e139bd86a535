"""The Stripe client: one per process and configuration, which keeps its connection to Stripe open, and the
request options a caller passes with a call (ONE_TRY)."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import stripe
from django.conf import settings

from lab.lib.errors import UpstreamError
from lab.orders.errors import OrderError

if TYPE_CHECKING:
    from stripe import RequestOptions


def stripe_client() -> stripe.StripeClient:
    """This process's client for the configured account and API base.

    One per process, not one per call: its HTTP session (one per thread, in the SDK) keeps the connection to
    Stripe open, so a PaymentIntent pays the TCP and TLS handshake once per web process instead of once per
    order. A kept connection that Stripe closed is replaced by the pool, and a call that fails on it is
    retried by the SDK with the same idempotency key. The process id is part of the key: a forked worker
    never writes to a socket its parent opened.
    """
    if not settings.STRIPE_SECRET_KEY:
        raise UpstreamError(OrderError.PAYMENTS_NOT_CONFIGURED, "Payments are not configured on this lab.")
    return _stripe_client_for(
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS, os.getpid()
    )


@functools.lru_cache(maxsize=4)
def _stripe_client_for(
    secret_key: str, api_base: str, timeout_seconds: float, process_id: int
) -> stripe.StripeClient:
    base = {"api": api_base} if api_base else None
    return stripe.StripeClient(
        secret_key,
        base_addresses=base,  # type: ignore[arg-type]
        max_network_retries=2,
        # The SDK's default waits 80 s for an answer, three times: a Stripe that accepts and stalls would
        # outlast the web worker, which gunicorn then kills, and the customer gets no answer at all.
        http_client=stripe.RequestsClient(timeout=timeout_seconds),
    )


# One try per call, no SDK retries: the webhook handler's read is a nudge whose fallback is the event's own
# word, so a stalled Stripe costs it at most two waits of STRIPE_TIMEOUT_SECONDS (the list, the intent), not
# six (three tries each).
ONE_TRY: RequestOptions = {"max_network_retries": 0}
