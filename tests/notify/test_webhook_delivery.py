"""Webhook delivery to a real loopback receiver: signatures, sequences, backoff, give-up, redelivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from lab.lib.clock import database_now
from lab.notify.delivery import retry_delay, webhook_deliver
from lab.notify.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from lab.notify.selectors import webhook_deliveries_due
from lab.notify.services import notify_order_status_changed
from lab.notify.webhooks import webhook_endpoint_create, webhook_event_emit
from tests.builders import TO_PACKED, new_customer, order_for, order_move
from tests.support.clock import host_clock_off
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


ALL_EVENTS = ["order.status_changed", "order.shipped", "item.reprinted"]


def verify_signature(*, header: str, body: bytes, secret: str) -> int:
    """The receiver's side, written from the documented format only: returns the signed timestamp."""
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    return int(parts["t"])


def deliver_all() -> None:
    for delivery_id in WebhookDelivery.objects.order_by("created_at").values_list("pk", flat=True):
        webhook_deliver(delivery_id=str(delivery_id))


def test_a_status_change_reaches_the_receiver_signed(api, local_webhooks, receiver):
    customer = new_customer()
    api.force_authenticate(customer)
    secret = api.post(
        "/api/v1/webhook-endpoints", {"url": receiver.url, "event_types": ALL_EVENTS}, format="json"
    ).json()["secret"]
    order = order_for(customer)
    order_move(order, "paid")

    notify_order_status_changed(order_id=order.pk, status="paid")
    deliver_all()

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    event = WebhookEvent.objects.get()
    signed_at = verify_signature(header=request.headers["X-Lab-Signature"], body=request.body, secret=secret)
    assert abs(signed_at - time.time()) < 30
    assert request.path == "/hooks/lab"
    assert request.headers["X-Lab-Event-Id"] == str(event.pk)
    assert request.headers["Content-Type"] == "application/json"
    payload = json.loads(request.body)
    assert payload == {
        "id": str(event.pk),
        "type": "order.status_changed",
        "created": event.created_at.isoformat().replace("+00:00", "Z"),
        "sequence": 1,
        "data": {"order": order.ref, "status": "paid"},
    }
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("succeeded", 1, 200)
    attempt = WebhookAttempt.objects.get()
    assert (attempt.number, attempt.status_code, attempt.error_code, attempt.is_success) == (1, 200, "", True)


def test_a_forged_body_does_not_verify(local_webhooks, receiver):
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={"item": 1})

    deliver_all()

    request = receiver.requests[0]
    with pytest.raises(AssertionError):
        verify_signature(
            header=request.headers["X-Lab-Signature"],
            body=request.body.replace(b"1", b"2"),
            secret=endpoint.secret,
        )
    with pytest.raises(AssertionError):
        verify_signature(header=request.headers["X-Lab-Signature"], body=request.body, secret="whsec_other")


def test_a_worker_whose_clock_runs_behind_signs_with_the_database_s_time(
    local_webhooks, receiver, monkeypatch
):
    # given an event for an endpoint, delivered by a webhooks worker whose clock runs 10 minutes behind
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={"item": 1})
    with host_clock_off(timedelta(minutes=-10), monkeypatch):
        deliver_all()

    # then the signature's time is the database's, not 10 minutes old: a receiver's freshness check takes it
    request = receiver.requests[0]
    signed_at = verify_signature(
        header=request.headers["X-Lab-Signature"], body=request.body, secret=endpoint.secret
    )
    assert abs(signed_at - database_now().timestamp()) < 30
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_a_shipment_sends_status_and_shipped_events_to_subscribed_endpoints_only(local_webhooks, receiver):
    customer = new_customer()
    shipped_only = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=["order.shipped"])
    status_only = webhook_endpoint_create(
        owner=customer, url=receiver.url, event_types=["order.status_changed"]
    )
    paused = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    WebhookEndpoint.objects.filter(pk=paused.pk).update(is_active=False)
    webhook_endpoint_create(owner=new_customer(), url=receiver.url, event_types=ALL_EVENTS)
    order = order_for(customer)
    order_move(order, *TO_PACKED)
    order_move(
        order, "shipped", carrier="ups", tracking_number="1Z999AA10123456784", shipped_at=timezone.now()
    )

    notify_order_status_changed(order_id=order.pk, status="shipped")
    notify_order_status_changed(order_id=order.pk, status="shipped")  # a redelivered task emits nothing new
    deliver_all()

    routed = {
        (d.endpoint_id, d.event.event_type) for d in WebhookDelivery.objects.select_related("event").all()
    }
    assert routed == {(shipped_only.pk, "order.shipped"), (status_only.pk, "order.status_changed")}
    shipped = next(
        json.loads(r.body) for r in receiver.requests if r.headers["X-Lab-Event-Type"] == "order.shipped"
    )
    assert shipped["data"] == {
        "order": order.ref,
        "status": "shipped",
        "carrier": "ups",
        "tracking_number": "1Z999AA10123456784",
        "tracking_url": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
    }
    assert sorted(json.loads(r.body)["sequence"] for r in receiver.requests) == [1, 2]


