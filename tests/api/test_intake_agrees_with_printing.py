"""Intake and the raster workers read a photo alike: what intake stores is quoted, proofed and printed from
the same format, size and orientation, and what the workers would refuse is refused at upload.

Before, each had its own rules: a BigTIFF or a HEIC of brand hevm or hevs was stored, quoted and paid for,
and its print failed (`unsupported_format`), its proof a 500; a TIFF whose Orientation tag Pillow applied
and libtiff ignored was quoted in one orientation and printed in the other.
"""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from lab.audit.models import AuditRecord
from lab.catalog.placement import CropRect, PlacementOptions
from lab.orders.models import Asset
from lab.privacy.models import DataKey
from lab.privacy.vault import vault_read, vault_write
from lab.production import rasterizing, routing
from lab.production.imaging.geometry import swaps_axes
from lab.production.imaging.source import open_source
from lab.production.models import PrintJob
from lab.production.raster import RasterError, RasterSpec, rasterize
from tests.builders import WORKER, hotfolder_printer, order_with_items, paid_order
from tests.support.images import (
    bigtiff_bytes,
    heic_with_brand,
    jpeg_bytes,
    tiff_bytes,
    tiff_with_an_orientation_of_two_values,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo_catalog")]

SKU = "PRINT-4X6-LUSTRE"
PROBLEM = "application/problem+json"


def _upload(api, data: bytes):
    return api.post("/api/v1/assets", {"file": SimpleUploadedFile("photo", data)}, format="multipart")


def _stored(asset: Asset) -> bytes:
    return vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")


def _quote(api, asset_id: str, **options: object):
    item = {"sku": SKU, "asset": asset_id, "copies": 1, **options}
    return api.post("/api/v1/quotes", {"items": [item], "shipping_method": "pickup"}, format="json")


@pytest.mark.parametrize(
    "photo",
    [bigtiff_bytes(), heic_with_brand(b"hevm"), heic_with_brand(b"hevs")],
    ids=["bigtiff-little-endian", "heic-hevm", "heic-hevs"],
)
def test_a_photo_intake_stores_is_quoted_proofed_and_printed(api, customer, photo):
    # when the photo is uploaded, quoted and proofed
    uploaded = _upload(api, photo)
    asset_id = uploaded.json()["id"]
    quoted = _quote(api, asset_id)
    proof = api.post("/api/v1/proofs", {"sku": SKU, "asset": asset_id}, format="json")
    # and a paid order of it is rasterized by the worker
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[(SKU, 1)], photo=photo)
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()
    printed = rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)

    # then each step takes it, and the print is the landscape 4x6 the quote said
    assert (uploaded.status_code, quoted.status_code) == (201, 200), (uploaded.json(), quoted.json())
    assert quoted.json()["items"][0]["print_orientation"] == "landscape"
    assert (proof.status_code, proof["Content-Type"]) == (200, "image/jpeg")
    job.refresh_from_db()
    assert (printed, job.failure_code) == ("ready", "")
    assert (job.raster_width_px, job.raster_height_px) == (1800, 1200)


@pytest.mark.parametrize(
    ("photo", "code"),
    [
        # Pillow reads a big-endian BigTIFF's header as a classic TIFF's and cannot open it
        (bigtiff_bytes(byte_order="MM"), "not_an_image"),
        # TIFF magic with its bytes swapped: Pillow opens it, libtiff refuses it
        (b"II\x00*" + tiff_bytes(60, 40)[4:], "unsupported_format"),
    ],
    ids=["bigtiff-big-endian", "byte-swapped-magic"],
)
def test_a_tiff_the_workers_would_refuse_is_refused_at_upload_and_nothing_is_kept(
    api, settings, customer, photo, code
):
    response = _upload(api, photo)

    assert (response.status_code, response.json()["code"]) == (422, code)
    assert (Asset.objects.count(), DataKey.objects.count()) == (0, 0)
    with pytest.raises(RasterError) as refused:
        open_source(photo)
    assert refused.value.code == "unsupported_format"


