"""The contract's media types, as a client generated from the schema uses them (openapi-generator sends the
first JSON-like media type an operation declares as `Accept`, else the first declared; a proof's client asks
for `application/problem+json`, a 204 delete's too).

Every operation answers a request with `Accept` set to each media type its successes declare and to
`application/problem+json` with its own declared success (a delete is carried out); before, DRF refused what
its JSON renderer did not match with an undeclared 406, the view not run. And the photo upload's request
body, built from what the schema declares for each of its media types, is accepted.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from lab.accounts.email_change import email_change_tokens
from lab.accounts.models import ApiToken, User
from lab.accounts.tokens import api_token_issue
from lab.catalog.demo import catalog_seed_demo
from lab.notify.models import EventType, WebhookDelivery, WebhookEndpoint
from lab.notify.webhooks import webhook_endpoint_create, webhook_event_emit
from lab.orders.models import Order
from tests.builders import ADDRESS, PASSWORD, SKU, UserFactory, asset_for, order_for
from tests.support.images import jpeg_bytes
from tests.support.stripe_server import signed_event

PROBLEM = "application/problem+json"
HOOK_URL = "http://127.0.0.1:9/hooks/lab"  # registration checks the URL; nothing is sent in these tests


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker) -> dict[str, Any]:
    with django_db_blocker.unblock():
        # drf-spectacular ships py.typed but leaves its schema generator unannotated.
        generated: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)  # type: ignore[no-untyped-call]
    return generated


def success_media_types(operation: dict[str, Any]) -> list[str]:
    return list(
        dict.fromkeys(
            media_type
            for status, response in operation["responses"].items()
            if 200 <= int(status) < 300
            for media_type in response.get("content", {})
        )
    )


def acceptable(declared: list[str], content_type: str) -> bool:
    media_type = content_type.split(";")[0].strip()
    return any(
        media_type == each or (each.endswith("/*") and media_type.startswith(each[:-1])) for each in declared
    )


# --- one successful request per operation ------------------------------------------------------------------


@dataclass
class Call:
    response: Any
    status: int  # the success the request is built for
    done: Callable[[], bool] | None = None  # what the request must have done (a delete: it is gone)


Recipe = Callable[[APIClient, dict[str, Any]], Call]


def _customer(api: APIClient) -> User:
    user = UserFactory.create()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user, name='generated client').key}")
    return user


def _auditor(api: APIClient) -> User:
    auditor = UserFactory.create(roles=["auditor"])
    api.force_authenticate(auditor)
    return auditor


def _item(user: User | None) -> dict[str, object]:
    catalog_seed_demo()
    return {"sku": SKU, "asset": str(asset_for(user).pk), "copies": 1, "sizing": "fill"}


def _order(api: APIClient, *, guest: bool = False) -> dict[str, Any]:
    """An order placed through the API, awaiting payment: a signed-in customer's, or a guest's."""
    user = None if guest else _customer(api)
    body: dict[str, object] = {
        "items": [_item(user)],
        "shipping_method": "standard",
        "shipping_address": ADDRESS,
    }
    if guest:
        body["guest"] = {
            "email": "guest@example.org",
            "birth_date": "1980-01-01",
            "privacy_policy_version": "1.0",
        }
    placed = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    assert placed.status_code == 201, placed.json()
    return dict(placed.json())


def _endpoint(api: APIClient) -> WebhookEndpoint:
    return webhook_endpoint_create(owner=_customer(api), url=HOOK_URL, event_types=["order.shipped"])


def _delivery(api: APIClient) -> WebhookDelivery:
    """A failed delivery (never attempted here): one its owner may ask to be sent again."""
    endpoint = webhook_endpoint_create(
        owner=_customer(api), url=HOOK_URL, event_types=[EventType.ITEM_REPRINTED]
    )
    customer = User.objects.get(pk=endpoint.owner_id)
    webhook_event_emit(order_id=order_for(customer).pk, event_type=EventType.ITEM_REPRINTED, data={"item": 1})
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint)
    deliveries.update(status="failed", next_attempt_at=None)
    return deliveries.get()


def _register(api: APIClient, accept: dict[str, Any]) -> Call:
    body = {
        "email": f"{uuid.uuid4().hex}@example.org",
        "password": "a long enough secret 42",
        "full_name": "Ada Quill",
        "address": ADDRESS,
        "birth_date": "1980-01-01",
        "privacy_policy_version": "1.0",
    }
    return Call(api.post("/api/v1/accounts", body, format="json", **accept), 201)


def _upload(api: APIClient, accept: dict[str, Any]) -> Call:
    photo = SimpleUploadedFile("a.jpg", jpeg_bytes(600, 400), content_type="image/jpeg")
    return Call(api.post("/api/v1/assets", {"file": photo}, format="multipart", **accept), 201)


def _asset(api: APIClient, accept: dict[str, Any]) -> Call:
    return Call(api.get(f"/api/v1/assets/{asset_for(_customer(api)).pk}", **accept), 200)


def _asset_content(api: APIClient, accept: dict[str, Any]) -> Call:
    return Call(api.get(f"/api/v1/assets/{asset_for(_customer(api)).pk}/content", **accept), 200)


def _audit(page: str) -> Recipe:
    def recipe(api: APIClient, accept: dict[str, Any]) -> Call:
        _auditor(api)
        return Call(api.get(f"/api/v1/audit/{page}", **accept), 200)

    return recipe


def _sign_in(api: APIClient, accept: dict[str, Any]) -> Call:
    user = UserFactory.create()
    body = {"email": user.email, "password": PASSWORD, "name": "phone"}
    return Call(api.post("/api/v1/auth/token", body, format="json", **accept), 200)


def _get_signed_in(path: str) -> Recipe:
    def recipe(api: APIClient, accept: dict[str, Any]) -> Call:
        _customer(api)
        return Call(api.get(path, **accept), 200)

    return recipe


def _me_change(api: APIClient, accept: dict[str, Any]) -> Call:
    user = _customer(api)
    changed = api.patch("/api/v1/me", {"full_name": "Ada Lovelace Quill"}, format="json", **accept)
    return Call(changed, 200, lambda: User.objects.get(pk=user.pk).full_name == "Ada Lovelace Quill")


def _me_erase(api: APIClient, accept: dict[str, Any]) -> Call:
    user = _customer(api)
    erased = api.delete("/api/v1/me", {"password": PASSWORD}, format="json", **accept)
    return Call(erased, 200, lambda: User.objects.get(pk=user.pk).erased_at is not None)


def _email_confirm(api: APIClient, accept: dict[str, Any]) -> Call:
    user = _customer(api)
    address = f"{uuid.uuid4().hex}@example.org"
    moved = api.patch("/api/v1/me", {"email": address, "current_password": PASSWORD}, format="json")
    assert moved.status_code == 200, moved.json()
    token = email_change_tokens.make_token(User.objects.get(pk=user.pk))
    confirmed = api.post("/api/v1/me/email/confirm", {"token": token}, format="json", **accept)
    return Call(confirmed, 200, lambda: User.objects.get(pk=user.pk).email == address)


def _token_revoke(api: APIClient, accept: dict[str, Any]) -> Call:
    user = _customer(api)
    other = api_token_issue(user=user, name="laptop").token
    revoked = api.delete(
        f"/api/v1/me/tokens/{other.public_id}", {"password": PASSWORD}, format="json", **accept
    )
    return Call(revoked, 204, lambda: not ApiToken.objects.filter(pk=other.pk).exists())


def _order_place(api: APIClient, accept: dict[str, Any]) -> Call:
    user = _customer(api)
    body = {"items": [_item(user)], "shipping_method": "standard", "shipping_address": ADDRESS}
    return Call(api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1", **accept), 201)


def _order_read(api: APIClient, accept: dict[str, Any]) -> Call:
    return Call(api.get(f"/api/v1/orders/{_order(api)['ref']}", **accept), 200)


def _order_address(api: APIClient, accept: dict[str, Any]) -> Call:
    ref = _order(api)["ref"]
    moved = {**ADDRESS, "line1": "2 Aperture Avenue"}
    changed = api.patch(f"/api/v1/orders/{ref}", {"shipping_address": moved}, format="json", **accept)
    return Call(
        changed, 200, lambda: Order.objects.get(ref=ref).shipping_address["line1"] == "2 Aperture Avenue"
    )


def _order_cancel(api: APIClient, accept: dict[str, Any]) -> Call:
    ref = _order(api)["ref"]
    cancelled = api.post(f"/api/v1/orders/{ref}/cancel", **accept)
    return Call(cancelled, 200, lambda: Order.objects.get(ref=ref).status == "cancelled")


def _guest_export(api: APIClient, accept: dict[str, Any]) -> Call:
    placed = _order(api, guest=True)
    exported = api.get(
        f"/api/v1/orders/{placed['ref']}/export", HTTP_X_ORDER_TOKEN=placed["guest_token"], **accept
    )
    return Call(exported, 200)


def _guest_erase(api: APIClient, accept: dict[str, Any]) -> Call:
    placed = _order(api, guest=True)
    ref = placed["ref"]
    erased = api.delete(
        f"/api/v1/orders/{ref}/personal-data", HTTP_X_ORDER_TOKEN=placed["guest_token"], **accept
    )
    return Call(erased, 200, lambda: Order.objects.get(ref=ref).is_anonymized)


def _item_proof(api: APIClient, accept: dict[str, Any]) -> Call:
    return Call(api.get(f"/api/v1/orders/{_order(api)['ref']}/items/1/proof", **accept), 200)


def _products(api: APIClient, accept: dict[str, Any]) -> Call:
    catalog_seed_demo()
    return Call(api.get("/api/v1/products", **accept), 200)


def _proof(api: APIClient, accept: dict[str, Any]) -> Call:
    return Call(api.post("/api/v1/proofs", _item(_customer(api)), format="json", **accept), 200)


def _quote(api: APIClient, accept: dict[str, Any]) -> Call:
    body = {"items": [_item(_customer(api))], "shipping_method": "standard"}
    return Call(api.post("/api/v1/quotes", body, format="json", **accept), 200)


def _receipt(api: APIClient, accept: dict[str, Any]) -> Call:
    placed = _order(api, guest=True)
    erased = api.delete(
        f"/api/v1/orders/{placed['ref']}/personal-data", HTTP_X_ORDER_TOKEN=placed["guest_token"]
    )
    assert erased.status_code == 200, erased.json()
    link = urlsplit(erased.json()["receipt"]["url"])
    return Call(api.get(f"{link.path}?{link.query}", **accept), 200)


def _redeliver(api: APIClient, accept: dict[str, Any]) -> Call:
    delivery = _delivery(api)
    asked = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver", **accept)
    return Call(asked, 202, lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "pending")


def _endpoint_register(api: APIClient, accept: dict[str, Any]) -> Call:
    _customer(api)
    body = {"url": HOOK_URL, "event_types": ["order.shipped"]}
    registered = api.post("/api/v1/webhook-endpoints", body, format="json", **accept)
    return Call(registered, 201, lambda: WebhookEndpoint.objects.filter(url=HOOK_URL).exists())


def _endpoint_read(api: APIClient, accept: dict[str, Any]) -> Call:
    return Call(api.get(f"/api/v1/webhook-endpoints/{_endpoint(api).pk}", **accept), 200)


def _endpoint_change(api: APIClient, accept: dict[str, Any]) -> Call:
    endpoint = _endpoint(api)
    changed = api.patch(
        f"/api/v1/webhook-endpoints/{endpoint.pk}", {"description": "ERP"}, format="json", **accept
    )
    return Call(changed, 200, lambda: WebhookEndpoint.objects.get(pk=endpoint.pk).description == "ERP")


def _endpoint_delete(api: APIClient, accept: dict[str, Any]) -> Call:
    endpoint = _endpoint(api)
    deleted = api.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}", **accept)
    return Call(deleted, 204, lambda: not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists())


def _endpoint_deliveries(api: APIClient, accept: dict[str, Any]) -> Call:
    return Call(api.get(f"/api/v1/webhook-endpoints/{_endpoint(api).pk}/deliveries", **accept), 200)


def _stripe_event(api: APIClient, accept: dict[str, Any]) -> Call:
    payload, signature = signed_event(
        event_type="customer.created",
        data_object={"id": "cus_1", "object": "customer"},
        secret=django_settings.STRIPE_WEBHOOK_SECRET,
        event_id=f"evt_{uuid.uuid4().hex}",
    )
    received = api.post(
        "/api/v1/webhooks/stripe",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
        **accept,
    )
    return Call(received, 200)


RECIPES: dict[tuple[str, str], Recipe] = {
    ("POST", "/api/v1/accounts"): _register,
    ("POST", "/api/v1/assets"): _upload,
    ("GET", "/api/v1/assets/{asset_id}"): _asset,
    ("GET", "/api/v1/assets/{asset_id}/content"): _asset_content,
    ("GET", "/api/v1/audit/anomalies"): _audit("anomalies"),
    ("GET", "/api/v1/audit/records"): _audit("records"),
    ("GET", "/api/v1/audit/summary"): _audit("summary"),
    ("POST", "/api/v1/auth/token"): _sign_in,
    ("GET", "/api/v1/me"): _get_signed_in("/api/v1/me"),
    ("PATCH", "/api/v1/me"): _me_change,
    ("DELETE", "/api/v1/me"): _me_erase,
    ("POST", "/api/v1/me/email/confirm"): _email_confirm,
    ("GET", "/api/v1/me/export"): _get_signed_in("/api/v1/me/export"),
    ("GET", "/api/v1/me/receipts"): _get_signed_in("/api/v1/me/receipts"),
    ("GET", "/api/v1/me/tokens"): _get_signed_in("/api/v1/me/tokens"),
    ("DELETE", "/api/v1/me/tokens/{token_id}"): _token_revoke,
    ("GET", "/api/v1/orders"): _get_signed_in("/api/v1/orders"),
    ("POST", "/api/v1/orders"): _order_place,
    ("GET", "/api/v1/orders/{ref}"): _order_read,
    ("PATCH", "/api/v1/orders/{ref}"): _order_address,
    ("POST", "/api/v1/orders/{ref}/cancel"): _order_cancel,
    ("GET", "/api/v1/orders/{ref}/export"): _guest_export,
    ("GET", "/api/v1/orders/{ref}/items/{position}/proof"): _item_proof,
    ("DELETE", "/api/v1/orders/{ref}/personal-data"): _guest_erase,
    ("GET", "/api/v1/products"): _products,
    ("POST", "/api/v1/proofs"): _proof,
    ("POST", "/api/v1/quotes"): _quote,
    ("GET", "/api/v1/receipts/{receipt_id}"): _receipt,
    ("POST", "/api/v1/webhook-deliveries/{delivery_id}/redeliver"): _redeliver,
    ("GET", "/api/v1/webhook-endpoints"): _get_signed_in("/api/v1/webhook-endpoints"),
    ("POST", "/api/v1/webhook-endpoints"): _endpoint_register,
    ("GET", "/api/v1/webhook-endpoints/{endpoint_id}"): _endpoint_read,
    ("PATCH", "/api/v1/webhook-endpoints/{endpoint_id}"): _endpoint_change,
    ("DELETE", "/api/v1/webhook-endpoints/{endpoint_id}"): _endpoint_delete,
    ("GET", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries"): _endpoint_deliveries,
    ("POST", "/api/v1/webhooks/stripe"): _stripe_event,
}


@pytest.fixture
def hooks_on_loopback(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_ALLOW_HTTP = True


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), list(RECIPES), ids=[f"{m} {p}" for m, p in RECIPES])
def test_each_operation_answers_its_success_whatever_declared_type_is_accepted(
    method, path, schema, stripe_api, hooks_on_loopback
):
    # every operation of the schema has its request here
    assert {(each.upper(), at) for at, item in schema["paths"].items() for each in item} == set(RECIPES)
    operation = schema["paths"][path][method.lower()]
    accepts = [*success_media_types(operation), PROBLEM]

    answered, expected, bodies = [], [], []
    for accept in accepts:
        call = RECIPES[(method, path)](APIClient(), {"HTTP_ACCEPT": accept})
        response = call.response
        declared = operation["responses"].get(str(response.status_code), {})
        answered.append(
            (
                accept,
                response.status_code,
                str(response.status_code) in operation["responses"],
                acceptable(list(declared.get("content", {})), response.get("Content-Type", ""))
                if response.content
                else "content" not in declared,
                call.done() if call.done is not None else True,
            )
        )
        expected.append((accept, call.status, True, True, True))
        bodies.append(
            b"" if response.get("Content-Type", "").startswith("image/") else response.content[:300]
        )

    # the success the request is built for, declared with the content type it came in; what it must do, done
    assert answered == expected, bodies


# --- the photo upload, one body per media type --------------------------------------------------------------


PHOTO = jpeg_bytes(600, 400)


def _resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else node


def _value(name: str, declared: dict[str, Any]) -> object:
    """A value for a declared property of the upload, from its type and format alone (md5 and sha256: the
    photo's own digests, the only values their pattern admits that the server takes)."""
    if declared.get("format") == "binary":
        return SimpleUploadedFile("photo.jpg", PHOTO, content_type="image/jpeg")
    if declared.get("format") == "uri":
        return "http://127.0.0.1:9/photo.jpg"
    digests: dict[str, Callable[[bytes], Any]] = {"md5": hashlib.md5, "sha256": hashlib.sha256}
    if name in digests:
        return digests[name](PHOTO).hexdigest()
    raise AssertionError(f"no value for the upload's declared property {name!r}: {declared}")


FORMATS = {"multipart/form-data": "multipart", "application/json": "json"}


def upload_bodies(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, object]]]:
    """(media type, body) of each media type `POST assets` declares: every property its schema declares."""
    for media_type, declared in schema["paths"]["/api/v1/assets"]["post"]["requestBody"]["content"].items():
        properties = _resolved(schema, declared["schema"]).get("properties", {})
        yield media_type, {name: _value(name, each) for name, each in properties.items()}


