"""No view but the audit gate's returns customer image bytes to a person; no module but the gate and the
production pipeline decrypts photos."""

from __future__ import annotations

import ast
import base64
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import time
from pathlib import Path
from typing import cast

import pytest
from django.contrib.auth import SESSION_KEY
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from lab.catalog.models import Product
from lab.lib.decoders import HEIC_BRANDS
from lab.orders.models import Order
from lab.privacy.vault import vault_read
from lab.production import rasterizing, routing
from lab.production.models import PrintJob
from tests.builders import WORKER, UserFactory, hotfolder_printer, paid_order, print_order
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
# HEAD runs a view's GET (DRF and Django's generic views answer it with their GET handler, the gate included)
# and answers its headers alone: an image's Content-Type, no bytes.
IMAGE_ANSWERS_ALLOWED |= {(name, "HEAD") for name, method in IMAGE_ANSWERS_ALLOWED if method == "GET"}
# The owner's image answers the walk must see (a walk that saw no image would prove nothing); the staff view
# refuses a request that names no purpose.
OWNER_IMAGE_ANSWERS = {
    (name, method) for name, method in IMAGE_ANSWERS_ALLOWED if name != "staff-photo" and method != "HEAD"
}
# Every method, each over every route before the next: the destructive ones (DELETE erases an account and its
# photos) come last, so they cannot take the photo away before the views that could show it are asked.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# 2xx answers the walk gets per method, a little under today's (GET 63, HEAD 39, POST 20, PUT 16, PATCH 16,
# DELETE 15, alone or after other tests: the admin's object pages are filled with real objects of their model;
# most of the other methods' are the lab admin's pages, which answer any method; the views that take GET alone
# refuse HEAD). Fewer means routes stopped reaching their views (a refusal or a 404 checks nothing): give the
# walk the values they need.
MIN_SUCCESSFUL_ANSWERS = {"GET": 60, "HEAD": 36, "POST": 18, "PUT": 14, "PATCH": 14, "DELETE": 13}
# HEIF (HEIC, AVIF): an ISO box whose bytes 4..8 are "ftyp", then the major brand.
HEIF_BRANDS = frozenset(b"heic heix heim heis hevc hevx hevm hevs mif1 msf1 avif".split()) | HEIC_BRANDS
# An image's signature anywhere in a body: a page, a JSON answer or a PDF that carries one inside is as good
# as the image itself (text bodies hold neither these bytes nor a NUL; a signature is long enough that the
# compressed streams of a PDF do not make one by chance).
IMAGE_SIGNATURE = re.compile(
    rb"\xff\xd8\xff[\xc0-\xfe]"  # JPEG: start of image, then the first segment's marker
    rb"|\x89PNG\r\n\x1a\n"
    rb"|II\*\x00|MM\x00\*|II\+\x00|MM\x00\+"  # TIFF and BigTIFF, both byte orders
    rb"|RIFF[\x00-\xff]{4}WEBP"
    rb"|GIF8[79]a"
    rb"|ftyp(?:" + b"|".join(re.escape(brand) for brand in sorted(HEIF_BRANDS)) + rb")",
)
DATA_IMAGE_URL = re.compile(rb"data:image/", re.IGNORECASE)


def image_needles(*images: bytes) -> frozenset[bytes]:
    """What a body that carries one of `images` holds, however it is written: the first 48 bytes (the start
    of a whole file in any base64 of it, whatever follows), as they are and in base64 of either alphabet."""
    heads = [image[:48] for image in images]
    assert all(len(head) == 48 for head in heads)
    return frozenset(
        encoded
        for head in heads
        for encoded in (head, base64.b64encode(head), base64.urlsafe_b64encode(head))
    )


def is_image(body: bytes, needles: frozenset[bytes] = frozenset()) -> bool:
    """Whether a body carries an image: an image's signature at any offset, a `data:image/` URL, or the start
    of one of the test's photos or rasters (`image_needles`) as bytes or base64."""
    return (
        IMAGE_SIGNATURE.search(body) is not None
        or DATA_IMAGE_URL.search(body) is not None
        or any(needle in body for needle in needles)
    )


