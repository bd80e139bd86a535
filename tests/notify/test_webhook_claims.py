"""Two workers and one webhook delivery: a claim is written and judged on the database's clock, and an attempt
is logged whoever holds the delivery by the time it is recorded.

Each test starts an attempt (worker A) and, while A's POST is at the receiver, runs a second worker (B) in
the receiver's thread with its own database session: what a worker on another host does meanwhile. The
tests are transactional, as B must see what A committed.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import F

from lab.notify.delivery import CLAIM_DURATION, webhook_deliver
from lab.notify.models import EventType, WebhookDelivery
from lab.notify.webhooks import webhook_endpoint_create, webhook_event_emit
from tests.builders import new_customer, order_for
from tests.support.clock import host_clock_off

pytestmark = pytest.mark.django_db(transaction=True)

# Longer than a claim (40 s), so a host this far ahead took over claims a worker still held.
AHEAD = CLAIM_DURATION + CLAIM_DURATION / 2


def _one_delivery(receiver) -> WebhookDelivery:
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=["item.reprinted"])
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    return WebhookDelivery.objects.get()


def _as_another_worker(errors: list[BaseException], attempt) -> None:
    """Run `attempt` as a worker with its own session; what it raised goes into `errors`."""
    try:
        attempt()
    except BaseException as error:  # the test thread reports it: the receiver's thread would swallow it
        errors.append(error)
    finally:
        connection.close()


def _attempts(delivery: WebhookDelivery) -> list[tuple[int, int | None, bool]]:
    return list(delivery.attempts.order_by("number").values_list("number", "status_code", "is_success"))


def test_a_worker_whose_clock_runs_ahead_takes_over_no_live_claim(local_webhooks, receiver, monkeypatch):
    # given a delivery whose POST worker A has just sent: its claim is live
    delivery = _one_delivery(receiver)
    errors: list[BaseException] = []

    def on_a_host_running_ahead() -> None:
        with host_clock_off(AHEAD, monkeypatch):
            webhook_deliver(delivery_id=str(delivery.pk))

    # when a duplicate message reaches worker B, on a host whose clock runs ahead by more than the claim,
    # while A's POST is at the receiver
    receiver.while_answering = lambda: _as_another_worker(errors, on_a_host_running_ahead)
    webhook_deliver(delivery_id=str(delivery.pk))

    # then B sent nothing: the receiver got the event once, and A's attempt is the only one
    assert errors == []
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.claimed_until) == ("succeeded", 1, None)
    assert _attempts(delivery) == [(1, 200, True)]


def test_attempts_recorded_after_a_takeover_are_both_in_the_log_and_nothing_raises(
    api, local_webhooks, receiver
):
    # given a delivery whose POST by worker A takes longer than A's claim
    delivery = _one_delivery(receiver)
    errors: list[BaseException] = []

    def take_over_the_run_out_claim() -> None:
        # A's claim has run out as the database sees it: its end moves back by a claim's length.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            claimed_until=F("claimed_until") - CLAIM_DURATION
        )
        webhook_deliver(delivery_id=str(delivery.pk))

    # when worker B takes the delivery over meanwhile, delivers it and records it, and then A's POST is
    # answered and A records its own
    receiver.while_answering = lambda: _as_another_worker(errors, take_over_the_run_out_claim)
    webhook_deliver(delivery_id=str(delivery.pk))

    # then both POSTs the receiver answered are in the customer's delivery log (B's first), and the delivery
    # is done; before, A's succeeded -> succeeded raised and rolled its log row back
    assert errors == []
    assert len(receiver.requests) == 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.claimed_until) == ("succeeded", 2, None)
    assert _attempts(delivery) == [(1, 200, True), (2, 200, True)]
    api.force_authenticate(delivery.endpoint.owner)
    log = api.get(f"/api/v1/webhook-endpoints/{delivery.endpoint_id}/deliveries").json()
    assert [(a["number"], a["status_code"]) for a in log["results"][0]["attempts"]] == [(1, 200), (2, 200)]


def test_a_late_success_ends_a_delivery_whose_takeover_failed(local_webhooks, receiver):
    # given a delivery whose POST by worker A takes longer than A's claim
    delivery = _one_delivery(receiver)
    errors: list[BaseException] = []

    def take_over_and_fail() -> None:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            claimed_until=F("claimed_until") - CLAIM_DURATION
        )
        receiver.answer_status = 500  # B's POST fails
        try:
            webhook_deliver(delivery_id=str(delivery.pk))
        finally:
            receiver.answer_status = 200  # and A's, still at the receiver, is then answered 200

    # when worker B takes the delivery over meanwhile, its POST is answered 500 and B records that (the
    # delivery due again after the backoff), and then A's POST is answered 200 and A records it
    receiver.while_answering = lambda: _as_another_worker(errors, take_over_and_fail)
    webhook_deliver(delivery_id=str(delivery.pk))

    # then the late success ends the delivery though A no longer held it: the event did arrive, and no
    # third POST is owed (nothing is due next)
    assert errors == []
    assert len(receiver.requests) == 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.claimed_until, delivery.next_attempt_at) == (
        "succeeded",
        2,
        None,
        None,
    )
    assert delivery.delivered_at is not None
    assert (delivery.last_status_code, delivery.last_error_code) == (200, "")
    assert _attempts(delivery) == [(1, 500, False), (2, 200, True)]
