"""GET /api/v1/me/export: everything held about the customer, and every employee view of their photos by
role, date and purpose — never the employee's id, name, IP or words; other customers' data never."""

from __future__ import annotations

import json

import pytest

from lab.audit.models import AuditRecord
from lab.audit.records import RequestMeta
from lab.gate import access as gate
from lab.notify.models import WebhookEndpoint
from lab.orders.models import Order
from lab.production import rasterizing, routing
from lab.production.models import PrintJob
from tests.builders import PERSON, WORKER, Person, UserFactory, minilab, pay, place_order, register, upload

pytestmark = pytest.mark.django_db
STAFF_META = RequestMeta(client_ip="10.9.8.7", user_agent="FloorTablet/3", request_id="req-staff")
SECRET = "whsec_do_not_export_" + "x" * 20


def view(user, job: PrintJob, *, purpose: str = "printing"):
    return gate.image_access(
        user=user,
        request=gate.AccessRequest(
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
    with pytest.raises(gate.AccessDenied):  # refused: nothing was shown, so it is not a view
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
