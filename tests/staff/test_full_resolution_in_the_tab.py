"""Full resolution opens in the browser's tab, never as a file on the shared station's disk: TIFF and HEIC
originals (which Chromium saves to Downloads rather than show) are sent as a lossless PNG, and the record's
SHA-256 is that of the bytes sent."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import pytest
import pyvips
from PIL import Image

from lab.audit.models import AuditRecord
from lab.orders.models import Asset
from lab.privacy.vault import vault_read
from lab.production import routing
from lab.production.models import PrintJob
from tests.builders import client_as, hotfolder_printer, paid_order
from tests.support.images import heic_bytes, jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db

ACTIONS = {"full": "image.view.full", "download": "image.download"}


def tiff_with_a_corner() -> bytes:
    """A TIFF whose pixels differ (a blue corner on orange), so a PNG of it shows whether each pixel kept."""
    image = Image.new("RGB", (1200, 1800), (200, 120, 40))
    image.paste((20, 40, 220), (0, 0, 300, 450))
    out = io.BytesIO()
    image.save(out, "TIFF")
    return out.getvalue()


def job_of(photo: bytes) -> PrintJob:
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)], photo=photo)
    routing.order_release(order_id=order.pk)
    return PrintJob.objects.select_related("item__asset__data_key").get()


def printing(job: PrintJob, *, justification: str) -> dict[str, str | int]:
    return {
        "purpose": "printing",
        "context_type": "print_job",
        "context_id": job.pk,
        "justification": justification,
    }


def stored_original(asset: Asset) -> bytes:
    return vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


@pytest.mark.parametrize("variant", ["full", "download"])
@pytest.mark.parametrize(
    ("photo", "media_type", "as_stored"),
    [
        (jpeg_bytes, "image/jpeg", True),
        (png_bytes, "image/png", True),
        (tiff_with_a_corner, "image/png", False),
        (heic_bytes, "image/png", False),
    ],
    ids=["jpeg", "png", "tiff", "heic"],
)
def test_full_resolution_is_shown_in_the_tab_and_never_saved_to_the_stations_disk(
    photo: Callable[[], bytes], media_type: str, as_stored: bool, variant: str
):
    # given a technician at an active job whose photo is a JPEG, PNG, TIFF or HEIC
    job = job_of(photo())
    client, _ = client_as("technician")

    # when they press "Full resolution" (or ask for `download`)
    response = client.get(
        f"/lab/photos/{job.item.asset_id}/{variant}",
        printing(job, justification="checking colour cast"),
        follow=True,
    )

    # then the browser is sent a type it shows in the tab, not an attachment (before: a TIFF or HEIC came as
    # image/tiff or image/heic, which Chromium saves to the station's Downloads, and `download` was always
    # an attachment)
    assert (response.status_code, response["Content-Type"]) == (200, media_type)
    assert "Content-Disposition" not in response
    assert response["Cache-Control"] == "no-store, private"
    original = stored_original(job.item.asset)
    if as_stored:
        assert response.content == original
    else:  # every pixel of the original, losslessly
        with Image.open(io.BytesIO(response.content)) as shown, Image.open(io.BytesIO(original)) as stored:
            assert (shown.format, shown.size) == ("PNG", stored.size)
        assert pixels(response.content) == pixels(original)
    # and the record's SHA-256 is that of exactly the bytes sent
    record = AuditRecord.objects.get(seq=int(response["X-Audit-Seq"]))
    assert (record.action, record.outcome) == (ACTIONS[variant], "granted")
    assert record.content_sha256 == hashlib.sha256(response.content).hexdigest()


def test_a_turned_tiff_is_sent_upright_as_the_browser_turns_a_jpeg():
    image = Image.new("RGB", (1800, 1200), (200, 120, 40))
    image.paste((20, 40, 220), (0, 0, 450, 300))  # top left as stored
    out = io.BytesIO()
    image.save(out, "TIFF", tiffinfo={0x0112: 6})  # shown turned 90° clockwise
    job = job_of(out.getvalue())
    client, _ = client_as("technician")

    response = client.get(
        f"/lab/photos/{job.item.asset_id}/full",
        printing(job, justification="checking the crop"),
        follow=True,
    )

    assert (response.status_code, response["Content-Type"]) == (200, "image/png")
    with Image.open(io.BytesIO(response.content)) as shown:
        assert shown.size == (1200, 1800)
        assert shown.convert("RGB").getpixel((1199, 0)) == (20, 40, 220)  # now top right
        assert shown.convert("RGB").getpixel((0, 0)) == (200, 120, 40)


def test_a_tiff_too_large_to_re_encode_in_the_web_process_is_refused_and_its_preview_still_shown():
    """Its PNG was built whole in the web worker's memory (then hashed and held in the response): an 89 MP
    TIFF grew the process by ~470 MiB per view, past a worker's 200 MiB."""
    # given an active job whose photo is a TIFF whose decoded pixels pass the whole-decode budget (101 MB)
    orange = pyvips.Image.black(5800, 5800).new_from_image([200, 120, 40]).copy(interpretation="srgb")
    job = job_of(orange.cast("uchar").tiffsave_buffer(compression="deflate"))
    client, _ = client_as("technician")

    # when a technician asks for its full resolution, then its preview
    full = client.get(
        f"/lab/photos/{job.item.asset_id}/full",
        printing(job, justification="checking colour cast"),
        follow=True,
    )
    preview = client.get(
        f"/lab/photos/{job.item.asset_id}/preview", printing(job, justification="checking colour cast")
    )

    # then full resolution is refused with its rule and recorded, no bytes sent nor hashed
    assert (full.status_code, full.json()["rule"]) == (403, "full_resolution_too_large")
    denial = AuditRecord.objects.get(action="image.access.denied")
    assert (denial.rule, denial.content_sha256, denial.order_ref) == (
        "full_resolution_too_large",
        "",
        job.order.ref,
    )
    assert not AuditRecord.objects.filter(action__in=["image.view.full", "image.download"]).exists()
    # and the preview still is shown
    preview = client.get(preview["Location"]) if preview.status_code == 303 else preview
    assert (preview.status_code, preview["Content-Type"]) == (200, "image/jpeg")
