"""A webhook URL in any script reaches its receiver, and no attempt can end without being logged.

Before: DRF's URLField took "https://host/hooks/ü", the SSRF guard checked only its host, and at delivery
http.client raised UnicodeEncodeError writing the request line. Nobody caught it (it is no OSError), so no
attempt was logged, the give-up (judged when an attempt is logged) never came, and the sweep sent the
delivery again every round, for ever.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from lab.notify.delivery import webhook_deliver
from lab.notify.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from lab.notify.selectors import webhook_deliveries_due
from lab.notify.webhooks import webhook_endpoint_create, webhook_event_emit
from tests.builders import new_customer, order_for

pytestmark = pytest.mark.django_db

ALL_EVENTS = ["order.status_changed", "order.shipped", "item.reprinted"]
# A path and query as a customer types them, and as a browser sends them.
TYPED = "/fotos-ü?für=Zoë&größe=10x15"
SENT = "/fotos-%C3%BC?f%C3%BCr=Zo%C3%AB&gr%C3%B6%C3%9Fe=10x15"


def test_a_url_in_any_script_is_stored_percent_encoded_and_its_receiver_gets_the_event(
    api, local_webhooks, receiver
):
    # given a customer who registers their endpoint with a path and query in German
    customer = new_customer()
    api.force_authenticate(customer)
    registered = api.post(
        "/api/v1/webhook-endpoints",
        {"url": receiver.url + TYPED, "event_types": ["item.reprinted"]},
        format="json",
    )

    # when an event for their order is delivered
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    webhook_deliver(delivery_id=str(WebhookDelivery.objects.get().pk))

    # then the URL is stored and shown as it is sent, and the receiver got the event at that path
    encoded = receiver.url + SENT
    assert registered.status_code == 201, registered.json()
    assert (registered.json()["url"], WebhookEndpoint.objects.get().url) == (encoded, encoded)
    assert [request.path for request in receiver.requests] == ["/hooks/lab" + SENT]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("succeeded", 1, 200)


def test_an_endpoint_stored_before_urls_were_encoded_is_still_reached(local_webhooks, receiver):
    # given an endpoint whose URL was stored as typed, as registration stored it before
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=receiver.url + TYPED)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})

    # when its delivery is attempted
    webhook_deliver(delivery_id=str(WebhookDelivery.objects.get().pk))

    # then the request line carries the encoded path, and the delivery is done
    assert [request.path for request in receiver.requests] == ["/hooks/lab" + SENT]
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_a_post_that_raises_what_nobody_foresaw_is_a_failed_attempt_and_the_delivery_gives_up(
    local_webhooks, receiver, caplog
):
    # given a delivery whose POST http.client refuses to write: its event's type was changed in the database
    # alone, to a value with a line break (http.client raises ValueError for such a header, an error that
    # neither the SSRF guard nor the delivery foresaw)
    customer = new_customer()
    webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    WebhookEvent.objects.update(event_type="item.reprinted\r\nX-Injected: 1")
    delivery = WebhookDelivery.objects.get()

    # when it is attempted
    webhook_deliver(delivery_id=str(delivery.pk))

    # then the attempt is logged as failed and the next one scheduled, as for an unreachable endpoint
    first = WebhookAttempt.objects.get()
    assert (first.number, first.status_code, first.error_code, first.is_success) == (
        1,
        None,
        "delivery_error",
        False,
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_error_code) == (
        "pending",
        1,
        "delivery_error",
    )
    assert delivery.next_attempt_at == first.attempted_at + timedelta(seconds=30)
    # and the log line names the delivery and the error's type, not the header it could not write
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert warnings == [f"webhook attempt raised delivery={delivery.pk} error=ValueError"]
    assert "X-Injected" not in caplog.text

    # when its retry window has nearly closed and it is attempted again
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=now, give_up_at=now + timedelta(seconds=10)
    )
    webhook_deliver(delivery_id=str(delivery.pk))

    # then it gives up, and no sweep sends it again
    ended = WebhookDelivery.objects.get(pk=delivery.pk)
    assert (ended.status, ended.attempt_count, ended.next_attempt_at) == ("failed", 2, None)
    assert list(ended.attempts.values_list("error_code", flat=True)) == ["delivery_error"] * 2
    assert webhook_deliveries_due(due_before=now + timedelta(days=2)) == []
    assert receiver.requests == []
