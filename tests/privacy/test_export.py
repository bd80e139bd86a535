"""GET /api/v1/me/export: everything held about the customer, and every employee view of their photos by
role, date and purpose — never the employee's id, name, IP or words; other customers' data never."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from lab.accounts import services
from lab.accounts.models import AccountMail, User
from lab.audit.models import AuditRecord
from lab.audit.records import RequestMeta
from lab.customer_data.export import account_export
from lab.customer_data.models import PrivacyReceipt
from lab.customer_data.receipts import receipt_issue, receipt_url
from lab.gate import access as gate
from lab.gate.refusals import AccessDenied
from lab.gate.rules import AccessRequest
from lab.notify.account_mails import account_mail_send
from lab.notify.delivery import webhook_deliver
from lab.notify.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from lab.notify.services import notify_order_status_changed
from lab.notify.webhooks import webhook_endpoint_create
from lab.orders.models import Order
from lab.production import models as production_models
from lab.production import rasterizing, routing
from lab.production.models import PERSONAL_JOB_EVENT_KINDS, PrintJob
from tests.builders import (
    PASSWORD,
    PERSON,
    WORKER,
    Person,
    UserFactory,
    minilab,
    new_customer,
    order_move,
    order_pay,
    order_with_items,
    pack_and_ship,
    pay,
    place_order,
    print_order,
    register,
    upload,
)
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db
STAFF_META = RequestMeta(client_ip="10.9.8.7", user_agent="FloorTablet/3", request_id="req-staff")
SECRET = "whsec_do_not_export_" + "x" * 20


def view(user, job: PrintJob, *, purpose: str = "printing"):
    return gate.image_access(
        user=user,
        request=AccessRequest(
            asset_id=str(job.item.asset_id),
            purpose=purpose,
            justification="checking the crop before printing",
            context_type="print_job",
            context_id=str(job.pk),
        ),
        meta=STAFF_META,
    )


@pytest.mark.usefixtures("stripe_api")  # orders are placed through the API: PaymentIntents
def test_export_holds_profile_consents_orders_photos_endpoints_and_employee_views_by_role(api):
    register(api)
    asset_id = upload(api)
    order = place_order(api, asset_id=asset_id, key="export-1")
    pay(order, event_id="evt_export_1")
    minilab()
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.select_related("item").get(order=order)
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)  # a system read: not an employee view
    technician = UserFactory.create(
        roles=["technician"], full_name="Tobias Fixerbath", email="tobias.f@lab.example"
    )
    view(technician, job)
    packer = UserFactory.create(roles=["packer"])
    with pytest.raises(AccessDenied):  # refused: nothing was shown, so it is not a view
        view(packer, job)
    assert api.get(f"/api/v1/assets/{asset_id}/content").status_code == 200  # the owner's own download
    customer = order.customer
    assert customer is not None
    WebhookEndpoint.objects.create(
        owner=customer, url="https://hooks.example.net/lab", secret=SECRET, event_types=["order.shipped"]
    )
    other = UserFactory.create()
    other_order = Order.objects.create(
        customer=other,
        shipping_address={"name": other.full_name},
        shipping_method="standard",
        subtotal_minor=0,
        shipping_minor=0,
        total_minor=0,
        currency="usd",
    )

    response = api.get("/api/v1/me/export")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store, private"
    body = response.json()
    assert body["format"] == "printlab.export.v1"
    assert body["profile"] | {"date_joined": None, "last_login": None} == {
        "id": str(customer.public_id),
        "email": PERSON.email,
        "pending_email": "",
        "full_name": PERSON.full_name,
        "address": PERSON.address,
        "marketing_opt_in": True,
        "date_joined": None,
        "last_login": None,
    }
    assert [(c["kind"], c["granted"], c["policy_version"]["version"]) for c in body["consents"]] == [
        ("privacy_policy", True, "1.0"),
        ("marketing", True, "1.0"),
    ]
    [exported_order] = body["orders"]
    assert (exported_order["ref"], exported_order["status"], exported_order["shipping_address"]) == (
        order.ref,
        "in_production",
        PERSON.address,
    )
    assert [(i["sku"], i["photo"], i["copies"]) for i in exported_order["items"]] == [
        ("PRINT-4X6-GLOSSY", asset_id, 2)
    ]
    assert [(e["kind"], e["to_status"]) for e in exported_order["timeline"]] == [
        ("created", "awaiting_payment"),
        ("status_changed", "paid"),
        ("status_changed", "in_production"),
    ]
    assert [(p["id"], p["status"], p["width_px"], p["height_px"]) for p in body["photos"]] == [
        (asset_id, "ready", 1800, 1200)
    ]
    assert [(w["url"], w["event_types"]) for w in body["webhook_endpoints"]] == [
        ("https://hooks.example.net/lab", ["order.shipped"])
    ]
    [seen] = body["photo_views"]
    assert {key: value for key, value in seen.items() if key != "at"} == {
        "action": "image.view.preview",
        "purpose": "printing",
        "viewer_role": "technician",
        "photo": asset_id,
        "order": order.ref,
    }
    recorded = AuditRecord.objects.get(action="image.view.preview")
    assert seen["at"] == recorded.occurred_at.isoformat().replace("+00:00", "Z")
    text = json.dumps(body)
    for never in (
        SECRET,
        str(technician.public_id),
        "Tobias Fixerbath",
        "tobias.f@lab.example",
        "10.9.8.7",
        "FloorTablet",
        "checking the crop",
        other_order.ref,
        other.email,
    ):
        assert never not in text
    export_record = AuditRecord.objects.get(action="account.export")
    assert (export_record.actor_id, export_record.actor_role, export_record.client_ip) == (
        str(customer.public_id),
        "customer",
        None,
    )


def test_export_needs_a_logged_in_customer(api):
    response = api.get("/api/v1/me/export")

    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")
    assert not AuditRecord.objects.exists()


def test_export_of_a_customer_without_orders_is_complete_and_empty(api):
    register(api, Person("Ottilie Bromide", "ottilie@example.org", "1 Fix Row", "", "Stopbath", "10001"))

    body = api.get("/api/v1/me/export").json()

    assert (body["orders"], body["photos"], body["webhook_endpoints"], body["photo_views"]) == (
        [],
        [],
        [],
        [],
    )
    assert body["profile"]["full_name"] == "Ottilie Bromide"


# --- the rows the lab keeps about their orders: e-mails, receipts, webhooks, print jobs, idempotency keys ---

WEBHOOK_EVENTS = ["order.status_changed", "order.shipped"]


@pytest.fixture
def unreachable_webhooks(settings) -> None:
    """Webhooks may go to a loopback port nobody listens on: each attempt is refused, and logged."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_ALLOW_HTTP = True


