"""A customer's journey for the privacy tests: one who registers, uploads, orders and pays through the API,
orders taken through real production on a hot-folder printer, packed and shipped at the packing station; and
where personal data could linger (blobs, every table)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Model, QuerySet
from rest_framework.test import APIClient

from lab.accounts.email_change import email_change_tokens
from lab.accounts.models import User
from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import Asset, Order
from lab.packing import station
from lab.packing.services import packing_slip_render
from lab.privacy.models import BlobDeletion
from lab.production import rasterizing, routing, submission, tracking
from lab.production.models import Printer, PrintJob
from printers.hotfolder_device import process_pending
from tests.builders.packing_station import station_token
from tests.builders.people import person
from tests.builders.production import WORKER, hotfolder_printer
from tests.support.images import jpeg_bytes
from tests.support.stripe_server import signed_event

PERSON_PASSWORD = "a long privacy secret 42"
SKU = "PRINT-4X6-GLOSSY"


@dataclass(frozen=True)
class Person:
    full_name: str
    email: str
    line1: str
    line2: str
    city: str
    postal_code: str

    @property
    def address(self) -> dict[str, str]:
        return {
            "name": self.full_name,
            "line1": self.line1,
            "line2": self.line2,
            "city": self.city,
            "region": "OR",
            "postal_code": self.postal_code,
            "country": "US",
        }

    @property
    def photo_name(self) -> str:
        return f"{self.full_name} at Lake Obscura.jpg"

    @property
    def needles(self) -> list[str]:
        """What must never be found after erasure (or in a log line), lower-cased."""
        return [
            value.lower()
            for value in (self.full_name, self.email, self.line1, self.line2, self.city, self.photo_name)
        ]


PERSON = Person(
    full_name="Wilhelmina Quarrington",
    email="wilhelmina.quarrington@example.org",
    line1="4417 Cyanotype Crescent",
    line2="Darkroom Flat 9B",
    city="Silverhalideton",
    postal_code="97999",
)


def registration_body(
    person: Person = PERSON, *, email: str | None = None, birth_date: str = "1984-02-29"
) -> dict[str, object]:
    """What `POST accounts` takes for `person` (another e-mail or birth date when given)."""
    return {
        "email": email or person.email,
        "password": PERSON_PASSWORD,
        "full_name": person.full_name,
        "address": person.address,
        "birth_date": birth_date,
        "privacy_policy_version": "1.0",
        "marketing_opt_in": True,
    }


def register(api: APIClient, person: Person = PERSON) -> str:
    response = api.post("/api/v1/accounts", registration_body(person), format="json")
    assert response.status_code == 201, response.json()
    token = str(response.json()["token"])
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return token


def email_change_confirmed(
    api: APIClient, address: str, *, password: str = PERSON_PASSWORD, client_ip: str = "127.0.0.1"
) -> None:
    """My Account's e-mail change by `api`'s signed-in customer, confirmed with the token mailed to the new
    address (the account's e-mail changes only then)."""
    moved = api.patch(
        "/api/v1/me", {"email": address, "current_password": password}, format="json", REMOTE_ADDR=client_ip
    )
    assert moved.status_code == 200, moved.json()
    token = email_change_tokens.make_token(User.objects.get(pending_email=address.lower()))
    confirmed = api.post("/api/v1/me/email/confirm", {"token": token}, format="json", REMOTE_ADDR=client_ip)
    assert confirmed.status_code == 200, confirmed.json()


def upload(api: APIClient, person: Person = PERSON) -> str:
    from django.core.files.uploadedfile import SimpleUploadedFile

    photo = SimpleUploadedFile(person.photo_name, jpeg_bytes(1800, 1200), content_type="image/jpeg")
    response = api.post("/api/v1/assets", {"file": photo}, format="multipart")
    assert (response.status_code, response.json()["status"]) == (201, "ready")
    return str(response.json()["id"])


def place_order(api: APIClient, *, asset_id: str, key: str, person: Person = PERSON) -> Order:
    catalog_seed_demo()
    response = api.post(
        "/api/v1/orders",
        {
            "items": [{"sku": SKU, "asset": asset_id, "copies": 2, "sizing": "fill"}],
            "shipping_method": "standard",
            "shipping_address": person.address,
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert response.status_code == 201, response.json()
    return Order.objects.get(ref=response.json()["ref"])


def guest_order_placed(api: APIClient, *, key: str, person: Person = PERSON) -> tuple[Order, str]:
    """A guest's photo (its file named after them) and unpaid order to their address, through the API: the
    order and its X-Order-Token."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    catalog_seed_demo()
    photo = SimpleUploadedFile(person.photo_name, jpeg_bytes(1800, 1200), content_type="image/jpeg")
    uploaded = api.post("/api/v1/assets", {"file": photo}, format="multipart")
    assert uploaded.status_code == 201, uploaded.json()
    created = api.post(
        "/api/v1/orders",
        {
            "items": [{"sku": SKU, "asset": uploaded.json()["id"], "copies": 1, "sizing": "fill"}],
            "shipping_method": "standard",
            "shipping_address": person.address,
            "guest": {"email": person.email, "birth_date": "1984-02-29", "privacy_policy_version": "1.0"},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert created.status_code == 201, created.json()
    return Order.objects.get(ref=created.json()["ref"]), str(created.json()["guest_token"])


def pay(order: Order, *, event_id: str) -> None:
    """Stripe's signed payment_intent.succeeded, delivered to the webhook endpoint by an anonymous client."""
    payload, header = signed_event(
        event_type="payment_intent.succeeded",
        data_object={
            "id": order.payment_intent_id,
            "object": "payment_intent",
            "amount": order.total_minor,
            "amount_received": order.total_minor,
            "metadata": {"order_ref": order.ref},
        },
        secret=settings.STRIPE_WEBHOOK_SECRET,
        event_id=event_id,
    )
    response = APIClient().post(
        "/api/v1/webhooks/stripe", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert (response.status_code, response.json()["outcome"]) == (200, "paid")


def minilab() -> Printer:
    return Printer.objects.filter(name="minilab").first() or hotfolder_printer(
        "minilab", sizes=["4x6", "8x10"]
    )


def print_order(order: Order) -> Order:
    """Release, rasterize, submit to the hot folder, let the device print, poll: ready to pack."""
    printer = minilab()
    routing.order_release(order_id=order.pk)
    for job in PrintJob.objects.filter(order=order):
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    process_pending(folder=Path(settings.HOTFOLDER_ROOT) / printer.target, delay_seconds=0)
    tracking.printer_poll()
    order.refresh_from_db()
    assert order.status == "ready_to_pack"
    packing_slip_render(order_id=order.pk)
    return order


def pack_and_ship(order: Order) -> Order:
    packer = person("packer")
    for item in order.items.all():
        seen = station_token(order, packer=packer, position=item.position)
        station.item_confirm(
            code=order.ref, position=item.position, copies_counted=item.copies, actor=packer, seen=seen
        )
    station.order_pack(code=order.ref, actor=packer, seen=station_token(order, packer=packer, step="pack"))
    # A tracking number names one parcel (unique): each order's own.
    tracking_number = f"1Z999AA1{order.pk:010d}"
    seen = station_token(order, packer=packer, step="ship")
    station.order_ship(
        code=order.ref, actor=packer, carrier="ups", tracking_number=tracking_number, seen=seen
    )
    order.refresh_from_db()
    return order


def blob_path(name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "blobs" / name[:2] / name


def blobs_no_row_names() -> set[str]:
    """The vault's files (a file's or a folder's name in a shard, as vault_write makes them) that no photo,
    job or BlobDeletion row names: nothing would ever delete them, and a raster decrypts under its photo's
    live key."""
    on_disk = {
        path.name for path in (Path(settings.MEDIA_ROOT) / "blobs").glob("*/*") if len(path.name) == 32
    }
    named = (
        set(Asset.objects.values_list("blob_name", flat=True))
        | set(PrintJob.objects.values_list("raster_blob", flat=True))
        | set(BlobDeletion.objects.values_list("name", flat=True))
    )
    return on_disk - named


def database_text() -> str:
    """Every value of every row of every table, as one lower-cased text (bytes decoded as Latin-1)."""
    chunks: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview | bytes):
                        chunks.append(bytes(value).decode("latin-1"))
                    elif isinstance(value, dict | list):
                        chunks.append(json.dumps(value, ensure_ascii=False))
                    else:
                        chunks.append(str(value))
    return "\n".join(chunks).lower()


# --- a restore from a backup, for chosen rows ---------------------------------------------------------------

RowsSnapshot = list[tuple[type[Model], dict[str, Any]]]


def rows_snapshot(querysets: Iterable[QuerySet[Any]]) -> RowsSnapshot:
    """The rows of the querysets as they are now, every column: what a backup taken now holds of them."""
    return [(queryset.model, dict(row)) for queryset in querysets for row in queryset.values()]


def rows_restore(snapshot: RowsSnapshot) -> None:
    """A database restore from the backup `snapshot` stands for, for its rows, inside the test's transaction
    (the drill, tests/deploy/test_restore_drill.py, restores a real pg_dump): each row written back as it was,
    and re-created when it was deleted since."""
    for model, row in snapshot:
        pk_name = model._meta.pk.attname
        values = {name: value for name, value in row.items() if name != pk_name}
        if not model._default_manager.filter(pk=row[pk_name]).update(**values):
            model._default_manager.create(**row)
