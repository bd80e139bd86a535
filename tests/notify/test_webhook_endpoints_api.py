"""Webhook endpoint API: registration with the SSRF guard, the secret shown once, own endpoints only."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from lab.accounts.models import SecurityEvent
from lab.notify.delivery import RETRY_WINDOW, AttemptOutcome, _record, webhook_deliver
from lab.notify.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from lab.notify.services import notify_order_status_changed
from lab.notify.webhooks import MAX_ENDPOINTS_PER_CUSTOMER, webhook_endpoint_create, webhook_event_emit
from tests.builders import PASSWORD, TO_PACKED, new_customer, order_for, order_move
from tests.support.resolver import HANGING_HOST

pytestmark = pytest.mark.django_db


ALL_EVENTS = ["order.status_changed", "order.shipped", "item.reprinted"]


def test_registration_returns_the_secret_once(api, local_webhooks, receiver):
    customer = new_customer()
    api.force_authenticate(customer)

    created = api.post(
        "/api/v1/webhook-endpoints",
        {"url": receiver.url, "event_types": ["order.shipped", "order.status_changed"], "description": "ERP"},
        format="json",
    )
    listed = api.get("/api/v1/webhook-endpoints")
    detail = api.get(f"/api/v1/webhook-endpoints/{created.json()['id']}")

    assert created.status_code == 201, created.json()
    body = created.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["secret"] == endpoint.secret
    assert body["secret"].startswith("whsec_") and len(body["secret"]) == 6 + 43
    assert (body["url"], body["event_types"], body["is_active"]) == (
        receiver.url,
        ["order.status_changed", "order.shipped"],
        True,
    )
    assert endpoint.owner == customer
    assert listed.json()["count"] == 1
    assert "secret" not in listed.json()["results"][0]
    assert detail.status_code == 200
    assert "secret" not in detail.json()


def test_two_endpoints_get_different_secrets(local_webhooks, receiver):
    customer = new_customer()

    first = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    second = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)

    assert first.secret != second.secret


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://127.0.0.1/hooks", "url_target_not_allowed"),
        ("https://localhost:8443/hooks", "url_target_not_allowed"),
        ("https://[::1]/hooks", "url_target_not_allowed"),
        ("https://10.0.0.8/hooks", "url_target_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "url_target_not_allowed"),
        # IPv6 forms that carry a private IPv4 address, each called global by Python: were let through
        pytest.param("https://[64:ff9b::a9fe:a9fe]/hooks", "url_target_not_allowed", id="nat64-metadata"),
        pytest.param("https://[64:ff9b::a00:8]/hooks", "url_target_not_allowed", id="nat64-10.0.0.8"),
        pytest.param("https://[2002:a9fe:a9fe::1]/hooks", "url_target_not_allowed", id="6to4-metadata"),
        pytest.param("https://[::127.0.0.1]/hooks", "url_target_not_allowed", id="ipv4-compatible-loopback"),
        pytest.param("https://[::ffff:10.0.0.8]/hooks", "url_target_not_allowed", id="ipv4-mapped"),
        # IPv6 outside global unicast (2000::/3) that Python calls global: was let through
        pytest.param("https://[::ffff:0:a9fe:a9fe]/hooks", "url_target_not_allowed", id="siit-metadata"),
        pytest.param("https://[::ffff:0:7f00:1]/hooks", "url_target_not_allowed", id="siit-loopback"),
        pytest.param("https://[fec0::1]/hooks", "url_target_not_allowed", id="site-local"),
        pytest.param("https://[ff02::1]/hooks", "url_target_not_allowed", id="multicast"),
        pytest.param("https://[fc00::1]/hooks", "url_target_not_allowed", id="unique-local"),
        pytest.param("https://[100::1]/hooks", "url_target_not_allowed", id="discard-only"),
        ("http://hooks.example.com/lab", "url_scheme_not_allowed"),
        ("https://user:pw@hooks.example.com/lab", "url_invalid"),
        pytest.param("https://" + "\u00fc" * 60 + ".example/lab", "url_invalid", id="idna-refused-was-a-500"),
    ],
)
def test_registration_refuses_private_and_plain_http_urls_with_the_allow_flags_off(api, url, code):
    api.force_authenticate(new_customer())

    response = api.post("/api/v1/webhook-endpoints", {"url": url, "event_types": ALL_EVENTS}, format="json")

    assert (response.status_code, response.json()["code"]) == (422, code)
    assert WebhookEndpoint.objects.count() == 0


def test_registration_refuses_unknown_or_missing_event_types(api, local_webhooks, receiver):
    api.force_authenticate(new_customer())

    unknown = api.post(
        "/api/v1/webhook-endpoints", {"url": receiver.url, "event_types": ["order.eaten"]}, format="json"
    )
    empty = api.post("/api/v1/webhook-endpoints", {"url": receiver.url, "event_types": []}, format="json")

    assert (unknown.status_code, unknown.json()["code"]) == (400, "invalid_request")
    assert list(unknown.json()["errors"]) == ["event_types"]
    assert (empty.status_code, empty.json()["code"]) == (400, "invalid_request")
    assert WebhookEndpoint.objects.count() == 0


def test_a_customer_may_register_a_bounded_number_of_endpoints(api, local_webhooks, receiver):
    customer = new_customer()
    for _ in range(MAX_ENDPOINTS_PER_CUSTOMER):
        webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    api.force_authenticate(customer)

    response = api.post(
        "/api/v1/webhook-endpoints", {"url": receiver.url, "event_types": ALL_EVENTS}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (409, "too_many_webhook_endpoints")
    assert WebhookEndpoint.objects.count() == MAX_ENDPOINTS_PER_CUSTOMER


def test_webhook_endpoint_changes_are_throttled_per_customer(api, local_webhooks, receiver, settings):
    """Each POST or PATCH has the lab look up the URL's host: before, a customer could have it look up names
    as fast as they liked."""
    # given a rate of two changes an hour
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "webhook_endpoint_changes": "2/hour",
        },
    }
    customer, other = new_customer(), new_customer()
    api.force_authenticate(customer)
    body = {"url": receiver.url, "event_types": ALL_EVENTS}

    # when the customer registers an endpoint, changes it, then tries to register another
    created = api.post("/api/v1/webhook-endpoints", body, format="json")
    path = f"/api/v1/webhook-endpoints/{created.json()['id']}"
    changed = api.patch(path, {"description": "ERP"}, format="json")
    third = api.post("/api/v1/webhook-endpoints", body, format="json")

    # then the third change is refused and nothing was registered; reads still answer, and another customer
    # has a count of their own
    assert [created.status_code, changed.status_code, third.status_code] == [201, 200, 429]
    assert third.json()["code"] == "throttled"
    assert int(third["Retry-After"]) > 0
    assert api.patch(path, {"description": "CRM"}, format="json").status_code == 429
    descriptions = WebhookEndpoint.objects.filter(owner=customer).values_list("description", flat=True)
    assert list(descriptions) == ["ERP"]
    assert api.get("/api/v1/webhook-endpoints").status_code == 200
    assert api.get(path).status_code == 200
    api.force_authenticate(other)
    assert api.post("/api/v1/webhook-endpoints", body, format="json").status_code == 201


def test_a_customer_at_the_limit_is_refused_before_the_urls_host_is_looked_up(
    api, local_webhooks, receiver, hanging_resolver
):
    # given a customer with the most endpoints allowed
    customer = new_customer()
    for _ in range(MAX_ENDPOINTS_PER_CUSTOMER):
        webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    api.force_authenticate(customer)

    # when they register one more, whose host's lookup never answers
    response = api.post(
        "/api/v1/webhook-endpoints",
        {"url": f"https://{HANGING_HOST}/hooks", "event_types": ALL_EVENTS},
        format="json",
    )

    # then the limit refuses it without a lookup (before, the lookup ran first and held the web worker)
    assert (response.status_code, response.json()["code"]) == (409, "too_many_webhook_endpoints")
    assert hanging_resolver == []
    assert WebhookEndpoint.objects.count() == MAX_ENDPOINTS_PER_CUSTOMER


def test_registering_a_url_whose_host_never_resolves_is_refused_within_the_check_timeout(
    api, hanging_resolver
):
    # given a customer, a web process that has answered a request (the first imports the views: seconds), and
    # a host whose lookup never answers, the check given 1 s
    api.force_authenticate(new_customer())
    assert api.get("/api/v1/webhook-endpoints").status_code == 200
    started = time.monotonic()

    # when they register it
    response = api.post(
        "/api/v1/webhook-endpoints",
        {"url": f"https://{HANGING_HOST}/hooks", "event_types": ALL_EVENTS},
        format="json",
    )

    # then it is refused once the second is up (before, the lookup held the web worker for as long as it took)
    assert time.monotonic() - started < 10  # the timeout is 1 s, the hang 30 s: the bound is neither
    assert (response.status_code, response.json()["code"]) == (422, "url_host_unresolvable")
    assert hanging_resolver == [HANGING_HOST]
    assert WebhookEndpoint.objects.count() == 0


def test_changing_the_url_to_one_whose_host_never_resolves_is_refused_within_the_check_timeout(
    api, local_webhooks, receiver, hanging_resolver
):
    # given an endpoint, a web process that has answered a request (the first imports the views: seconds),
    # and a host whose lookup never answers, the check given 1 s
    endpoint = webhook_endpoint_create(owner=new_customer(), url=receiver.url, event_types=ALL_EVENTS)
    api.force_authenticate(endpoint.owner)
    assert api.get("/api/v1/webhook-endpoints").status_code == 200
    started = time.monotonic()

    # when its owner points it at that host
    response = api.patch(
        f"/api/v1/webhook-endpoints/{endpoint.pk}", {"url": f"https://{HANGING_HOST}/hooks"}, format="json"
    )

    # then the change is refused once the second is up, and the endpoint keeps its URL
    assert time.monotonic() - started < 10  # the timeout is 1 s, the hang 30 s: the bound is neither
    assert (response.status_code, response.json()["code"]) == (422, "url_host_unresolvable")
    assert list(WebhookEndpoint.objects.values_list("url", flat=True)) == [receiver.url]


def test_anonymous_callers_are_refused(api):
    response = api.get("/api/v1/webhook-endpoints")

    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


def test_the_list_shows_only_the_callers_endpoints(api, local_webhooks, receiver):
    mine = webhook_endpoint_create(owner=new_customer(), url=receiver.url, event_types=ALL_EVENTS)
    webhook_endpoint_create(owner=new_customer(), url=receiver.url, event_types=ALL_EVENTS)
    api.force_authenticate(mine.owner)

    body = api.get("/api/v1/webhook-endpoints").json()

    assert body["count"] == 1
    assert [endpoint["id"] for endpoint in body["results"]] == [str(mine.pk)]


def test_another_customers_endpoint_is_not_found_and_stays_unchanged(api, local_webhooks, receiver):
    theirs = webhook_endpoint_create(owner=new_customer(), url=receiver.url, event_types=ALL_EVENTS)
    api.force_authenticate(new_customer())
    path = f"/api/v1/webhook-endpoints/{theirs.pk}"

    read = api.get(path)
    update = api.patch(path, {"url": "https://attacker.example/steal", "is_active": False}, format="json")
    delete = api.delete(path)
    deliveries = api.get(f"{path}/deliveries")

    for response in (read, update, delete, deliveries):
        assert (response.status_code, response.json()["code"]) == (404, "webhook_endpoint_not_found")
    theirs.refresh_from_db()
    assert (theirs.url, theirs.is_active) == (receiver.url, True)


def test_patch_changes_the_endpoint_and_rechecks_the_url(api, local_webhooks, receiver, settings):
    endpoint = webhook_endpoint_create(owner=new_customer(), url=receiver.url, event_types=ALL_EVENTS)
    api.force_authenticate(endpoint.owner)
    path = f"/api/v1/webhook-endpoints/{endpoint.pk}"

    changed = api.patch(path, {"event_types": ["item.reprinted"], "is_active": False}, format="json")
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused = api.patch(path, {"url": "http://127.0.0.1:9/other"}, format="json")

    assert changed.status_code == 200
    assert (changed.json()["event_types"], changed.json()["is_active"]) == (["item.reprinted"], False)
    assert (refused.status_code, refused.json()["code"]) == (422, "url_target_not_allowed")
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types, endpoint.is_active) == (
        receiver.url,
        ["item.reprinted"],
        False,
    )


def test_delete_removes_the_endpoint_and_its_delivery_log(api, local_webhooks, receiver):
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={})
    api.force_authenticate(customer)

    response = api.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}")

    assert response.status_code == 204
    assert WebhookEndpoint.objects.count() == 0
    assert WebhookDelivery.objects.count() == 0


def test_the_delivery_log_is_paginated_newest_first(api, local_webhooks, receiver):
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    order = order_for(customer)
    for _ in range(3):
        webhook_event_emit(order_id=order.pk, event_type=EventType.ITEM_REPRINTED, data={"item": 1})
    api.force_authenticate(customer)

    first = api.get(f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries", {"page_size": 2}).json()
    second = api.get(
        f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries", {"page_size": 2, "page": 2}
    ).json()

    assert first["count"] == 3
    assert [d["sequence"] for d in first["results"]] == [3, 2]
    assert [d["sequence"] for d in second["results"]] == [1]
    assert first["results"][0]["event_type"] == "item.reprinted"
    assert (first["results"][0]["status"], first["results"][0]["attempts"]) == ("pending", [])


@pytest.mark.django_db(transaction=True)
def test_delete_while_an_attempt_is_being_recorded_waits_and_removes_it_too(api, local_webhooks, receiver):
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=receiver.url, event_types=ALL_EVENTS)
    now = timezone.now()
    event = WebhookEvent.objects.create(
        order=order_for(customer), event_type=EventType.ITEM_REPRINTED, sequence=1, body="{}"
    )
    delivery = WebhookDelivery.objects.create(
        event=event, endpoint=endpoint, next_attempt_at=now, give_up_at=now + RETRY_WINDOW
    )
    recorded = threading.Event()
    delete_waited: list[bool] = []

    def attempt_in_flight() -> None:
        # A worker that has written its attempt and not yet committed when the customer deletes the endpoint;
        # it commits once the delete is seen waiting for its locks.
        try:
            with transaction.atomic():
                _record(
                    delivery_id=str(delivery.pk),
                    outcome=AttemptOutcome(attempted_at=now, status_code=200, error_code="", duration_ms=3),
                    is_final=False,
                    claimed_until=None,  # a success ends a pending delivery whoever holds it
                )
                recorded.set()
                deadline = time.monotonic() + 10
                while not _holds_up_another_session() and time.monotonic() < deadline:
                    time.sleep(0.02)
                delete_waited.append(_holds_up_another_session())
        finally:
            connection.close()

    worker = threading.Thread(target=attempt_in_flight)
    worker.start()
    assert recorded.wait(timeout=10)
    api.force_authenticate(customer)

    response = api.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}")
    worker.join()

    assert delete_waited == [True]
    assert response.status_code == 204
    assert (
        WebhookEndpoint.objects.count(),
        WebhookDelivery.objects.count(),
        WebhookAttempt.objects.count(),
    ) == (
        0,
        0,
        0,
    )


def _holds_up_another_session() -> bool:
    """True while another database session waits for a lock that this session holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks"
            " WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
        )
        (waiting,) = cursor.fetchone()
    return bool(waiting)