def _swap_in(asset: Asset, data: bytes) -> None:
    """Replace a stored photo's bytes, as a photo stored by an older intake would be: through the vault, under
    its own key, the row resealed by its save."""
    asset.blob_name = vault_write(data_key=asset.data_key, plaintext=data, purpose="original")
    asset.save(update_fields=["blob_name"])


def test_a_proof_of_a_stored_photo_the_rasterizer_refuses_is_a_422_problem(api, customer):
    # given a photo and an ordered one, each stored cut short (intake, which decodes every pixel, refuses
    # such a file now: these stand for photos stored before it agreed with the workers)
    unprintable = jpeg_bytes(600, 400)[:3000]
    photo = Asset.objects.get(pk=_upload(api, jpeg_bytes(600, 400)).json()["id"])
    _swap_in(photo, unprintable)
    order = order_with_items(lines=[(SKU, 1)], photo=(600, 400), customer=customer)
    _swap_in(order.items.get().asset, unprintable)

    # when their proofs are asked for
    quoted = api.post("/api/v1/proofs", {"sku": SKU, "asset": str(photo.pk)}, format="json")
    ordered = api.get(f"/api/v1/orders/{order.ref}/items/1/proof")

    # then each is a problem saying why, not a 500
    for response in (quoted, ordered):
        assert (response.status_code, response["Content-Type"]) == (422, PROBLEM)
        assert (response.json()["code"], response.json()["raster_code"]) == (
            "photo_not_printable",
            "decode_failed",
        )
        assert response.json()["detail"].startswith("This photo cannot be printed as asked: ")
    # the photo was read on the owner's behalf to find it out, as a rendered proof's is
    assert AuditRecord.objects.filter(action="image.view.proof").count() == 2


def _upright_size_the_workers_print(data: bytes) -> tuple[int, int]:
    source = open_source(data)
    swapped = swaps_axes(source.orientation)
    return (source.height, source.width) if swapped else (source.width, source.height)


def _tiff_turned_by_a_valid_tag() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    Image.new("RGB", (600, 400), (90, 90, 90)).save(out, "TIFF", exif=exif)
    return out.getvalue()


@pytest.mark.filterwarnings("ignore:Metadata Warning, tag 274 had too many entries")
@pytest.mark.parametrize(
    ("photo", "upright"),
    [
        # Orientation 6 with a count of 2: Pillow turned the photo by it, libtiff ignores the tag
        (tiff_with_an_orientation_of_two_values(600, 400), (600, 400)),
        (_tiff_turned_by_a_valid_tag(), (400, 600)),
    ],
    ids=["orientation-tag-of-two-values", "orientation-6"],
)
def test_a_tiffs_quote_and_print_have_one_upright_size_and_the_quoted_crop_prints(
    api, customer, photo, upright
):
    # given a TIFF stored by intake
    body = _upload(api, photo).json()
    asset = Asset.objects.get(pk=body["id"])
    stored = _stored(asset)
    width, height = asset.oriented_size
    # and a crop quoted on the upright photo the API reports: its whole long side, at the paper's 3:2
    crop = (
        {"x": 0.0, "y": 0.0, "width": 1.0, "height": width / 1.5 / height}
        if width > height
        else {"x": 0.0, "y": 0.0, "width": height / 1.5 / width, "height": 1.0}
    )
    line = _quote(api, body["id"], crop=crop).json()["items"][0]

    # when the worker prints it as the paid job does (with the orientation intake recorded)
    printed = rasterize(
        data=stored,
        spec=RasterSpec(
            width_in=4,
            height_in=6,
            dpi=50,
            output_format="tiff",
            placement=PlacementOptions(crop=CropRect(**crop)),
        ),
        orientation=asset.exif_orientation,
    )

    # then intake's upright size is the one the workers print from, and the print is as quoted
    assert asset.oriented_size == _upright_size_the_workers_print(stored) == upright
    expected = (300, 200) if line["print_orientation"] == "landscape" else (200, 300)
    assert (printed.width_px, printed.height_px) == expected
    assert line["print_orientation"] == ("landscape" if upright[0] > upright[1] else "portrait")
