"""The preview watermark covers the whole photo (every quadrant and every edge, so no crop removes it) and
is faint enough that the photo is still what it was (mean difference from the unmarked preview is small)."""

from __future__ import annotations

import io
import math
from datetime import UTC, timedelta

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from lab.accounts.models import User
from lab.audit.models import AuditRecord
from lab.audit.records import RequestMeta
from lab.gate import access as gate
from lab.gate import watermark
from lab.gate.access import Delivery
from lab.gate.rules import AccessRequest
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


def preview_of_a_printing_job(technician: User) -> Delivery:
    """The gate's preview of the photo of a job printing on a hot-folder minilab, asked by `technician`."""
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    job = PrintJob.objects.select_related("item__asset").get()
    return gate.image_access(
        user=technician,
        request=AccessRequest(
            asset_id=str(job.item.asset_id),
            purpose="printing",
            justification="check the crop",
            context_type="print_job",
            context_id=str(job.pk),
        ),
        meta=RequestMeta(),
    )


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
    technician = person("technician")
    delivery = preview_of_a_printing_job(technician)

    with Image.open(io.BytesIO(delivery.data)) as image:
        delivered = image.convert("RGB")
    plain = preview_image(jpeg_bytes())  # the photo every order of the builders carries
    difference = ImageChops.difference(plain, delivered).convert("L")
    shares = {name: marked_share(difference, box, 24) for name, box in regions(*plain.size).items()}
    assert min(shares.values()) > 0.02, shares
    assert ImageStat.Stat(difference).mean[0] < 10


@pytest.mark.django_db
def test_the_preview_is_stamped_with_the_viewer_s_role_public_id_and_utc_minute(settings, monkeypatch):
    stamps: list[str] = []
    render = watermark.preview_render

    def spy(original: bytes, *, stamp: str) -> bytes:
        stamps.append(stamp)
        return render(original, stamp=stamp)

    monkeypatch.setattr("lab.gate.variants.preview_render", spy)
    technician = person("technician")
    preview_of_a_printing_job(technician)

    at = AuditRecord.objects.latest("seq").occurred_at.astimezone(UTC)
    expected = {
        f"technician:{str(technician.public_id)[:8]} {moment:%Y-%m-%d %H:%M}Z"
        for moment in (at, at - timedelta(minutes=1))
    }
    assert len(stamps) == 1, stamps
    assert stamps[0] in expected, (stamps, expected)


def drawn_stamp_by_stamp(image: Image.Image, stamp: str) -> Image.Image:
    """The mark as the module describes it, made the slow, obvious way: every stamp drawn where it goes on a
    square layer, the whole square rotated, its middle cut out."""
    width, height = image.size
    font = watermark._font(max(11, min(width, height) // 28))
    left, top, right, bottom = (int(edge) for edge in font.getbbox(stamp))
    step_x, step_y = (right - left) + (bottom - top) * 3, (bottom - top) * 4
    side = math.ceil(math.hypot(width, height)) + step_x
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for row, y in enumerate(range(-step_y, side + step_y, step_y)):
        for x in range(-step_x + (row % 2) * (step_x // 2), side + step_x, step_x):
            draw.text(
                (x, y),
                stamp,
                font=font,
                fill=(255, 255, 255, watermark.TEXT_ALPHA),
                stroke_width=watermark.STROKE_WIDTH,
                stroke_fill=(0, 0, 0, watermark.EDGE_ALPHA),
            )
    layer = layer.rotate(watermark.ANGLE_DEGREES, resample=Image.Resampling.BICUBIC)
    corner_x, corner_y = (side - width) // 2, (side - height) // 2
    layer = layer.crop((corner_x, corner_y, corner_x + width, corner_y + height))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


@pytest.mark.parametrize("size", [(512, 384), (384, 512), (512, 90), (40, 512)])
@pytest.mark.parametrize("stamp", [STAMP, "x", "Ångström 日本 technician 2026-03-02"])
def test_the_fast_mark_is_pixel_for_pixel_the_drawn_one(size, stamp):
    """The preview pastes one rendered stamp and rotates only the pixels it keeps (a preview took ~0.3 s of
    stroked-text drawing and a whole-square rotation); that must not change a single pixel."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    fast, drawn = watermark_apply(image, stamp), drawn_stamp_by_stamp(image, stamp)

    assert ImageChops.difference(fast, drawn).getbbox() is None
