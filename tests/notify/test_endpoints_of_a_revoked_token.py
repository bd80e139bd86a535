"""Revoking an API token turns off the webhook endpoints whose URL it set (registered, or pointed elsewhere):
a stolen token's endpoints stop receiving the account's tracking numbers with it. Others stay on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from lab.accounts.models import ApiToken, SecurityEvent, User
from lab.accounts.tokens import api_token_authenticate, api_token_issue, api_token_revoke
from lab.lib.errors import PermissionDenied
from lab.notify.delivery import webhook_deliver
from lab.notify.models import WebhookDelivery, WebhookEndpoint
from lab.notify.services import notify_order_status_changed
from lab.notify.webhooks import webhook_endpoint_create, webhook_endpoint_update
from tests.builders import PASSWORD, TO_PACKED, new_customer, order_for, order_move
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db

ALL_EVENTS = ["order.status_changed", "order.shipped", "item.reprinted"]


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def register(client: APIClient, url: str) -> str:
    response = client.post(
        "/api/v1/webhook-endpoints", {"url": url, "event_types": ALL_EVENTS}, format="json"
    )
    assert response.status_code == 201, response.json()
    return str(response.json()["id"])


def ship_and_deliver(customer: User) -> None:
    order = order_for(customer)
    order_move(order, *TO_PACKED)
    order_move(
        order, "shipped", carrier="ups", tracking_number="1Z999AA10123456784", shipped_at=timezone.now()
    )
    notify_order_status_changed(order_id=order.pk, status="shipped")
    for delivery_id in WebhookDelivery.objects.order_by("created_at").values_list("pk", flat=True):
        webhook_deliver(delivery_id=str(delivery_id))


def shipped_paths(receiver) -> list[str]:
    return sorted(r.path for r in receiver.requests if r.headers["X-Lab-Event-Type"] == "order.shipped")


def active_by_id() -> dict[str, bool]:
    return {str(pk): active for pk, active in WebhookEndpoint.objects.values_list("pk", "is_active")}


def test_revoking_a_stolen_token_turns_off_the_endpoints_it_set_and_no_shipment_reaches_them(
    api, local_webhooks, receiver
):
    # given the owner's token and a stolen one; with the stolen one the thief registers an endpoint and
    # points one the owner registered in a session at their own URL; the owner's token registers a third
    customer = new_customer()
    owner = client_with(api_token_issue(user=customer, name="laptop").key)
    stolen = api_token_issue(user=customer, name="ci-script")
    thief = client_with(stolen.key)
    api.force_authenticate(customer)
    pointed = register(api, f"{receiver.url}/erp")
    registered = register(thief, f"{receiver.url}/thief-registered")
    changed = thief.patch(
        f"/api/v1/webhook-endpoints/{pointed}", {"url": f"{receiver.url}/thief-pointed"}, format="json"
    )
    assert changed.status_code == 200, changed.json()
    kept = register(owner, f"{receiver.url}/owner")

    # when the owner revokes the stolen token (DELETE me/tokens/{id}, with the password)
    revoked = owner.delete(
        f"/api/v1/me/tokens/{stolen.token.public_id}", {"password": PASSWORD}, format="json"
    )

    # then the two endpoints the stolen token set are off, the owner's token's stays on, the revocation's
    # record counts them (no URL in it), and a shipment reaches the owner's endpoint alone
    assert revoked.status_code == 204
    assert active_by_id() == {pointed: False, registered: False, kept: True}
    event = SecurityEvent.objects.get(user=customer, kind="token_revoked")
    assert event.detail == {
        "token": str(stolen.token.public_id),
        "reason": "owner",
        "webhook_endpoints_deactivated": 2,
    }
    ship_and_deliver(customer)
    assert shipped_paths(receiver) == ["/hooks/lab/owner"]
    assert {str(pk) for pk in WebhookDelivery.objects.values_list("endpoint_id", flat=True)} == {kept}


def test_a_token_that_revokes_itself_turns_off_its_endpoint_and_leaves_the_sessions_on(
    api, local_webhooks, receiver
):
    # given an endpoint registered in a session and one registered with a token
    customer = new_customer()
    api.force_authenticate(customer)
    session_set = register(api, f"{receiver.url}/session")
    issued = api_token_issue(user=customer, name="ci-script")
    with_token = register(client_with(issued.key), f"{receiver.url}/script")

    # when the token revokes itself (no password needed)
    revoked = client_with(issued.key).delete(f"/api/v1/me/tokens/{issued.token.public_id}")

    # then its endpoint is off and the session's still receives
    assert revoked.status_code == 204
    assert active_by_id() == {session_set: True, with_token: False}
    ship_and_deliver(customer)
    assert shipped_paths(receiver) == ["/hooks/lab/session"]


def test_an_endpoint_a_token_turned_on_again_is_turned_off_when_that_token_is_revoked(
    api, local_webhooks, receiver
):
    # given an endpoint the owner turned off in a session, which a second stolen token turns on again
    customer = new_customer()
    api.force_authenticate(customer)
    endpoint = register(api, f"{receiver.url}/erp")
    turned_off = api.patch(f"/api/v1/webhook-endpoints/{endpoint}", {"is_active": False}, format="json")
    assert turned_off.status_code == 200, turned_off.json()
    stolen = api_token_issue(user=customer, name="ci-script")
    turned_on = client_with(stolen.key).patch(
        f"/api/v1/webhook-endpoints/{endpoint}", {"is_active": True}, format="json"
    )
    assert turned_on.status_code == 200, turned_on.json()

    # when the owner revokes that token
    api_token_revoke(user=customer, token_id=str(stolen.token.public_id), password=PASSWORD)

    # then the endpoint is off again (before, only a new URL recorded the token, and it stayed on)
    assert active_by_id() == {endpoint: False}
    ship_and_deliver(customer)
    assert shipped_paths(receiver) == []


def test_the_revocation_over_the_token_cap_turns_off_the_endpoints_of_the_token_it_ends(
    settings, local_webhooks, receiver
):
    # given two tokens at the cap of two, each having registered an endpoint; the stolen one used last
    settings.API_TOKENS_PER_USER = 2
    customer = new_customer()
    laptop = api_token_issue(user=customer, name="laptop")
    stolen = api_token_issue(user=customer, name="ci-script")
    kept = register(client_with(laptop.key), f"{receiver.url}/laptop")
    ended = register(client_with(stolen.key), f"{receiver.url}/thief")
    ApiToken.objects.filter(pk=stolen.token.pk).update(last_used_at=timezone.now() - timedelta(hours=1))

    # when a third token is issued, which revokes the least recently used one
    api_token_issue(user=customer, name="phone")

    # then the stolen token is gone with its endpoint, and the laptop's endpoint still receives
    assert sorted(ApiToken.objects.values_list("name", flat=True)) == ["laptop", "phone"]
    assert active_by_id() == {kept: True, ended: False}
    event = SecurityEvent.objects.get(user=customer, kind="token_revoked")
    assert event.detail == {
        "token": str(stolen.token.public_id),
        "reason": "token_limit",
        "webhook_endpoints_deactivated": 1,
    }
    ship_and_deliver(customer)
    assert shipped_paths(receiver) == ["/hooks/lab/laptop"]


def test_a_change_made_with_a_token_revoked_while_it_was_on_its_way_is_refused(local_webhooks, receiver):
    # given a request authenticated by a token, and the endpoint the owner registered in a session
    customer = new_customer()
    endpoint = webhook_endpoint_create(owner=customer, url=f"{receiver.url}/erp", event_types=ALL_EVENTS)
    issued = api_token_issue(user=customer, name="ci-script")
    authenticated = api_token_authenticate(key=issued.key)
    assert authenticated is not None
    user, token = authenticated

    # when the token is revoked before the request's change is made
    api_token_revoke(user=user, token_id=str(token.public_id))

    # then neither its new URL nor a new endpoint is taken: the revocation could not have turned them off
    with pytest.raises(PermissionDenied):
        webhook_endpoint_update(endpoint=endpoint, url=f"{receiver.url}/thief", by_token=token)
    with pytest.raises(PermissionDenied):
        webhook_endpoint_create(
            owner=user, url=f"{receiver.url}/thief", event_types=ALL_EVENTS, by_token=token
        )
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.set_by_token, endpoint.is_active) == (f"{receiver.url}/erp", "", True)
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_leaves_existing_endpoints_on_and_a_revocation_leaves_them_on():
    # given an endpoint registered before the token that set it was recorded (notify 0003)
    latest = leaf_migrations("notify")
    customer = new_customer()
    issued = api_token_issue(user=customer, name="ci-script")
    endpoint = WebhookEndpoint.objects.create(
        owner=customer, url="https://hooks.example.com/lab", secret="whsec_test", event_types=ALL_EVENTS
    )
    migrate_to([("notify", "0003_notification_told_refund_made")])
    try:
        # when the database is upgraded
        migrate_to([("notify", "0004_webhookendpoint_set_by_token")])
    finally:
        migrate_to(latest)

    # then the endpoint is on, set by no known token, and revoking the account's token leaves it on
    endpoint.refresh_from_db()
    assert (endpoint.is_active, endpoint.set_by_token) == (True, "")
    authenticated = api_token_authenticate(key=issued.key)
    assert authenticated is not None
    api_token_revoke(user=authenticated[0], token_id=str(issued.token.public_id))
    endpoint.refresh_from_db()
    assert endpoint.is_active is True