@pytest.mark.django_db
def test_the_upload_is_accepted_as_the_schema_declares_it_for_each_media_type(schema, api, settings):
    settings.ASSET_FETCH_ALLOW_PRIVATE = True  # a photo's URL on loopback: checked, not fetched here
    settings.ASSET_FETCH_ALLOW_HTTP = True
    declared = list(schema["paths"]["/api/v1/assets"]["post"]["requestBody"]["content"])

    answered: dict[str, tuple[int, str | None]] = {}
    for media_type, body in upload_bodies(schema):
        if media_type != "multipart/form-data" and not all(isinstance(value, str) for value in body.values()):
            answered[media_type] = (0, f"a file cannot be sent as {media_type}")
            continue
        if media_type in FORMATS:
            response = api.post("/api/v1/assets", body, format=FORMATS[media_type])
        else:  # a form without a file
            response = api.post("/api/v1/assets", urlencode(body), content_type=media_type)
        answered[media_type] = (response.status_code, response.json().get("code"))

    # the file as a multipart part, first; a URL to fetch as JSON
    assert declared[0] == "multipart/form-data"
    assert answered["multipart/form-data"] == (201, None)
    assert answered["application/json"] == (202, None)
    assert all(status in (200, 201, 202) for status, _ in answered.values()), answered
