"""A webhook registration sent again with its Idempotency-Key (a retry after a 503, a double submit) makes one
endpoint, and the answer carries that endpoint's secret again; without a key each POST registers one."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import connection
from rest_framework.test import APIClient

from lab.lib.errors import Conflict
from lab.notify import webhooks
from lab.notify.delivery import webhook_deliver
from lab.notify.models import WebhookDelivery, WebhookEndpoint, WebhookEndpointIdempotencyKey
from lab.notify.services import notify_order_status_changed
from lab.notify.webhooks import MAX_ENDPOINTS_PER_CUSTOMER, webhook_endpoint_create
from tests.builders import new_customer, order_for, order_move

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhook-endpoints"


def _body(url: str, description: str = "ERP") -> dict[str, object]:
    return {"url": url, "event_types": ["order.status_changed"], "description": description}


@pytest.mark.django_db(transaction=True)
def test_a_registration_sent_twice_at_once_with_one_key_makes_one_endpoint(local_webhooks, receiver):
    # given a customer whose client sends one registration twice at once, with the same key
    customer = new_customer()
    both_in = threading.Barrier(2, timeout=10)
    answers: list[tuple[int, str, str]] = []

    def register() -> None:
        client = APIClient()
        client.force_authenticate(customer)
        both_in.wait()
        try:
            answer = client.post(
                ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1"
            )
            answers.append((answer.status_code, answer.json().get("id", ""), answer.json().get("secret", "")))
        finally:
            connection.close()

    # when both run
    threads = [threading.Thread(target=register) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then one endpoint, and both answers name it and carry its secret
    endpoint = WebhookEndpoint.objects.get(owner=customer)
    assert sorted(status for status, _, _ in answers) == [200, 201]
    assert {(endpoint_id, secret) for _, endpoint_id, secret in answers} == {
        (str(endpoint.pk), endpoint.secret)
    }
    # and an event is sent once, signed with that secret
    order = order_for(customer)
    order_move(order, "paid")
    notify_order_status_changed(order_id=order.pk, status="paid")
    for delivery_id in WebhookDelivery.objects.values_list("pk", flat=True):
        webhook_deliver(delivery_id=str(delivery_id))
    assert len(receiver.requests) == 1


def test_a_retry_with_the_key_gets_the_same_endpoint_and_its_secret(api, local_webhooks, receiver):
    # given a registration made with a key, whose answer the client lost
    customer = new_customer()
    api.force_authenticate(customer)
    first = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1")

    # when it sends the same body again with the key
    retry = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1")

    # then 200 with the same endpoint and secret, and nothing new registered
    assert (first.status_code, retry.status_code) == (201, 200), retry.json()
    assert retry.json() == first.json()
    assert WebhookEndpoint.objects.filter(owner=customer).count() == 1
    # while another customer's same key, and a POST without a key, register endpoints of their own
    other = APIClient()
    other.force_authenticate(new_customer())
    theirs = other.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1")
    unkeyed = api.post(ENDPOINTS, _body(receiver.url), format="json")
    assert (theirs.status_code, unkeyed.status_code) == (201, 201)
    assert len({first.json()["secret"], theirs.json()["secret"], unkeyed.json()["secret"]}) == 3
    assert WebhookEndpoint.objects.filter(owner=customer).count() == 2


def test_the_key_with_another_body_is_refused_and_changes_nothing(api, local_webhooks, receiver):
    # given a registration made with a key
    customer = new_customer()
    api.force_authenticate(customer)
    first = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1")

    # when the key is sent with another body
    reused = api.post(
        ENDPOINTS, _body(receiver.url, description="Shop"), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1"
    )

    # then 409 idempotency_key_reused, without a secret, and the endpoint is as it was
    assert first.status_code == 201
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_key_reused"
    assert "whsec_" not in reused.content.decode()
    endpoint = WebhookEndpoint.objects.get(owner=customer)
    assert (str(endpoint.pk), endpoint.description) == (first.json()["id"], "ERP")


def test_a_key_that_is_not_1_to_200_printable_characters_is_refused(api, local_webhooks, receiver):
    customer = new_customer()
    api.force_authenticate(customer)

    too_long = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    unprintable = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp\x7f1")

    assert (too_long.status_code, unprintable.status_code) == (400, 400)
    assert too_long.json()["code"] == unprintable.json()["code"] == "idempotency_key_required"
    assert not WebhookEndpoint.objects.filter(owner=customer).exists()


def test_a_retry_at_the_endpoint_limit_gets_its_endpoint_not_a_409(api, local_webhooks, receiver):
    # given a customer whose keyed registration was their last allowed endpoint
    customer = new_customer()
    for _ in range(MAX_ENDPOINTS_PER_CUSTOMER - 1):
        webhook_endpoint_create(owner=customer, url=receiver.url, event_types=["order.shipped"])
    api.force_authenticate(customer)
    last = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1")

    # when its answer is lost and it is sent again
    retry = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1")

    # then the retry gets it back
    assert (last.status_code, retry.status_code) == (201, 200), retry.json()
    assert retry.json()["secret"] == last.json()["secret"]
    assert WebhookEndpoint.objects.filter(owner=customer).count() == MAX_ENDPOINTS_PER_CUSTOMER


def test_the_key_goes_with_its_endpoint(api, local_webhooks, receiver):
    # given an endpoint registered with a key, then deleted
    customer = new_customer()
    api.force_authenticate(customer)
    first = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1")
    deleted = api.delete(f"{ENDPOINTS}/{first.json()['id']}")

    # when the key is sent again
    again = api.post(ENDPOINTS, _body(receiver.url), format="json", HTTP_IDEMPOTENCY_KEY="erp-setup-1")

    # then the key went with the endpoint: a new one is registered, with a new secret
    assert (first.status_code, deleted.status_code, again.status_code) == (201, 204, 201)
    assert again.json()["secret"] != first.json()["secret"]
    assert list(WebhookEndpointIdempotencyKey.objects.values_list("endpoint_id", flat=True)) == [
        WebhookEndpoint.objects.get(owner=customer).pk
    ]


@pytest.mark.django_db(transaction=True)
def test_two_registrations_at_once_for_the_last_place_make_one_endpoint(local_webhooks, receiver):
    # given a customer one endpoint short of the limit, and two registrations (no key) that have both passed
    # the limit's first check before either takes the owner's lock (each waits for the other in the URL's
    # lookup, which comes between)
    customer = new_customer()
    for _ in range(MAX_ENDPOINTS_PER_CUSTOMER - 1):
        webhook_endpoint_create(owner=customer, url=receiver.url, event_types=["order.shipped"])
    both_looked_up = threading.Barrier(2, timeout=10)
    real_clean = webhooks.webhook_url_clean
    outcomes: list[str] = []

    def clean_after_the_other(*, url: str) -> str:
        both_looked_up.wait()
        return real_clean(url=url)

    def register() -> None:
        try:
            webhooks.webhook_endpoint_register(
                owner=customer, url=receiver.url, event_types=["order.shipped"]
            )
            outcomes.append("created")
        except Conflict as refused:
            outcomes.append(refused.code)
        finally:
            connection.close()

    # when both go on at once
    with mock.patch.object(webhooks, "webhook_url_clean", clean_after_the_other):
        threads = [threading.Thread(target=register) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    # then one gets the last place and the other is refused under the lock (checked again there): the limit
    # holds at exactly MAX_ENDPOINTS_PER_CUSTOMER
    assert sorted(outcomes) == ["created", "too_many_webhook_endpoints"]
    assert WebhookEndpoint.objects.filter(owner=customer).count() == MAX_ENDPOINTS_PER_CUSTOMER