def test_guest_orders_emit_nothing(local_webhooks, receiver):
    order = order_for(None, guest_email="guest@example.org")

    count = webhook_event_emit(order_id=order.pk, event_type=EventType.ORDER_STATUS_CHANGED, data={})

    assert count == 0
    assert WebhookEvent.objects.count() == 0


def test_sequence_numbers_increase_per_order(local_webhooks, receiver):
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    first, second = order_for(customer), order_for(customer)
    order_move(first, "paid")
    notify_order_status_changed(order_id=first.pk, status="paid")
    order_move(second, "paid")
    notify_order_status_changed(order_id=second.pk, status="paid")
    order_move(first, "in_production")
    notify_order_status_changed(order_id=first.pk, status="in_production")
    webhook_event_emit(order_id=first.pk, event_type=EventType.ITEM_REPRINTED, data={"item": 1})

    deliver_all()

    received = [json.loads(r.body) for r in receiver.requests]
    by_order: dict[str, list[tuple[int, str, str]]] = {}
    for payload in received:
        by_order.setdefault(payload["data"]["order"], []).append(
            (payload["sequence"], payload["type"], payload["data"]["status"])
        )
    assert by_order == {
        first.ref: [
            (1, "order.status_changed", "paid"),
            (2, "order.status_changed", "in_production"),
            (3, "item.reprinted", "in_production"),
        ],
        second.ref: [(1, "order.status_changed", "paid")],
    }


def test_a_failing_receiver_gets_retries_with_exponential_backoff(
    local_webhooks, receiver, django_capture_on_commit_callbacks
):
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    delivery = WebhookDelivery.objects.get()
    receiver.answer_status = 500

    with django_capture_on_commit_callbacks() as scheduled:
        webhook_deliver(delivery_id=str(delivery.pk))
    webhook_deliver(delivery_id=str(delivery.pk))  # not due yet: no second attempt
    first = WebhookAttempt.objects.get()
    delivery.refresh_from_db()

    assert len(receiver.requests) == 1
    assert (first.number, first.status_code, first.error_code, first.is_success) == (
        1,
        500,
        "endpoint_status",
        False,
    )
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at == first.attempted_at + timedelta(seconds=30)
    assert delivery.claimed_until is None
    assert len(scheduled) == 1
    assert scheduled[0].keywords["delivery_id"] == str(delivery.pk)
    assert 29 < scheduled[0].keywords["countdown"] <= 30

    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    webhook_deliver(delivery_id=str(delivery.pk))
    second = WebhookAttempt.objects.get(number=2)
    delivery.refresh_from_db()

    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["X-Lab-Event-Id"] == receiver.requests[1].headers["X-Lab-Event-Id"]
    assert delivery.next_attempt_at == second.attempted_at + timedelta(seconds=60)


def test_the_backoff_doubles_from_30_seconds_up_to_an_hour():
    delays = [retry_delay(attempt_number=n).total_seconds() for n in range(1, 11)]

    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert retry_delay(attempt_number=500) == timedelta(hours=1)


def test_delivery_gives_up_after_24_hours(local_webhooks, receiver):
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    delivery = WebhookDelivery.objects.get()
    receiver.answer_status = 503
    waited = timedelta(0)

    # Time passing is played by moving the delivery's future times back by each wait.
    while delivery.status == "pending":
        webhook_deliver(delivery_id=str(delivery.pk))
        delivery.refresh_from_db()
        if delivery.next_attempt_at is not None:
            wait = delivery.next_attempt_at - timezone.now()
            waited += wait
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                next_attempt_at=F("next_attempt_at") - wait, give_up_at=F("give_up_at") - wait
            )
            delivery.refresh_from_db()

    # 30 s, 1, 2, 4, 8, 16, 32 min, then hourly: 8 attempts in the first 3810 s, 22 more hourly ones.
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == ("failed", 30, None)
    assert len(receiver.requests) == 30
    assert timedelta(seconds=83000) < waited <= timedelta(seconds=83010)
    assert WebhookDelivery.objects.get().attempts.count() == 30