def photo_and_raster(job: PrintJob) -> list[bytes]:
    """A job's photo as the vault holds it (the plaintext), and its raster when it still has one."""
    asset = job.item.asset
    images = [vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")]
    if job.raster_blob:
        images.append(vault_read(data_key=asset.data_key, name=job.raster_blob, purpose="raster"))
    return images


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


def test_the_walk_sees_an_image_anywhere_in_a_body():
    # given a photo, and bodies that carry it (or another image) past their first bytes
    photo = jpeg_bytes(60, 40)
    webp = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(32)
    encoded = base64.b64encode(photo).decode()
    carriers = {
        "a page with an inline image": f'<html><img src="data:image/jpeg;base64,{encoded}"></html>'.encode(),
        "a data URL in capitals": b"<img src='DATA:IMAGE/PNG;base64,AAAA'>",
        "JSON with the photo in base64": json.dumps({"id": 1, "preview": encoded}).encode(),
        "JSON with the photo in URL-safe base64": json.dumps(
            {"preview": base64.urlsafe_b64encode(photo).decode()}
        ).encode(),
        "a PDF with a JPEG inside": b"%PDF-1.4\n1 0 obj <<>> stream\n" + photo + b"\nendstream",
        "a ZIP with a PNG stored": b"PK\x03\x04" + bytes(26) + png_bytes(20, 20),
        "a TIFF after a header": b"x" * 100 + tiff_bytes(20, 20),
        "a WebP after a header": b"x" * 7 + webp,
        "a HEIC after a header": b"x" * 3 + heic_with_brand(b"heic", 64, 48),
    }

    # when the walk's check reads each, knowing the photo's start
    needles = image_needles(photo)

    # then it takes every one for an image, and text without one for none
    assert [name for name, body in carriers.items() if not is_image(body, needles)] == []
    assert not is_image(json.dumps({"id": 1, "status": "printed", "note": "image/jpeg"}).encode(), needles)


# Every route with every method as each person: about 100 s on a quiet machine, over 300 s (the suite's
# timeout) on one held by other test runs.
@pytest.mark.timeout(900)
def test_only_gate_views_return_image_bytes():
    # given an order printed and ready to pack (its slip rendered: the packing slip PDF is answered), a
    # rasterized job of a customer's photo, a person with every staff role, and the customer
    hotfolder_printer("minilab", sizes=["4x6"])
    ready = print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)], photo=(900, 600)))
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get(order=order)
    rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    job.refresh_from_db()
    assert Order.objects.get(pk=ready.pk).status == "ready_to_pack" and job.raster_blob
    # The start of each photo and raster of the test: the walk finds them in a body as bytes or base64.
    needles = image_needles(*photo_and_raster(job), *photo_and_raster(PrintJob.objects.get(order=ready)))
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
    # The packing station's routes name the order ready to pack (a slip is served for no other).
    packing = {"ref": ready.ref, "order_id": str(ready.pk)}
    # A body that makes a proof of the customer's photo where a view takes one (`POST proofs`).
    body = {"sku": "PRINT-4X6-LUSTRE", "asset": asset_id, "sizing": "fill"}
    staff = UserFactory.create(roles=["technician", "packer", "supervisor", "auditor", "admin"])
    assert order.customer is not None
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
    slips: list[bytes] = []
    routes = all_patterns()
    # One client per person, signed in again only after a request signed them out (a sign-out view, an
    # erasure): a sign-in per request was a third of the walk's time.
    clients = [(person, Client(raise_request_exception=False)) for person in people]
    for method in METHODS:
        for route, name, _ in routes:
            model = "/".join(route.removeprefix("lab/admin/").split("/")[:2])
            route_values = values | (packing if route.startswith("lab/packing/") else {})
            url = concrete(route, route_values | {"object_id": admin_objects.get(model, values["default"])})
            for person, client in clients:
                if SESSION_KEY not in client.session:
                    client.force_login(person)
                response = client.generic(method, url, json.dumps(body), content_type="application/json")
                answer = body_of(response)
                if response.get("Content-Type", "").startswith("image/") or is_image(answer, needles):
                    images.setdefault((name, method), []).append(url)
                successes[method] += 200 <= response.status_code < 300
                if name == "staff:slip" and method == "GET" and response.status_code == 200:
                    slips.append(answer)

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
    # ... the packing slip among them, a PDF
    assert [slip[:5] for slip in slips] == [b"%PDF-"], successes


