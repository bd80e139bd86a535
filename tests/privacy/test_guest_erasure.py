"""A guest has no account to export or erase: the order's X-Order-Token, their only credential, opens
GET orders/{ref}/export (everything held about the order, every employee view of its photos by role) and
DELETE orders/{ref}/personal-data (photos crypto-shredded, e-mail, address and messages removed, the order
kept anonymised for accounting, a signed receipt). Before, a guest's e-mail and address stayed for good and
the guest could neither see nor erase them."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from lab.audit.database_verify import audit_verify_database
from lab.audit.models import AccessGrant, AuditRecord
from lab.audit.records import RequestMeta
from lab.customer_data.receipts import receipt_issue, receipt_url
from lab.gate import access as gate
from lab.gate.rules import AccessRequest
from lab.notify.services import notify_order_status_changed
from lab.orders.models import Asset, Order
from lab.production import routing
from lab.production.models import PrintJob
from tests.builders import (
    PERSON,
    UserFactory,
    blob_path,
    database_text,
    minilab,
    new_customer,
    order_for,
    pack_and_ship,
    pay,
    print_order,
)
from tests.support.images import jpeg_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_api")]


def guest_order(api: APIClient, *, key: str = "guest-1") -> tuple[Order, str, str]:
    """A guest's photo (its file named after them) and order to PERSON's address: the order, its token, and
    the photo's stored blob."""
    photo = SimpleUploadedFile(PERSON.photo_name, jpeg_bytes(1800, 1200), content_type="image/jpeg")
    uploaded = api.post("/api/v1/assets", {"file": photo}, format="multipart")
    assert uploaded.status_code == 201, uploaded.json()
    created = api.post(
        "/api/v1/orders",
        {
            "items": [{"sku": "PRINT-4X6-LUSTRE", "asset": uploaded.json()["id"], "copies": 2}],
            "shipping_method": "standard",
            "shipping_address": PERSON.address,
            "guest": {"email": PERSON.email, "birth_date": "1984-02-29", "privacy_policy_version": "1.0"},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert created.status_code == 201, created.json()
    order = Order.objects.get(ref=created.json()["ref"])
    blob = Asset.objects.get(pk=uploaded.json()["id"]).blob_name
    return order, created.json()["guest_token"], blob


def shipped_guest_order(api: APIClient) -> tuple[Order, str, str]:
    from lab.catalog.demo import catalog_seed_demo

    catalog_seed_demo()
    order, token, blob = guest_order(api)
    pay(order, event_id="evt_guest_1")
    minilab()
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.select_related("item").get(order=order)
    gate.image_access(
        user=UserFactory.create(roles=["technician"]),
        request=AccessRequest(
            asset_id=str(job.item.asset_id),
            purpose="printing",
            justification="checking the colour of the print",
            context_type="print_job",
            context_id=str(job.pk),
        ),
        meta=RequestMeta(client_ip="10.0.0.5"),
    )
    print_order(order)
    return pack_and_ship(order), token, blob


def test_a_guest_exports_their_order_with_its_token_and_sees_every_employee_view_by_role(api):
    order, token, _ = shipped_guest_order(api)

    response = api.get(f"/api/v1/orders/{order.ref}/export", HTTP_X_ORDER_TOKEN=token)

    assert response.status_code == 200, response.json()
    assert response["Cache-Control"] == "no-store, private"
    document = response.json()
    assert document["format"] == "printlab.guest-order-export.v1"
    assert document["guest"] == {"email": PERSON.email}
    [exported] = document["orders"]
    assert (exported["ref"], exported["shipping_address"]) == (order.ref, PERSON.address)
    assert [photo["id"] for photo in document["photos"]] == [str(order.items.get().asset_id)]
    assert [(view["viewer_role"], view["purpose"]) for view in document["photo_views"]] == [
        ("technician", "printing")
    ]
    assert [consent["kind"] for consent in document["consents"]] == ["privacy_policy"]
    exports = AuditRecord.objects.filter(action="order.export", order_ref=order.ref, actor_role="guest")
    assert exports.count() == 1


def test_a_guest_s_export_holds_the_order_s_receipts_emails_print_jobs_and_idempotency_key(
    api, django_capture_on_commit_callbacks, mailoutbox
):
    # given a guest's shipped order, its shipping e-mail sent and its signed receipt issued (the tasks' work)
    order, token, _ = shipped_guest_order(api)
    with django_capture_on_commit_callbacks(execute=True):
        notify_order_status_changed(order_id=order.pk, status="shipped")
        receipt = receipt_issue(order=order, reason="shipped", mail=False)
    assert receipt is not None
    job = PrintJob.objects.get(order=order)

    # when the guest exports the order with its token
    document = api.get(f"/api/v1/orders/{order.ref}/export", HTTP_X_ORDER_TOKEN=token).json()

    # then it holds what erasure blanks as theirs: the receipt with its link (a guest has no me/receipts: a
    # lost e-mail left the receipt unreachable), the e-mail sent, the print job and the request's key
    assert [(r["id"], r["order"], r["reason"], r["url"]) for r in document["privacy_receipts"]] == [
        (str(receipt.pk), order.ref, "shipped", receipt_url(receipt))
    ]
    assert api.get(document["privacy_receipts"][0]["url"]).status_code == 200
    assert [(n["order"], n["kind"], n["order_status"], n["status"]) for n in document["notifications"]] == [
        (order.ref, "status_changed", "shipped", "sent")
    ]
    assert [m.to for m in mailoutbox if order.ref in m.subject] == [[PERSON.email]]
    assert [(j["id"], j["order"], j["copies"]) for j in document["print_jobs"]] == [(job.pk, order.ref, 2)]
    assert document["print_jobs"][0]["events"][0]["kind"] == "created"
    assert [(k["key"], k["order"]) for k in document["idempotency_keys"]] == [("guest-1", order.ref)]
    assert receipt.token_hash not in str(document)


def test_without_the_token_or_for_an_accounts_order_the_guest_routes_answer_not_found(api):
    order, _, _ = shipped_guest_order(api)
    customer = new_customer()
    accounts_order = order_for(customer)
    before = database_text()

    answers = [
        api.get(f"/api/v1/orders/{order.ref}/export"),
        api.get(f"/api/v1/orders/{order.ref}/export", HTTP_X_ORDER_TOKEN="not-the-token"),
        api.delete(f"/api/v1/orders/{order.ref}/personal-data", HTTP_X_ORDER_TOKEN="not-the-token"),
    ]
    api.force_authenticate(customer)  # an account's order is erased with the account (DELETE me)
    answers.append(api.delete(f"/api/v1/orders/{accounts_order.ref}/personal-data"))

    codes = [(answer.status_code, answer.json()["code"]) for answer in answers]
    assert codes == [(404, "order_not_found")] * 4
    assert database_text() == before


def test_a_guest_erases_their_shipped_order_and_nothing_personal_is_left(
    api, django_capture_on_commit_callbacks, mailoutbox
):
    order, token, blob = shipped_guest_order(api)
    assert [needle for needle in PERSON.needles if needle in database_text()] != []

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/v1/orders/{order.ref}/personal-data", HTTP_X_ORDER_TOKEN=token)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["photos_purged"], body["order_cancelled"]) == (1, False)
    assert body["receipt"]["order_ref"] == order.ref
    text = database_text()
    assert [needle for needle in PERSON.needles if needle in text] == []
    # nor the hash of the e-mail the order's idempotency key was scoped by (anyone holding the address could
    # find the order with it), nor the technician's words on their grant for the photo (as for an account's)
    assert hashlib.sha256(PERSON.email.lower().encode()).hexdigest() not in text
    assert list(AccessGrant.objects.values_list("justification", flat=True)) == [""]
    order.refresh_from_db()
    assert (order.status, order.is_anonymized, order.shipping_address, order.guest_email) == (
        "shipped",
        True,
        {},
        "",
    )
    assert not blob_path(blob).exists()
    # the receipt's link was mailed to the address the order had, before it was wiped
    [mailed] = [message for message in mailoutbox if "privacy receipt" in message.subject]
    assert (mailed.to, body["receipt"]["url"] in mailed.body) == ([PERSON.email], True)
    assert api.get(body["receipt"]["url"]).status_code == 200
    erase = AuditRecord.objects.get(action="order.erase")
    assert (erase.order_ref, erase.actor_role, erase.client_ip) == (order.ref, "guest", None)
    assert audit_verify_database().problem is None
    again = api.delete(f"/api/v1/orders/{order.ref}/personal-data", HTTP_X_ORDER_TOKEN=token)
    assert (again.status_code, again.json()["code"]) == (409, "already_erased")


def test_a_paid_guest_order_is_not_erased_until_it_ships_and_an_unpaid_one_is_cancelled(api):
    from lab.catalog.demo import catalog_seed_demo

    catalog_seed_demo()
    paid, paid_token, _ = guest_order(api, key="guest-paid")
    pay(paid, event_id="evt_guest_paid")
    unpaid, unpaid_token, _ = guest_order(api, key="guest-unpaid")

    refused = api.delete(f"/api/v1/orders/{paid.ref}/personal-data", HTTP_X_ORDER_TOKEN=paid_token)
    erased = api.delete(f"/api/v1/orders/{unpaid.ref}/personal-data", HTTP_X_ORDER_TOKEN=unpaid_token)

    assert (refused.status_code, refused.json()["code"], refused.json()["orders"]) == (
        409,
        "erasure_blocked_by_open_orders",
        [paid.ref],
    )
    paid.refresh_from_db()
    assert (paid.is_anonymized, paid.guest_email) == (False, PERSON.email)
    assert (erased.status_code, erased.json()["order_cancelled"]) == (200, True)
    unpaid.refresh_from_db()
    assert (unpaid.status, unpaid.is_anonymized, unpaid.guest_email) == ("cancelled", True, "")


def test_a_guest_s_erased_order_keeps_no_seal_of_its_address(api, django_capture_on_commit_callbacks):
    # given a guest's unpaid order, its address sealed (an HMAC of the ref and the address under SECRET_KEY:
    # with a backup, a guessed address could be tested against it offline)
    from lab.catalog.demo import catalog_seed_demo

    catalog_seed_demo()
    order, token, _ = guest_order(api, key="guest-sealed")
    assert order.address_sealed != "" and order.address_is_sealed

    # when the guest erases the order's personal data
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/v1/orders/{order.ref}/personal-data", HTTP_X_ORDER_TOKEN=token)

    # then the seal went with the address (before: kept), and the empty address still counts as the lab's
    assert (response.status_code, response.json()["order_cancelled"]) == (200, True)
    order.refresh_from_db()
    assert (order.shipping_address, order.address_sealed, order.address_is_sealed) == ({}, "", True)