def test_an_unreachable_receiver_is_logged_as_a_failed_attempt(local_webhooks, receiver):
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=f"http://127.0.0.1:{free_port()}/closed")
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})

    deliver_all()

    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.error_code) == (None, "delivery_failed")
    assert WebhookDelivery.objects.get().status == "pending"


def test_the_ssrf_guard_runs_again_at_delivery_time(local_webhooks, receiver, settings):
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    settings.WEBHOOK_ALLOW_PRIVATE = False

    deliver_all()

    assert receiver.requests == []
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.error_code) == (None, "url_target_not_allowed")


def test_a_disabled_endpoint_ends_its_pending_deliveries_without_a_request(local_webhooks, receiver):
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)

    deliver_all()

    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_error_code) == ("failed", "endpoint_disabled")


def test_redelivery_sends_the_same_event_again_as_a_new_attempt(api, local_webhooks, receiver):
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={"item": 1})
    deliver_all()
    delivery = WebhookDelivery.objects.get()
    api.force_authenticate(customer)
    # a redelivery is taken 30 s after the last attempt at the soonest (the test below)
    WebhookAttempt.objects.filter(delivery=delivery).update(
        attempted_at=F("attempted_at") - timedelta(seconds=31)
    )

    response = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver")
    webhook_deliver(delivery_id=str(delivery.pk))

    assert response.status_code == 202
    assert (response.json()["status"], response.json()["attempt_count"]) == ("pending", 1)
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert receiver.requests[0].headers["X-Lab-Event-Id"] == receiver.requests[1].headers["X-Lab-Event-Id"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 2)
    log = api.get(f"/api/v1/webhook-endpoints/{delivery.endpoint_id}/deliveries").json()
    assert [a["number"] for a in log["results"][0]["attempts"]] == [1, 2]
    assert [a["status_code"] for a in log["results"][0]["attempts"]] == [200, 200]


def test_a_delivery_is_redelivered_on_request_at_most_every_thirty_seconds(api, local_webhooks, receiver):
    # given a delivery to an endpoint that keeps failing, attempted once just now
    receiver.answer_status = 500
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    deliver_all()
    delivery = WebhookDelivery.objects.get()
    api.force_authenticate(customer)

    # when its owner asks for it again and again (each attempt may hold a webhooks worker for 10 s)
    answers = [api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver") for _ in range(3)]
    deliver_all()

    # then none is attempted until 30 s after the last attempt, and the answer says when to ask
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(409, "redelivery_too_soon")] * 3
    assert 1 <= int(answers[0]["Retry-After"]) <= 30
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1
    assert len(receiver.requests) == 1
    WebhookAttempt.objects.filter(delivery=delivery).update(
        attempted_at=F("attempted_at") - timedelta(seconds=31)
    )
    assert api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver").status_code == 202


def test_a_delivery_already_waiting_to_be_sent_is_not_enqueued_again_on_request(
    api, local_webhooks, receiver, settings, django_capture_on_commit_callbacks
):
    # given a delivery attempted more than 30 s ago, and nothing in the webhooks queue
    from lab.lib.tasks import queue_depth
    from tests.support.celery_worker import queues_purge

    queues_purge(broker_url=settings.CELERY_BROKER_URL, queues=("webhooks",))
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    deliver_all()
    delivery = WebhookDelivery.objects.get()
    WebhookAttempt.objects.filter(delivery=delivery).update(
        attempted_at=F("attempted_at") - timedelta(seconds=31)
    )
    api.force_authenticate(customer)

    # when its owner asks for it twice before a worker takes it (no attempt logged, no claim taken yet)
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver")
        second = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver")

    # then the second is refused and the queue holds one message for it, not one more per request
    try:
        assert queue_depth("webhooks") == 1
        assert first.status_code == 202
        assert (second.status_code, second.json().get("code")) == (409, "delivery_already_queued")
    finally:
        queues_purge(broker_url=settings.CELERY_BROKER_URL, queues=("webhooks",))
    webhook_deliver(delivery_id=str(delivery.pk))
    assert len(receiver.requests) == 2


