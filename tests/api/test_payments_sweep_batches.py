"""Beat's payments sweep does a bounded batch a run: owed intent cancels first, then the pending refunds
touched longest ago, so it ends within its time limit however many refunds are stuck, and the work rotates."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from lab.orders import payment_refunds
from lab.orders.cancellation import order_cancel
from lab.orders.models import Order, OrderEvent
from lab.orders.states import OrderStatus
from tests.builders import UserFactory, order_for, order_move
from tests.support.stripe_proxy import StripeProxy
from tests.support.stripe_server import LocalStripe
from tests.support.stripe_webhooks import order_placed
from workers import tasks

pytestmark = pytest.mark.django_db


class RequestLog(StripeProxy):
    """Forwards every request to localstripe, and keeps (method, path) of each, in order."""

    def __init__(self, *, upstream: str) -> None:
        super().__init__(upstream=upstream)
        self.requests: list[tuple[str, str]] = []

    def forwarded(self, method: str, path: str, headers: dict[str, str], status: int) -> None:
        self.requests.append((method, path))

    def refunds_asked(self) -> list[str]:
        """The PaymentIntent of each refunds list, in order."""
        return [
            path.split("payment_intent=")[1].split("&")[0]
            for method, path in self.requests
            if method == "GET" and path.startswith("/v1/refunds?")
        ]


@pytest.fixture
def stripe_log(settings, localstripe: LocalStripe) -> Iterator[RequestLog]:
    proxy = RequestLog(upstream=localstripe.url).start()
    settings.STRIPE_API_BASE = proxy.url
    yield proxy
    proxy.stop()


def refund_pending(intent: str) -> Order:
    """A cancelled order whose refund is decided and not yet confirmed (its intent unknown to localstripe,
    which answers its refunds 404: the sweep's call is made, and fails, like one Stripe did not answer)."""
    return order_move(
        order_for(UserFactory.create()),
        OrderStatus.CANCELLED,
        payment_intent_id=intent,
        payment_status=Order.PaymentStatus.REFUND_PENDING,
    )


def owed_intent_cancel(api, django_capture_on_commit_callbacks) -> Order:
    """An unpaid order cancelled by its customer, whose after-commit cancel of the intent never ran."""
    order = order_placed(api)
    with django_capture_on_commit_callbacks(execute=False):
        order_cancel(order=order, actor=order.customer, actor_kind="customer")
    order.refresh_from_db()
    assert order.payment_intent_cancel_due is True
    return order


def test_one_sweep_settles_the_owed_intent_cancels_first_and_asks_about_one_batch_of_refunds(
    api, stripe_log, monkeypatch, django_capture_on_commit_callbacks
):
    # given more pending refunds than one batch, and an unpaid order's intent owed a cancel
    monkeypatch.setattr(payment_refunds, "REFUND_BATCH", 3)
    intents = [f"pi_sweep_{number}" for number in range(7)]
    for intent in intents:
        refund_pending(intent)
    owed = owed_intent_cancel(api, django_capture_on_commit_callbacks)
    stripe_log.requests.clear()

    # when beat's payments sweep runs once
    tasks.refunds_reconcile()

    # then the owed cancel was asked for first, and settled, and Stripe was asked about one batch of refunds,
    # the oldest (before, every pending refund was asked about, after them: with enough of them the task hit
    # its time limit every run, and the owed cancels were never reached)
    assert stripe_log.requests[0] == ("POST", f"/v1/payment_intents/{owed.payment_intent_id}/cancel")
    owed.refresh_from_db()
    assert owed.payment_intent_cancel_due is False
    assert stripe_log.refunds_asked() == intents[:3]

    # when it runs again, twice, then the batches rotate through the rest, the first ones again last
    stripe_log.requests.clear()
    tasks.refunds_reconcile()
    assert stripe_log.refunds_asked() == intents[3:6]
    stripe_log.requests.clear()
    tasks.refunds_reconcile()
    assert stripe_log.refunds_asked() == [intents[6], *intents[:2]]


def test_a_refund_left_to_a_person_is_asked_about_again_only_now_and_then(stripe_log):
    # given two refunds whose every attempt failed, left to a person: one asked about just now, one hours ago
    recent, old = refund_pending("pi_person_recent"), refund_pending("pi_person_old")
    for order in (recent, old):
        OrderEvent.objects.create(order=order, kind="refund_needs_person", note="3 refunds failed at Stripe")
    Order.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(hours=7))
    waiting = refund_pending("pi_waiting")

    # when the sweep runs
    payment_refunds.refunds_reconcile()

    # then Stripe is asked about the old one and the refund still in progress, not the one just asked about
    # (before, every run asked about every refund left to a person, for ever)
    assert stripe_log.refunds_asked() == [old.payment_intent_id, waiting.payment_intent_id]
