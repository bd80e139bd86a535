"""No view but the audit gate's returns customer image bytes to a person; no module but the gate and the
production pipeline decrypts photos."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import time
from pathlib import Path
from typing import cast

import pytest
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import URLPattern, URLResolver, get_resolver

from lab.catalog.models import Product
from lab.lib.decoders import HEIC_BRANDS
from lab.production import rasterizing, routing
from lab.production.models import PrintJob
from tests.builders import WORKER, UserFactory, hotfolder_printer, paid_order
from tests.support.images import bigtiff_bytes, heic_with_brand, jpeg_bytes, png_bytes, tiff_bytes

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
# The only (url name, method) pairs that may answer image bytes: staff through the gate; owners through the
# gate as owner access (their photo, the proof of an ordered item, the proof of a quote item).
IMAGE_ANSWERS_ALLOWED = {
    ("staff-photo", "GET"),
    ("api:asset-content", "GET"),
    ("api:order-item-proof", "GET"),
    ("api:proofs", "POST"),
}
# The owner's image answers the walk must see (a walk that saw no image would prove nothing); the staff view
# refuses a request that names no purpose.
OWNER_IMAGE_ANSWERS = IMAGE_ANSWERS_ALLOWED - {("staff-photo", "GET")}
# Every method, each over every route before the next: the destructive ones (DELETE erases an account and its
# photos) come last, so they cannot take the photo away before the views that could show it are asked.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# 2xx answers the walk gets per method, a little under today's (GET 60, POST 20, PUT 16, PATCH 16, DELETE 15,
# alone or after other tests: the admin's object pages are filled with real objects of their model; most of
# the other methods' are the lab admin's pages, which answer any method). Fewer means routes stopped reaching
# their views (a refusal or a 404 checks nothing): give the walk the values they need.
MIN_SUCCESSFUL_ANSWERS = {"GET": 57, "POST": 18, "PUT": 14, "PATCH": 14, "DELETE": 13}
IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG",
    b"II*\x00",  # TIFF, and BigTIFF below, both byte orders
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
    b"RIFF",  # WebP
    b"GIF8",
)
# HEIF (HEIC, AVIF): an ISO box whose bytes 4..8 are "ftyp", then the major brand.
HEIF_BRANDS = frozenset(b"heic heix heim heis hevc hevx hevm hevs mif1 msf1 avif".split())


def is_image(body: bytes) -> bool:
    return body.startswith(IMAGE_MAGIC) or (body[4:8] == b"ftyp" and body[8:12] in HEIF_BRANDS)


def all_patterns(
    resolver: URLResolver | None = None, prefix: str = "", namespace: str = ""
) -> list[tuple[str, str, URLPattern]]:
    """Every route as (route, name with its namespaces, pattern)."""
    found: list[tuple[str, str, URLPattern]] = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += all_patterns(entry, prefix + str(entry.pattern), inner)
        else:
            found.append((prefix + str(entry.pattern), f"{namespace}{entry.name or ''}", entry))
    return found


def concrete(route: str, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        return values.get(name, values["default"])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, route).lstrip("^").rstrip("$")


def body_of(response: HttpResponseBase) -> bytes:
    if isinstance(response, StreamingHttpResponse):  # a test client's response is never async
        return b"".join(cast(Iterator[bytes], response.streaming_content))
    return cast(HttpResponse, response).content


def test_the_walk_sees_every_format_the_lab_takes_as_an_image():
    # given a photo of each format the lab takes, HEIC in every brand of the lab's one list
    photos = {
        "jpeg": jpeg_bytes(60, 40),
        "png": png_bytes(60, 40),
        "tiff": tiff_bytes(60, 40),
        "bigtiff": bigtiff_bytes(60, 40),
        **{f"heic-{brand.decode()}": heic_with_brand(brand, 64, 48) for brand in sorted(HEIC_BRANDS)},
    }

    # when the walk's check reads each, then it takes every one for an image
    assert [name for name, photo in photos.items() if not is_image(photo)] == []


# Every route with every method as each person: about 100 s on a quiet machine, over 300 s (the suite's
# timeout) on one held by other test runs.
@pytest.mark.timeout(900)
def test_only_gate_views_return_image_bytes(client):
    # given a rasterized job of a customer's photo, a person with every staff role, and the customer
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    asset_id = str(job.item.asset_id)
    values = {
        "asset_id": asset_id,
        "ref": order.ref,
        "position": "1",
        "job_id": str(job.pk),
        "pk": str(job.pk),
        "printer_id": str(job.printer_id),
        "order_id": str(order.pk),
        "variant": "preview",
        "endpoint_id": str(uuid.uuid4()),
        "delivery_id": str(uuid.uuid4()),
        "token_id": str(uuid.uuid4()),
        "receipt_id": str(uuid.uuid4()),
        "default": str(job.pk),
    }
    # A body that makes a proof of the customer's photo where a view takes one (`POST proofs`).
    body = {"sku": "PRINT-4X6-LUSTRE", "asset": asset_id, "sizing": "fill"}
    staff = UserFactory.create(roles=["technician", "packer", "supervisor", "auditor", "admin"])
    people = [staff, order.customer]
    # The lab admin's object pages, each with a real object of its model: filled with the job's id, they
    # reached their views only where that id happened to name one (pk 1 when the test ran alone, rarely after
    # other tests in the same process), so how many answered varied from run to run.
    admin_objects = {
        "catalog/product": str(Product.objects.get(sku="PRINT-4X6-LUSTRE").pk),
        "production/printer": str(job.printer_id),
        "accounts/user": str(staff.pk),
    }

    # when every route is asked with every method by each of them
    images: dict[tuple[str, str], list[str]] = {}
    successes: Counter[str] = Counter()
    routes = all_patterns()
    client.raise_request_exception = False  # a crash answers no image; it is not what this walk is about
    for method in METHODS:
        for route, name, _ in routes:
            model = "/".join(route.removeprefix("lab/admin/").split("/")[:2])
            url = concrete(route, values | {"object_id": admin_objects.get(model, values["default"])})
            for person in people:
                client.force_login(person)
                response = client.generic(method, url, json.dumps(body), content_type="application/json")
                if response.get("Content-Type", "").startswith("image/") or is_image(body_of(response)):
                    images.setdefault((name, method), []).append(url)
                successes[method] += 200 <= response.status_code < 300

    # then image bytes came only from the allowed views and methods ...
    assert set(images) <= IMAGE_ANSWERS_ALLOWED, images
    # ... the owner's did answer them (the walk sees images, of any method) ...
    assert set(images) >= OWNER_IMAGE_ANSWERS, images
    # ... and the walk reached the views (a refusal would prove nothing).
    short = {
        method: successes[method]
        for method, floor in MIN_SUCCESSFUL_ANSWERS.items()
        if successes[method] < floor
    }
    assert short == {}, successes


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
    for route, _, _ in all_patterns():
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
        body = body_of(response)
        content_type = response.get("Content-Type", "")
        # then none of them answers with image bytes ...
        assert not content_type.startswith("image/"), (url, content_type)
        assert not is_image(body), url
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