def test_redeliveries_are_throttled_per_customer(api, local_webhooks, receiver, settings):
    # given a customer with four deliveries, each last attempted more than 30 s ago
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "customer_redeliveries": "3/hour",
        },
    }
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    order = order_for(customer)
    for _ in range(4):
        webhook_event_emit(order_id=order.pk, event_type=EventType.ITEM_REPRINTED, data={})
    deliver_all()
    WebhookAttempt.objects.update(attempted_at=F("attempted_at") - timedelta(seconds=31))
    deliveries = list(WebhookDelivery.objects.order_by("created_at").values_list("pk", flat=True))
    api.force_authenticate(customer)

    # when the customer asks for each of them again (every one may hold a webhooks worker for 10 s)
    answers = [api.post(f"/api/v1/webhook-deliveries/{pk}/redeliver") for pk in deliveries]

    # then the one past the customer's rate is refused
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[3].json()["code"] == "throttled"
    assert int(answers[3]["Retry-After"]) > 0
    assert WebhookDelivery.objects.get(pk=deliveries[3]).status == "succeeded"


def test_webhook_deliveries_run_on_their_own_queue_not_the_default_one():
    # An endpoint decides how long an attempt waits: on `default` it held releases, polls and e-mail.
    from workers import app

    app.loader.import_default_modules()

    assert app.amqp.router.route({}, "notify.webhook_deliver")["queue"].name == "webhooks"
    assert app.amqp.router.route({}, "notify.webhook_deliveries_sweep")["queue"].name == "default"


def test_another_customer_can_neither_read_nor_redeliver(api, local_webhooks, receiver):
    owner = new_customer()
    endpoint = webhook_endpoint_create(owner=owner, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(owner).pk, event_type=EventType.ITEM_REPRINTED, data={})
    deliver_all()
    delivery = WebhookDelivery.objects.get()
    api.force_authenticate(new_customer())

    log = api.get(f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries")
    redeliver = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver")

    assert (log.status_code, log.json()["code"]) == (404, "webhook_endpoint_not_found")
    assert (redeliver.status_code, redeliver.json()["code"]) == (404, "webhook_delivery_not_found")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == ("succeeded", 1, None)
    assert len(receiver.requests) == 1


def test_the_sweeper_finds_overdue_deliveries_nobody_holds(local_webhooks, receiver):
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    order = order_for(customer)
    for _ in range(3):
        webhook_event_emit(order_id=order.pk, event_type=EventType.ITEM_REPRINTED, data={})
    overdue, held, done = WebhookDelivery.objects.order_by("created_at")
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=overdue.pk).update(next_attempt_at=now - timedelta(minutes=5))
    WebhookDelivery.objects.filter(pk=held.pk).update(
        next_attempt_at=now - timedelta(minutes=5), claimed_until=now + timedelta(seconds=30)
    )
    WebhookDelivery.objects.filter(pk=done.pk).update(status="succeeded", next_attempt_at=None)

    assert webhook_deliveries_due(due_before=now - timedelta(minutes=2)) == [str(overdue.pk)]


def test_the_sweeper_sends_again_only_what_the_webhooks_queue_lacks(local_webhooks, receiver, settings):
    # given three overdue deliveries and no webhooks worker taking the queue (a host upgraded without it)
    from lab.lib.tasks import queue_depth
    from tests.support.celery_worker import queues_purge
    from workers.notify_tasks import webhook_deliveries_sweep

    queues_purge(broker_url=settings.CELERY_BROKER_URL, queues=("webhooks",))
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    order = order_for(customer)
    for _ in range(3):
        webhook_event_emit(order_id=order.pk, event_type=EventType.ITEM_REPRINTED, data={})
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))

    # when the sweep runs minute after minute
    sent = [webhook_deliveries_sweep() for _ in range(3)]

    # then the queue holds one message per delivery, not one more per sweep (500 a minute piled up in Redis)
    assert sent == [3, 0, 0]
    assert queue_depth("webhooks") == 3
    queues_purge(broker_url=settings.CELERY_BROKER_URL, queues=("webhooks",))


def test_a_reprint_reaches_the_endpoints_subscribed_to_item_reprinted_once(local_webhooks, receiver):
    """`item.reprinted` was documented and subscribable, and never sent."""
    from lab.production import reprints
    from lab.production.models import PrintJob
    from tests.builders import hotfolder_printer, person, ready_to_pack_order

    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    assert order.customer is not None
    webhook_endpoint_create(owner=order.customer, url=receiver.url, event_types=["item.reprinted"])
    original = PrintJob.objects.get(order=order)

    for _ in range(2):  # the same form sent twice makes one reprint, and one event
        reprints.job_reprint(
            job_id=original.pk, actor=person("technician"), reason="damaged", copies=1, request_key="k1"
        )
    deliver_all()

    assert [r.headers["X-Lab-Event-Type"] for r in receiver.requests] == ["item.reprinted"]
    payload = json.loads(receiver.requests[0].body)
    assert payload["data"] == {
        "order": order.ref,
        "status": "in_production",
        "item": 1,
        "copies": 1,
        "reason": "damaged",
    }
