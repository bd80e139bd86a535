"""Whether the money of an erasure's orders is settled: the payment statuses that keep an order's data
(UNSETTLED_PAYMENTS), and the read at Stripe, before the erasure takes any lock, of the unpaid orders'
PaymentIntents for a payment the lab has not recorded yet (`_paid_at_stripe`). Used by
lab/customer_data/erasure_refusals.py and lab/customer_data/erasure.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

import stripe
from django.conf import settings

from lab.customer_data.errors import CustomerDataError
from lab.lib.errors import Unavailable, UpstreamError
from lab.orders.models import Order
from lab.orders.payment_client import ONE_TRY, stripe_client
from lab.orders.payments import UNPAID_PAYMENT_STATUSES
from lab.orders.states import OrderStatus

logger = logging.getLogger(__name__)


# Money still moving on an order: its data is kept until it settles. Disputed: the order's address, carrier
# and tracking number are the evidence Stripe asks for to contest the chargeback (the privacy policy keeps
# data that protects the lab's rights); charge.dispute.closed settles it
# (lab/orders/stripe_dispute_events.py).
# Refund pending: a refund that fails needs a person to reach the customer, by the e-mail the erasure wipes.
UNSETTLED_PAYMENTS: dict[str, str] = {
    Order.PaymentStatus.DISPUTED: "its payment is disputed with your bank, until the dispute is closed",
    Order.PaymentStatus.REFUND_PENDING: "a refund to you is still being made",
}


# What a PaymentIntent's status at Stripe says of the customer's money: taken (succeeded), on its way
# (processing: a bank debit, a delayed method), or authorised and waiting to be captured.
MONEY_AT_STRIPE = frozenset({"succeeded", "processing", "requires_capture"})
PAID_AT_STRIPE_REASON = "your payment for it has reached us and is still being recorded"


def _payment_unread(order: Order) -> bool:
    """Whether the order's money may be at Stripe while the lab does not know it yet: awaiting payment (or
    cancelled with its intent's cancel still owed) with an intent, and no payment recorded. The webhook that
    records a payment comes after it, seconds or (Stripe retrying a failing endpoint) hours later."""
    return (
        bool(order.payment_intent_id)
        and order.payment_status in UNPAID_PAYMENT_STATUSES
        and (order.status == OrderStatus.AWAITING_PAYMENT or order.payment_intent_cancel_due)
    )


# The reads of an erasure's unpaid orders at Stripe go this many at a time, all within one
# STRIPE_TIMEOUT_SECONDS (`_paid_at_stripe`). The SDK's HTTP client keeps one session per thread.
PAYMENT_READ_THREADS = 8


def _paid_at_stripe(orders: Iterable[Order]) -> frozenset[str]:
    """The refs of the orders (not yet anonymised) whose PaymentIntent Stripe says was paid though the lab has
    not recorded it (`_payment_unread`). Read before the erasure takes any lock, one try per intent, up to
    PAYMENT_READ_THREADS at a time, and all within one STRIPE_TIMEOUT_SECONDS for the whole check: 503
    `erasure_payment_check_unavailable`, naming the orders not read, when Stripe cannot tell of one (an
    error, or no answer by then). Reads still under way then are not waited for; each ends by its own
    STRIPE_TIMEOUT_SECONDS, and nothing is erased. Before, the intents were read one after another, each
    up to STRIPE_TIMEOUT_SECONDS: a customer with many unpaid orders, or a slow Stripe, took the answer
    past gunicorn's 60 s, a 502 with nothing erased, on every retry
    (`test_an_erasure_reads_its_unpaid_orders_at_stripe_within_one_stripe_timeout`).
    Before that, the erasure cancelled such an order on its stale local status, the intent's cancel found
    it succeeded and decided a refund for an account with nobody left to reach."""
    unread = [order for order in orders if not order.is_anonymized and _payment_unread(order)]
    if not unread:
        return frozenset()
    try:
        client = stripe_client()
    except UpstreamError as error:
        raise _payment_unchecked(unread, error) from error
    pool = ThreadPoolExecutor(
        max_workers=min(PAYMENT_READ_THREADS, len(unread)), thread_name_prefix="erasure-stripe"
    )
    reads = {
        pool.submit(client.v1.payment_intents.retrieve, order.payment_intent_id, options=ONE_TRY): order
        for order in unread
    }
    paid: set[str] = set()
    try:
        for read in as_completed(reads, timeout=float(settings.STRIPE_TIMEOUT_SECONDS)):
            order = reads[read]
            try:
                intent = read.result()
            except stripe.InvalidRequestError as error:
                if error.http_status == 404:
                    continue  # no such intent: no money can have moved through it
                raise _payment_unchecked(_not_read(reads, failed=order), error) from error
            except (stripe.StripeError, UpstreamError) as error:
                raise _payment_unchecked(_not_read(reads, failed=order), error) from error
            if str(intent.status) in MONEY_AT_STRIPE:
                paid.add(order.ref)
    except TimeoutError as error:
        raise _payment_unchecked(_not_read(reads), error) from error
    finally:
        # Reads not begun are dropped; one under way is not waited for: it ends by its own timeout.
        pool.shutdown(wait=False, cancel_futures=True)
    return frozenset(paid)


def _not_read(reads: dict[Future[Any], Order], *, failed: Order | None = None) -> list[Order]:
    """The orders whose intent Stripe has not answered for (yet), and the one whose read failed."""
    return [order for read, order in reads.items() if order is failed or not read.done()]


def _payment_unchecked(orders: list[Order], error: Exception) -> Unavailable:
    refs = sorted(order.ref for order in orders)
    logger.warning(
        "erasure: payment not read at stripe orders=%s error=%s", ",".join(refs), type(error).__name__
    )
    return Unavailable(
        CustomerDataError.ERASURE_PAYMENT_CHECK_UNAVAILABLE,
        "Your data cannot be erased right now: we could not check whether your payment for "
        f"{'order' if len(refs) == 1 else 'orders'} {', '.join(refs)} has reached us. Nothing was erased; "
        "please try again in a few minutes.",
        orders=refs,
    )
