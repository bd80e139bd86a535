"""No view but the audit gate's returns customer image bytes to a person; no module but the gate and the
production pipeline decrypts photos."""

from __future__ import annotations

import re
import uuid
from datetime import time
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from lab.production import rasterizing, routing
from lab.production.models import PrintJob
from tests.builders import WORKER, UserFactory, hotfolder_printer, paid_order

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
# Staff via the gate; owners via the gate as owner access (their photo, and the proof of an ordered item).
GATE_VIEWS = {"staff-photo", "asset-content", "order-item-proof"}
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"II*\x00", b"MM\x00*", b"RIFF")


def all_patterns(resolver: URLResolver | None = None, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            found += all_patterns(entry, prefix + str(entry.pattern))
        else:
            found.append((prefix + str(entry.pattern), entry))
    return found


def concrete(route: str, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        return values.get(name, values["default"])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, route).lstrip("^").rstrip("$")


def test_only_gate_views_return_image_bytes(client, settings):
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    values = {
        "asset_id": str(job.item.asset_id),
        "ref": order.ref,
        "job_id": str(job.pk),
        "pk": str(job.pk),
        "printer_id": str(job.printer_id),
        "order_id": str(order.pk),
        "variant": "preview",
        "endpoint_id": str(uuid.uuid4()),
        "delivery_id": str(uuid.uuid4()),
        "default": str(job.pk),
    }
    people = [
        UserFactory.create(roles=["technician", "packer", "supervisor", "auditor", "admin"]),
        order.customer,
    ]
    checked = []
    for route, pattern in all_patterns():
        if pattern.name in GATE_VIEWS:
            continue
        url = concrete(route, values)
        for person in people:
            client.force_login(person)
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            content_type = response.get("Content-Type", "")
            assert not content_type.startswith("image/"), (url, content_type)
            assert not body.startswith(IMAGE_MAGIC), url
        checked.append(url)
    assert len(checked) >= 15


def test_only_the_gate_and_the_production_pipeline_decrypt_photos():
    callers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("lab", "api", "workers", "printers")
        for path in (ROOT / folder).rglob("*.py")
        if "vault_read(" in path.read_text() and path.name != "vault.py"
    )

    assert callers == ["lab/gate/access.py", "lab/production/rasterizing.py", "lab/production/submission.py"]


def admin_urls(route_values: dict[str, dict[str, str]]) -> list[str]:
    """Every route of the lab admin, filled per model page with a real object of that model."""
    urls = []
    for route, _ in all_patterns():
        if not route.startswith("lab/admin/"):
            continue
        app_labels = re.search(r"\(\?P<app_label>([\w|]+)\)", route)
        if app_labels:  # the app index is a regex route over the registered apps
            urls += [f"/lab/admin/{label}/" for label in app_labels.group(1).split("|")]
            continue
        model = "/".join(route.removeprefix("lab/admin/").split("/")[:2])
        urls.append(concrete(route, route_values.get(model, route_values["default"])))
    return urls


def test_the_lab_admin_returns_no_image_bytes_and_registers_nothing_that_holds_them(client):
    from django.contrib.admin.models import LogEntry
    from django.contrib.auth.models import Group

    from lab.audit.models import StaffShift
    from lab.catalog.models import Product
    from lab.staff.admin.site import site

    # given a printed-ready job (raster and photo in the vault) and a lab admin
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    job.refresh_from_db()
    assert job.raster_blob
    admin = UserFactory.create(roles=["admin"])
    client.force_login(admin)
    client.post(  # a change, so the history pages have a LogEntry to show
        f"/lab/admin/production/printer/{job.printer_id}/change/",
        {
            "name": "minilab",
            "backend": "hotfolder",
            "target": "minilab",
            "media_sizes": "4x6",
            "papers": ["lustre"],
            "dpi": "300",
            "output_format": "jpeg",
        },
    )
    assert LogEntry.objects.count() == 1
    product = Product.objects.get(sku="PRINT-4X6-LUSTRE")
    shift = StaffShift.objects.create(
        user=UserFactory.create(roles=["technician"]), weekday=0, start_time=time(8), end_time=time(16)
    )
    objects = {
        "catalog/product": str(product.pk),
        "production/printer": str(job.printer_id),
        "accounts/user": str(admin.pk),
        "audit/staffshift": str(shift.pk),
    }
    route_values = {model: {"object_id": pk, "id": pk, "default": pk} for model, pk in objects.items()} | {
        "default": {"default": str(job.pk), "content_type_id": "1", "object_id": str(job.pk)}
    }

    # when every admin page is opened
    statuses = {}
    for url in admin_urls(route_values):
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        content_type = response.get("Content-Type", "")
        # then none of them answers with image bytes ...
        assert not content_type.startswith("image/"), (url, content_type)
        assert not body.startswith(IMAGE_MAGIC), url
        assert job.raster_blob.encode() not in body, url
        assert str(job.item.asset_id).encode() not in body, url
        statuses[url] = response.status_code

    # ... the pages really rendered (a refusal would prove nothing) ...
    for model, pk in objects.items():
        for page in ("change/", "history/"):
            assert statuses[f"/lab/admin/{model}/{pk}/{page}"] == 200, (model, page, statuses)
        assert statuses[f"/lab/admin/{model}/"] == 200
    assert statuses["/lab/admin/"] == 200
    # ... and only models without photo bytes or links to them are registered, with no file field.
    assert sorted(model._meta.label for model in site._registry) == [
        "accounts.User",
        "audit.StaffShift",
        "catalog.Product",
        "production.Printer",
    ]
    for registered, model_admin in site._registry.items():
        request = client.get("/lab/admin/").wsgi_request
        form = model_admin.get_form(request)
        kinds = {type(field).__name__ for field in form.base_fields.values()}
        assert not kinds & {"FileField", "ImageField"}, (registered, kinds)
    assert Group.objects.filter(name="admin").exists()
