"""The preview watermark covers the whole photo (every quadrant and every edge, so no crop removes it) and
is faint enough that the photo is still what it was (mean difference from the unmarked preview is small)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from lab.audit.records import RequestMeta
from lab.gate import access as gate
from lab.gate.watermark import preview_image, watermark_apply
from lab.production.models import PrintJob
from tests.builders import hotfolder_printer, person, released_order
from tests.support.images import jpeg_bytes

STAMP = "technician:0f3a9c12 2026-03-02 09:00Z"
EDGE = 48  # px: a crop that keeps everything but this band along one edge


def gradient_jpeg(width: int = 1600, height: int = 1000) -> bytes:
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def regions(width: int, height: int) -> dict[str, tuple[int, int, int, int]]:
    return {
        "top-left": (0, 0, width // 2, height // 2),
        "top-right": (width // 2, 0, width, height // 2),
        "bottom-left": (0, height // 2, width // 2, height),
        "bottom-right": (width // 2, height // 2, width, height),
        "left edge": (0, 0, EDGE, height),
        "right edge": (width - EDGE, 0, width, height),
        "top edge": (0, 0, width, EDGE),
        "bottom edge": (0, height - EDGE, width, height),
    }


def marked_share(difference: Image.Image, box: tuple[int, int, int, int], threshold: int) -> float:
    histogram = difference.crop(box).histogram()
    return sum(histogram[threshold:]) / sum(histogram)


@pytest.mark.parametrize("original", [jpeg_bytes(), gradient_jpeg()], ids=["two-tone", "gradient"])
def test_the_mark_reaches_every_quadrant_and_edge_and_stays_faint(original):
    plain = preview_image(original)

    marked = watermark_apply(plain, STAMP)

    assert marked.size == plain.size and max(plain.size) == 512
    difference = ImageChops.difference(plain, marked).convert("L")
    shares = {name: marked_share(difference, box, 12) for name, box in regions(*plain.size).items()}
    assert min(shares.values()) > 0.04, shares
    assert max(shares.values()) < 0.40, shares  # text, not a veil
    assert ImageStat.Stat(difference).mean[0] < 8


@pytest.mark.django_db
def test_the_preview_the_gate_delivers_is_marked_all_over_and_recognisable(settings):
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.select_related("item__asset").get()
    technician = person("technician")

    delivery = gate.image_access(
        user=technician,
        request=gate.AccessRequest(
            asset_id=str(job.item.asset_id),
            purpose="printing",
            justification="check the crop",
            context_type="print_job",
            context_id=str(job.pk),
        ),
        meta=RequestMeta(),
    )

    with Image.open(io.BytesIO(delivery.data)) as image:
        delivered = image.convert("RGB")
    plain = preview_image(jpeg_bytes())  # the photo every order of the builders carries
    difference = ImageChops.difference(plain, delivered).convert("L")
    shares = {name: marked_share(difference, box, 24) for name, box in regions(*plain.size).items()}
    assert min(shares.values()) > 0.02, shares
    assert ImageStat.Stat(difference).mean[0] < 10