def closed_port_endpoint(owner: User) -> WebhookEndpoint:
    url = f"http://127.0.0.1:{free_port()}/hooks/lab"
    return webhook_endpoint_create(owner=owner, url=url, event_types=WEBHOOK_EVENTS)


def told_of_shipping(order: Order) -> PrivacyReceipt:
    """The shipped order's e-mail, its webhooks (each tried once: refused) and its privacy receipt."""
    notify_order_status_changed(order_id=order.pk, status="shipped")
    for delivery_id in WebhookDelivery.objects.filter(event__order=order).values_list("pk", flat=True):
        webhook_deliver(delivery_id=str(delivery_id))
    receipt = receipt_issue(order=order, reason="shipped", mail=False)
    assert receipt is not None
    return receipt


def shipped_order_of(customer: User) -> Order:
    """A paid order of the customer's, released to the floor (its print jobs made), packed and shipped."""
    order = order_pay(order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], customer=customer))
    minilab()
    routing.order_release(order_id=order.pk)
    return order_move(order, "ready_to_pack", "packed", "shipped", shipped_at=timezone.now())


@pytest.mark.usefixtures("stripe_api", "unreachable_webhooks")
def test_export_holds_the_emails_receipts_webhook_logs_jobs_and_keys_of_their_orders_and_no_one_elses(api):
    # given a customer with a webhook endpoint and an order placed through the API, printed and shipped, its
    # shipping e-mail sent, its webhooks tried (refused) and its privacy receipt issued
    register(api)
    customer = User.objects.get(email=PERSON.email)
    endpoint = closed_port_endpoint(customer)
    order = place_order(api, asset_id=upload(api), key="export-rows-1")
    pay(order, event_id="evt_export_rows_1")
    pack_and_ship(print_order(order))
    receipt = told_of_shipping(order)
    # and another customer with the same kinds of rows
    other = new_customer()
    other_endpoint = closed_port_endpoint(other)
    other_order = shipped_order_of(other)
    other_receipt = told_of_shipping(other_order)

    body = api.get("/api/v1/me/export").json()

    assert [(n["order"], n["kind"], n["order_status"], n["status"]) for n in body["notifications"]] == [
        (order.ref, "status_changed", "shipped", "sent")
    ]
    assert body["notifications"][0]["sent_at"] is not None
    assert [(r["id"], r["order"], r["reason"], r["url"]) for r in body["privacy_receipts"]] == [
        (str(receipt.pk), order.ref, "shipped", receipt_url(receipt))
    ]
    events = WebhookEvent.objects.filter(order=order).order_by("sequence")
    assert [(e["id"], e["event_type"], e["body"]) for e in body["webhook_events"]] == [
        (str(event.pk), event.event_type, event.body) for event in events
    ]
    assert sorted(d["event_type"] for d in body["webhook_deliveries"]) == sorted(WEBHOOK_EVENTS)
    for delivery in body["webhook_deliveries"]:
        assert (delivery["endpoint"], delivery["attempt_count"]) == (str(endpoint.pk), 1)
        [attempt] = delivery["attempts"]
        assert (attempt["number"], attempt["status_code"], attempt["is_success"]) == (1, None, False)
        assert attempt["error_code"] == delivery["last_error_code"] != ""
    assert [(j["order"], j["copies"]) for j in body["print_jobs"]] == [(order.ref, 2)]
    assert body["print_jobs"][0]["events"][0]["kind"] == "created"
    assert [(k["key"], k["order"]) for k in body["idempotency_keys"]] == [("export-rows-1", order.ref)]
    [photo] = body["photos"]
    assert (photo["failure_code"], photo["failure_message"]) == ("", "")
    assert "icc_description" in photo
    text = json.dumps(body)
    for never in (
        endpoint.secret,
        other_endpoint.secret,
        receipt.token_hash,
        other_order.ref,
        str(other_receipt.pk),
        str(other_endpoint.pk),
        *(str(pk) for pk in WebhookEvent.objects.filter(order=other_order).values_list("pk", flat=True)),
        *(
            str(pk)
            for pk in WebhookDelivery.objects.filter(endpoint=other_endpoint).values_list("pk", flat=True)
        ),
    ):
        assert never not in text