def test_a_password_change_turns_off_the_endpoint_a_stolen_token_registered(api, local_webhooks, receiver):
    # given a customer's stolen token, with which the thief registers an endpoint of their own
    customer = new_customer()
    issued = APIClient().post(
        "/api/v1/auth/token", {"email": customer.email, "password": PASSWORD, "name": "laptop"}, format="json"
    )
    assert issued.status_code == 200
    thief = APIClient()
    thief.credentials(HTTP_AUTHORIZATION=f"Token {issued.json()['token']}")
    registered = thief.post(
        "/api/v1/webhook-endpoints", {"url": receiver.url, "event_types": ALL_EVENTS}, format="json"
    )
    assert registered.status_code == 201

    # when the owner changes the password (which ends every token)
    api.force_authenticate(customer)
    changed = api.patch(
        "/api/v1/me",
        {"current_password": PASSWORD, "new_password": "a brand new passphrase 9"},
        format="json",
    )

    # then the endpoint is off, the change's record counts it, and a shipment later sends the thief nothing
    # (before, the endpoint outlived the token and received the tracking number)
    assert changed.status_code == 200
    assert list(WebhookEndpoint.objects.values_list("is_active", flat=True)) == [False]
    event = SecurityEvent.objects.get(user=customer, kind="password_changed")
    assert event.detail == {"tokens_revoked": 1, "webhook_endpoints_deactivated": 1}
    order = order_for(customer)
    order_move(order, *TO_PACKED)
    order_move(
        order, "shipped", carrier="ups", tracking_number="1Z999AA10123456784", shipped_at=timezone.now()
    )
    notify_order_status_changed(order_id=order.pk, status="shipped")
    for delivery_id in WebhookDelivery.objects.values_list("pk", flat=True):
        webhook_deliver(delivery_id=str(delivery_id))
    assert receiver.requests == []
    assert WebhookDelivery.objects.count() == 0

    # and the owner turns on again an endpoint they recognise
    endpoint_id = registered.json()["id"]
    turned_on = api.patch(f"/api/v1/webhook-endpoints/{endpoint_id}", {"is_active": True}, format="json")
    assert (turned_on.status_code, turned_on.json()["is_active"]) == (200, True)