# What reads a photo's plaintext, or the keys that decrypt it, and the modules that may use each name: the
# vault and its crypto, the gate, the production pipeline, and the master key's rotation (it wraps, never
# reads).
VAULT = "lab/privacy/vault.py"
CRYPTO = "lab/privacy/crypto.py"
DECRYPTING_NAMES = {
    "vault_read": {
        VAULT,
        "lab/gate/access.py",
        "lab/gate/owner.py",
        "lab/production/rasterizing.py",
        "lab/production/submission.py",
    },
    "decrypt_blob": {CRYPTO, VAULT},
    "unwrap_data_key": {CRYPTO, VAULT},
    "_plain_key": {VAULT},
    "master_key_by_id": {CRYPTO, VAULT},
    "master_keys": {CRYPTO},
    "_master_keys": {CRYPTO},
    "current_master_key": {CRYPTO, VAULT, "lab/privacy/management/commands/rotate_master_key.py"},
    "LAB_MASTER_KEYS": {CRYPTO},  # the settings hold the master keys themselves (lab/settings.py sets it)
}
PRIVACY_MODULES = {"lab.privacy.vault", "lab.privacy.crypto", "lab.privacy"}
SOURCE_FOLDERS = ("lab", "api", "workers", "printers", "scripts", "bench")


def decrypting_uses(source: str) -> set[str]:
    """The names of DECRYPTING_NAMES a module takes, under any alias: imported by name (`from ... import
    vault_read as read_photo`), read as an attribute (`vault.vault_read`, `crypto.decrypt_blob`), named in a
    string (`getattr(vault, "vault_read")`), or everything of the vault or crypto taken at once (`*`). A name
    the module defines or assigns for itself is none."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in DECRYPTING_NAMES:
                    found.add(alias.name)
                elif alias.name == "*" and node.module in PRIVACY_MODULES:
                    found.add("*")
        elif isinstance(node, ast.Attribute) and node.attr in DECRYPTING_NAMES:
            found.add(node.attr)
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in DECRYPTING_NAMES
        ):
            found.add(node.value)
    return found


def test_the_scan_finds_a_decrypting_name_under_any_alias():
    # given modules that reach the vault's reader or the keys in each way a module can
    modules = {
        "from lab.privacy.vault import vault_read as read_photo\nread_photo(name='x')": {"vault_read"},
        "from lab.privacy import vault as v\nv.vault_read(name='x')": {"vault_read"},
        "import lab.privacy.crypto\nlab.privacy.crypto.decrypt_blob(blob=b'')": {"decrypt_blob"},
        "from lab.privacy.crypto import unwrap_data_key as open_key": {"unwrap_data_key"},
        "from lab.privacy import vault\nkey = vault._plain_key(None)": {"_plain_key"},
        "from lab.privacy.vault import *": {"*"},
        "from lab.privacy import vault\nread = getattr(vault, 'vault_read')": {"vault_read"},
        "from django.conf import settings\nkeys = settings.LAB_MASTER_KEYS": {"LAB_MASTER_KEYS"},
        "from lab.privacy import crypto\ncrypto.master_key_by_id('k1')": {"master_key_by_id"},
    }

    # then the scan finds each, and nothing in a module that only writes or deletes blobs
    assert {source: decrypting_uses(source) for source in modules} == modules
    assert (
        decrypting_uses("from lab.privacy.vault import vault_delete, vault_write\n# vault_read(\n") == set()
    )


def test_only_the_gate_and_the_production_pipeline_decrypt_photos():
    # given every module of the project but its tests
    sources = [ROOT / name for name in ("manage.py", "gunicorn.conf.py")] + [
        path for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*.py")
    ]

    # when each is scanned for what reads a photo or a key
    uses = {
        (str(path.relative_to(ROOT)), name) for path in sources for name in decrypting_uses(path.read_text())
    }

    # then only the allowed modules use each, and the vault's reader is used by the gate and the pipeline
    assert sorted(use for use in uses if use[0] not in DECRYPTING_NAMES.get(use[1], set())) == []
    assert sorted(path for path, name in uses if name == "vault_read" and path != VAULT) == [
        "lab/gate/access.py",
        "lab/gate/owner.py",
        "lab/production/rasterizing.py",
        "lab/production/submission.py",
    ]


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