@pytest.mark.usefixtures("unreachable_webhooks")
def test_the_export_reads_a_fixed_number_of_queries_however_many_orders_were_told_of():
    customer = new_customer()
    closed_port_endpoint(customer)
    told_of_shipping(shipped_order_of(customer))
    with CaptureQueriesContext(connection) as one_order:
        account_export(user=customer)
    told_of_shipping(shipped_order_of(customer))

    with CaptureQueriesContext(connection) as two_orders:
        second = account_export(user=customer)

    assert len(second["webhook_deliveries"]) == 4 and len(second["print_jobs"]) == 2
    assert len(two_orders.captured_queries) == len(one_order.captured_queries)


def test_the_job_notes_exported_are_those_erasure_rewrites():
    # one set, in lab.production.models, read by both erasure and the export (before, two copies kept equal)
    written_in_people_s_words = {production_models.JOB_CANCELLED, production_models.JOB_REPRINT_REQUESTED}
    assert written_in_people_s_words == PERSONAL_JOB_EVENT_KINDS


def test_the_export_lists_the_account_mails_with_the_earlier_address_only_while_one_is_held():
    # given a customer who asked for a new address (its token mailed) and changed their password, its notice
    # to the address the account has still owed (the mail server down, say)
    customer = new_customer(email="ada@example.org")
    services.customer_update(
        user=User.objects.get(pk=customer.pk), email="ada.new@example.org", current_password=PASSWORD
    )
    confirmation = AccountMail.objects.get(user=customer, kind="email_confirmation")
    assert account_mail_send(account_mail_id=confirmation.pk)
    services.customer_update(
        user=User.objects.get(pk=customer.pk), current_password=PASSWORD, new_password="a brand new secret 42"
    )

    # when they export their data
    exported = account_export(user=User.objects.get(pk=customer.pk))["account_mails"]

    # then both mails are listed; the notice with the address it is owed to (theirs), the sent one with none.
    # Before, the export had no account mails, and an unsent notice held an address it did not show.
    assert [(row["kind"], row["status"], row["recipient"], row["sent_at"] is None) for row in exported] == [
        ("email_confirmation", "sent", None, False),
        ("password_changed_notice", "pending", "ada@example.org", True),
    ]
    assert all(row["created_at"] for row in exported)
