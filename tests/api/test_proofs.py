"""Proofs (issue 14): a small sRGB JPEG of exactly what an item prints, for the photo's owner only, through
the gate as owner access, never kept by a cache; `POST proofs` before ordering, `GET orders/{ref}/items/
{position}/proof` after.

The tolerance: the proof is compared with the printer's raster (lab.production.raster at the printer's 300
DPI, converted to sRGB and downscaled to the proof's size with LANCZOS) by PSNR, which must be at least
35 dB. The proof is rendered at its own whole DPI, so the edges of the photo area (a border, fit margins)
land on whole pixels of a different grid: up to 1.5 proof pixels from where the downscaled raster puts them
(0.2 mm on paper). A band of 2 proof pixels either side of those edges is left out of the comparison;
everything else counts. Measured on the photo below: 39.3 dB at worst (4x6, fit with a 3 mm border; 33.4 dB
with the band counted), 42-45 dB without a border or margins; a proof of another crop scores 11.5 dB, one
without the colour conversion 24.9 dB. On a CMYK printer the proof is soft-proofed: 43-44 dB against that
printer's raster, where an sRGB proof scores 19 dB.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
from typing import Any

import pytest
from django.db import DatabaseError
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFilter, ImageStat

from lab.audit.models import AccessGrant, AuditRecord
from lab.catalog.demo import DEMO_SIZES
from lab.catalog.models import Paper
from lab.catalog.placement import CropRect, FocalPoint, PlacementOptions
from lab.orders.models import Asset, OrderItem
from lab.orders.photos import asset_create_from_upload
from lab.privacy.vault import vault_read
from lab.production.imaging.colour import SRGB_PROFILE, default_cmyk_profile
from lab.production.imaging.errors import DECODE_FAILED
from lab.production.raster import RasterError, RasterSpec, raster_placement, rasterize
from tests.builders import UserFactory, hotfolder_printer, order_move, order_pay, order_with_items

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo_catalog")]

PROBLEM = "application/problem+json"
PRINTER_DPI = 300  # the demo minilab's (Printer.dpi's default)
MIN_PSNR_DB = 35.0
EDGE_BAND_PX = 2
PHOTO_WIDTH, PHOTO_HEIGHT = 3200, 1800  # 16:9, the shape of no product: fill crops and focal points move
SKUS = [f"PRINT-{short}X{long}-{paper.value.upper()}" for short, long, _, _ in DEMO_SIZES for paper in Paper]


def _p3_profile() -> bytes:
    import pyvips

    probe = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").icc_export(output_profile="p3")
    return bytes(probe.get("icc-profile-data"))


@functools.cache
def _photo(*, with_profile: bool = True) -> bytes:
    """Smooth gradients and soft discs, tagged Display P3: a proof that skipped the colour conversion, or
    showed another part of the photo, would not pass for the print."""
    width, height = PHOTO_WIDTH, PHOTO_HEIGHT
    red = Image.linear_gradient("L").rotate(90).resize((width, height))
    green = Image.linear_gradient("L").resize((width, height))
    blue = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    step_x, step_y = width // 12, height // 8
    for column in range(12):
        for row in range(8):
            if (column + row) % 3 == 0:
                x, y = column * step_x, row * step_y
                colour = ((x * 7) % 256, (y * 5) % 256, (x + y) % 256)
                draw.ellipse((x + 10, y + 10, x + width // 14, y + height // 10), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(4))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **({"icc_profile": _p3_profile()} if with_profile else {}))
    return buffer.getvalue()


def _options_by_name(short: int, long: int) -> dict[str, dict[str, Any]]:
    """Every placement option, as an item of `POST quotes` sends it, on a product of short x long inches."""
    landscape_crop_height = (
        0.5 * PHOTO_WIDTH / (long / short) / PHOTO_HEIGHT
    )  # half the width, the paper's shape
    return {
        "fill": {},
        "crop_rectangle": {"crop": {"x": 0.3, "y": 0.2, "width": 0.5, "height": landscape_crop_height}},
        "focal_point": {"focal_point": {"x": 0.85, "y": 0.2}},
        "orientation_override": {"orientation": "portrait"},
        "border": {"border_mm": 8.0},
        "fit": {"sizing": "fit", "border_mm": 3.0},
    }


def _size_of(sku: str) -> tuple[int, int]:
    short, long = sku.split("-")[1].split("X")
    return int(short), int(long)


def _spec(*, short: int, long: int, dpi: int, fields: dict[str, Any]) -> RasterSpec:
    crop, focal_point = fields.get("crop"), fields.get("focal_point")
    return RasterSpec(
        width_in=short,
        height_in=long,
        dpi=dpi,
        sizing=fields.get("sizing", "fill"),
        output_format="tiff",
        placement=PlacementOptions(
            crop=CropRect(**crop) if crop else None,
            focal_point=FocalPoint(**focal_point) if focal_point else None,
            orientation=fields.get("orientation", "auto"),
            border_mm=fields.get("border_mm", 0.0),
        ),
    )


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()


def _to_srgb(image: Image.Image) -> Image.Image:
    """A raster in its own output profile, as a screen shows it: converted to sRGB (relative colorimetric)."""
    profile = image.info.get("icc_profile")
    if not profile or profile == SRGB_PROFILE:
        return image.convert("RGB")
    converted = ImageCms.profileToProfile(
        image,
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.ImageCmsProfile(io.BytesIO(SRGB_PROFILE)),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
    )
    assert converted is not None
    return converted


@functools.cache
def _printed(
    sku_size: tuple[int, int], option: str, proof_size: tuple[int, int]
) -> tuple[Image.Image, Image.Image]:
    """The printer's raster of the photo with an option (at 300 DPI, converted to sRGB) downscaled to the
    proof's size, and the mask of what is compared: all but a band at the photo area's edges (see the module
    docstring). Papers print alike, so one per size and option."""
    short, long = sku_size
    spec = _spec(short=short, long=long, dpi=PRINTER_DPI, fields=_options_by_name(short, long)[option])
    printed = _to_srgb(_decode(rasterize(data=_photo(), spec=spec).data))
    area = raster_placement(
        spec=spec, photo_width=PHOTO_WIDTH, photo_height=PHOTO_HEIGHT, orientation=1
    ).photo_area
    scale = proof_size[0] / printed.width
    mask = Image.new("L", proof_size, 255)
    ImageDraw.Draw(mask).rectangle(
        (
            round(area.x * scale) - EDGE_BAND_PX,
            round(area.y * scale) - EDGE_BAND_PX,
            round((area.x + area.width) * scale) + EDGE_BAND_PX - 1,
            round((area.y + area.height) * scale) + EDGE_BAND_PX - 1,
        ),
        outline=0,
        width=2 * EDGE_BAND_PX,
    )
    return printed.resize(proof_size, Image.Resampling.LANCZOS), mask


def _psnr(first: Image.Image, second: Image.Image, *, mask: Image.Image | None = None) -> float:
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    counted = first.width * first.height
    if mask is not None:
        difference = Image.composite(difference, Image.new("RGB", difference.size), mask)
        counted = round(ImageStat.Stat(mask).sum[0] / 255)
    histogram = difference.histogram()
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (counted * 3)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _matches_the_print(proof: Image.Image, sku_size: tuple[int, int], option: str) -> float:
    """PSNR of the proof against the printer's raster downscaled to it, outside the photo area's edges."""
    reference, mask = _printed(sku_size, option, proof.size)
    return _psnr(proof, reference, mask=mask)


@pytest.fixture
def photo(customer) -> Asset:
    return asset_create_from_upload(owner=customer, data=_photo())


def _proof(api, asset: Asset, sku: str, **fields: Any):
    item = {"sku": sku, "asset": str(asset.pk), **fields}
    return api.post("/api/v1/proofs", item, format="json")


def _expected_size(short: int, long: int, fields: dict[str, Any]) -> tuple[int, int]:
    """The whole DPI that keeps the long side at most 1000 px; every option here prints landscape but the
    portrait override (the 16:9 photo, its landscape crop and its fit all have their long side across)."""
    dpi = 1000 // long
    width, height = round(long * dpi), round(short * dpi)
    return (height, width) if fields.get("orientation") == "portrait" else (width, height)


@pytest.mark.parametrize("sku", SKUS)
def test_the_owners_proof_of_every_option_is_the_print_downscaled(api, photo, sku):
    # given the owner's photo and a product of the catalog
    short, long = _size_of(sku)

    for option, fields in _options_by_name(short, long).items():
        # when the owner asks for the proof of the item with that option
        response = _proof(api, photo, sku, copies=3, **fields)

        # then it is a JPEG of the print's shape, at most 1000 px long, in sRGB, never kept by a cache ...
        assert response.status_code == 200, (option, response.content[:300])
        assert response["Content-Type"] == "image/jpeg"
        assert response["Cache-Control"] == "private, no-store"
        assert response["X-Content-Type-Options"] == "nosniff"
        proof = _decode(response.content)
        assert (Image.open(io.BytesIO(response.content)).format, proof.mode) == ("JPEG", "RGB")
        assert proof.size == _expected_size(short, long, fields), option
        assert max(proof.size) <= 1000
        assert proof.info["icc_profile"] == SRGB_PROFILE
        # ... and it is what the printer prints, downscaled (the tolerance: see the module docstring)
        assert _matches_the_print(proof, (short, long), option) >= MIN_PSNR_DB, option


def test_the_tolerance_tells_a_wrong_proof_from_the_right_one():
    # given the printer's raster of a crop on 4x6, and renders that differ from it the way a bug would
    spec = _spec(short=4, long=6, dpi=166, fields=_options_by_name(4, 6)["crop_rectangle"])
    centred = _spec(short=4, long=6, dpi=166, fields={})
    right = _decode(rasterize(data=_photo(), spec=spec).data)
    another_crop = _decode(rasterize(data=_photo(), spec=centred).data)
    not_colour_managed = _decode(rasterize(data=_photo(with_profile=False), spec=spec).data)

    # then only the right one passes
    assert _matches_the_print(right, (4, 6), "crop_rectangle") >= MIN_PSNR_DB
    assert _matches_the_print(another_crop, (4, 6), "crop_rectangle") < 20
    assert _matches_the_print(not_colour_managed, (4, 6), "crop_rectangle") < 30


def test_an_ordered_items_proof_is_the_quote_proof_then_the_printers_raster_soft_proofed(api, customer):
    from lab.privacy.vault import vault_read
    from lab.production import rasterizing, routing
    from lab.production.models import PrintJob
    from tests.builders import WORKER

    # given a paid order of two items with placement options, and a printer with a CMYK profile
    order = order_with_items(
        lines=[("PRINT-5X7-LUSTRE", 1), ("PRINT-8X10-GLOSSY", 2)], photo=_photo(), customer=customer
    )
    OrderItem.objects.filter(order=order, position=1).update(border_mm=5.0, orientation="portrait")
    OrderItem.objects.filter(order=order, position=2).update(focal_x=0.85, focal_y=0.2)
    order_pay(order)
    hotfolder_printer("minilab", sizes=["5x7", "8x10"], dpi=PRINTER_DPI, icc_profile=default_cmyk_profile())
    asset = OrderItem.objects.get(order=order, position=1).asset
    quoted = _proof(api, asset, "PRINT-5X7-LUSTRE", border_mm=5.0, orientation="portrait")

    # when the owner asks for the first item's proof before the order is released to a printer
    before = api.get(f"/api/v1/orders/{order.ref}/items/1/proof")

    # then it is the proof the quote item gave, byte for byte (sRGB: no printer chosen yet)
    assert (before.status_code, before["Content-Type"], before["Cache-Control"]) == (
        200,
        "image/jpeg",
        "private, no-store",
    )
    assert before.content == quoted.content

    # when the order is released and rasterized for the CMYK printer, and the owner asks again
    routing.order_release(order_id=order.pk)
    for job in PrintJob.objects.filter(order=order):
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    references = {}
    for job in PrintJob.objects.filter(order=order).select_related("item__asset__data_key"):
        response = api.get(f"/api/v1/orders/{order.ref}/items/{job.item.position}/proof")
        assert response.status_code == 200
        proof = _decode(response.content)
        raster = vault_read(data_key=job.item.asset.data_key, name=job.raster_blob, purpose="raster")

        # then each proof is that printer's raster, as a screen shows it, downscaled (soft-proofed)
        printed = _to_srgb(_decode(raster))
        assert printed.size == (job.raster_width_px, job.raster_height_px)
        references[job.item.position] = printed.resize(proof.size, Image.Resampling.LANCZOS)
        assert _psnr(proof, references[job.item.position]) >= MIN_PSNR_DB, job.item.position
        assert proof.info["icc_profile"] == SRGB_PROFILE
    # ... where the sRGB proof of before would not pass for what this printer prints
    before_proof = _decode(before.content)
    assert before_proof.size == references[1].size == (710, 994)  # 5x7 portrait at 142 DPI
    assert _psnr(before_proof, references[1]) < 30


def test_the_proof_is_recorded_as_the_owners_access_and_no_employee_view(api, customer, photo):
    # when the owner asks for a proof
    response = _proof(api, photo, "PRINT-4X6-LUSTRE")

    # then one record names the owner's access to the photo, and no person on the floor was involved
    assert response.status_code == 200
    record = AuditRecord.objects.get()
    assert (
        record.action,
        record.actor_id,
        record.actor_role,
        record.purpose,
        record.rule,
        record.outcome,
        record.asset_id,
    ) == ("image.view.proof", str(customer.public_id), "customer", "owner", "owner", "granted", str(photo.pk))
    assert AccessGrant.objects.count() == 0


def test_an_ordered_items_proof_is_recorded_as_the_owners_access(api, customer):
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], photo=(1800, 1200), customer=customer)

    response = api.get(f"/api/v1/orders/{order.ref}/items/1/proof")

    assert response.status_code == 200
    assert list(AuditRecord.objects.values_list("actor_id", "actor_role", "purpose")) == [
        (str(customer.public_id), "customer", "owner")
    ]
    assert AccessGrant.objects.count() == 0


def test_the_proofs_record_hashes_the_proof_it_sent_not_the_original(api, customer, photo):
    # given a photo, and an ordered one
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], photo=(1800, 1200), customer=customer)

    # when the owner asks for the proof of each
    quoted = _proof(api, photo, "PRINT-4X6-LUSTRE")
    ordered = api.get(f"/api/v1/orders/{order.ref}/items/1/proof")

    # then each record holds the SHA-256 of exactly the JPEG the owner was sent (it held the original's)
    assert (quoted.status_code, ordered.status_code) == (200, 200)
    records = list(AuditRecord.objects.filter(action="image.view.proof").order_by("seq"))
    assert [record.content_sha256 for record in records] == [
        hashlib.sha256(quoted.content).hexdigest(),
        hashlib.sha256(ordered.content).hexdigest(),
    ]
    originals = {
        vault_read(data_key=a.data_key, name=a.blob_name, purpose="original") for a in Asset.objects.all()
    }
    assert not {hashlib.sha256(data).hexdigest() for data in originals} & {r.content_sha256 for r in records}


def test_a_proof_the_rasterizer_refuses_is_a_422_and_no_granted_record(api, customer, photo, monkeypatch):
    # given a rasterizer that refuses the photo (as it would one stored before intake agreed with it)
    def refused(**arguments):
        raise RasterError(code=DECODE_FAILED, message="the file is cut short")

    monkeypatch.setattr("lab.gate.proofs.rasterize", refused)
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], photo=(1800, 1200), customer=customer)

    # when the owner asks for the proofs
    quoted = _proof(api, photo, "PRINT-4X6-LUSTRE")
    ordered = api.get(f"/api/v1/orders/{order.ref}/items/1/proof")

    # then each is the problem, and the read is recorded as denied with no content hash: no record says a
    # proof was delivered (one said so, with the original's hash, for bytes nobody was sent)
    for response in (quoted, ordered):
        assert (response.status_code, response["Content-Type"], response.json()["raster_code"]) == (
            422,
            PROBLEM,
            DECODE_FAILED,
        )
    assert not AuditRecord.objects.filter(outcome="granted").exists()
    assert (
        list(AuditRecord.objects.values_list("action", "outcome", "rule", "content_sha256"))
        == [
            ("image.view.proof", "denied", "photo_not_printable", ""),
        ]
        * 2
    )


def test_a_proof_whose_record_cannot_be_written_is_a_503_and_sends_nothing(api, customer, photo, monkeypatch):
    # given an audit log that cannot be written
    def broken(entry, **options):
        raise DatabaseError("disk full")

    monkeypatch.setattr("lab.gate.owner.audit_append", broken)
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], photo=(1800, 1200), customer=customer)

    # when the owner asks for the proofs
    quoted = _proof(api, photo, "PRINT-4X6-LUSTRE")
    ordered = api.get(f"/api/v1/orders/{order.ref}/items/1/proof")

    # then no record, no proof: the problem only
    for response in (quoted, ordered):
        assert (response.status_code, response["Content-Type"], response.json()["code"]) == (
            503,
            PROBLEM,
            "audit_unavailable",
        )
        assert not response.content.startswith(b"\xff\xd8")
    assert AuditRecord.objects.count() == 0


def test_another_customer_and_anonymous_get_404_and_nothing_is_recorded(api, customer, photo):
    order = order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], photo=(1800, 1200), customer=customer)
    item_url = f"/api/v1/orders/{order.ref}/items/1/proof"

    api.force_authenticate(UserFactory.create())
    stranger = [_proof(api, photo, "PRINT-4X6-LUSTRE"), api.get(item_url)]
    api.force_authenticate(None)
    anonymous = [_proof(api, photo, "PRINT-4X6-LUSTRE"), api.get(item_url)]

    for proof, item in (stranger, anonymous):
        assert (proof.status_code, proof["Content-Type"], proof.json()["code"]) == (
            404,
            PROBLEM,
            "asset_not_found",
        )
        assert (item.status_code, item.json()["code"]) == (404, "order_not_found")
    assert AuditRecord.objects.count() == 0


@pytest.mark.usefixtures("stripe_api")
def test_a_guest_order_has_no_proof_even_with_its_token(api):
    guest_photo = asset_create_from_upload(owner=None, data=_photo())
    body = {
        "items": [{"sku": "PRINT-4X6-LUSTRE", "asset": str(guest_photo.pk), "copies": 1}],
        "shipping_method": "standard",
        "shipping_address": {
            "name": "Ada Quill",
            "line1": "1 Lens Lane",
            "city": "Exposure",
            "postal_code": "12345",
            "country": "US",
        },
        "guest": {"email": "guest@example.com", "birth_date": "1990-01-01", "privacy_policy_version": "1.0"},
    }
    created = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="proof-guest")
    assert created.status_code == 201, created.json()
    ref, token = created.json()["ref"], created.json()["guest_token"]

    response = api.get(f"/api/v1/orders/{ref}/items/1/proof", HTTP_X_ORDER_TOKEN=token)

    # the gate names who saw a photo by their account; a guest has none
    assert (response.status_code, response.json()["code"]) == (404, "order_not_found")
    assert AuditRecord.objects.count() == 0


def test_a_photo_not_ready_or_purged_answers_the_photos_problem_and_records_nothing(api, customer, photo):
    from lab.customer_data.photo_purge import asset_purge
    from lab.customer_data.retention_rules import RULE_NEVER_ORDERED

    pending = Asset.objects.create(owner=customer)
    not_ready = _proof(api, pending, "PRINT-4X6-LUSTRE")
    asset_purge(asset_id=photo.pk, rule=RULE_NEVER_ORDERED, cutoffs=None)
    records = AuditRecord.objects.count()  # the purge's own
    purged = _proof(api, photo, "PRINT-4X6-LUSTRE")

    assert (not_ready.status_code, not_ready.json()["code"]) == (409, "asset_not_ready")
    assert (purged.status_code, purged["Content-Type"], purged.json()["code"]) == (
        410,
        PROBLEM,
        "image_unavailable",
    )
    assert AuditRecord.objects.count() == records == 1


def test_an_ordered_items_proof_after_its_photo_was_purged_is_gone(api, customer):
    from lab.customer_data.photo_purge import asset_purge
    from lab.customer_data.retention_rules import RULE_NEVER_ORDERED

    order = order_move(
        order_with_items(lines=[("PRINT-4X6-LUSTRE", 1)], photo=(1800, 1200), customer=customer), "cancelled"
    )
    asset_purge(asset_id=order.items.get().asset_id, rule=RULE_NEVER_ORDERED, cutoffs=None)

    response = api.get(f"/api/v1/orders/{order.ref}/items/1/proof")
    missing = api.get(f"/api/v1/orders/{order.ref}/items/2/proof")

    assert (response.status_code, response.json()["code"]) == (410, "image_unavailable")
    assert (missing.status_code, missing.json()["code"]) == (404, "order_item_not_found")
    assert list(AuditRecord.objects.values_list("action", flat=True)) == ["image.purge"]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"crop": {"x": 0.0, "y": 0.0, "width": 0.5, "height": 1.0}}, 400, "crop_aspect_mismatch"),
        ({"sizing": "fit", "focal_point": {"x": 0.5, "y": 0.5}}, 400, "crop_requires_fill"),
        ({"border_mm": 30}, 400, "border_out_of_range"),
        ({"orientation": "sideways"}, 400, "invalid_request"),
        ({"sku": "PRINT-1X1-PAPYRUS"}, 400, "unknown_sku"),
    ],
)
def test_refused_options_are_the_quotes_problems_and_record_nothing(api, photo, fields, status, code):
    item = {"sku": "PRINT-4X6-LUSTRE", "asset": str(photo.pk), **fields}

    response = api.post("/api/v1/proofs", item, format="json")

    assert (response.status_code, response["Content-Type"], response.json()["code"]) == (
        status,
        PROBLEM,
        code,
    )
    assert AuditRecord.objects.count() == 0


def test_the_schema_documents_both_proof_endpoints(api):
    schema = api.get("/api/v1/schema/?format=json").json()

    for path, method in (("/api/v1/proofs", "post"), ("/api/v1/orders/{ref}/items/{position}/proof", "get")):
        operation = schema["paths"][path][method]
        ok = operation["responses"]["200"]
        assert list(ok["content"]) == ["image/jpeg"], path
        assert ok["content"]["image/jpeg"]["schema"] == {"type": "string", "format": "binary"}
        assert "owner" in ok["description"] and "1000 px" in ok["description"]
        assert set(ok["headers"]) == {"Cache-Control", "X-Content-Type-Options"}
        assert all(header["description"] for header in ok["headers"].values())
        assert {"404", "409", "410", "503"} <= set(operation["responses"]), path
    item_operation = schema["paths"]["/api/v1/orders/{ref}/items/{position}/proof"]["get"]
    parameters = {parameter["name"]: parameter for parameter in item_operation["parameters"]}
    assert parameters["position"]["schema"]["type"] == "integer"
    assert parameters["position"]["description"] and parameters["ref"]["description"]
    proof_input = schema["components"]["schemas"]["ProofInputRequest"]["properties"]
    assert set(proof_input) == {
        "sku",
        "asset",
        "copies",
        "sizing",
        "crop",
        "focal_point",
        "orientation",
        "border_mm",
    }
    for name in ("sku", "asset", "copies", "crop", "focal_point", "orientation", "border_mm"):
        assert proof_input[name].get("description"), name
    assert list(schema["paths"]["/api/v1/proofs"]["post"]["requestBody"]["content"]) == ["application/json"]


def test_proofs_are_throttled_per_customer(api, customer, photo, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "proofs": "2/min"},
    }

    statuses = [_proof(api, photo, SKUS[0]).status_code for _ in range(3)]
    throttled = _proof(api, photo, SKUS[0])

    assert statuses == [200, 200, 429]
    assert throttled.json()["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) > 0
