"""The pyvips resampling engine for large JPEG photos: shrink-on-load, LANCZOS3 reduce and sharpen in one
streaming libvips pipeline, which is what makes a 24 MP photo cost little more than a half-size decode."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyvips
from PIL import Image

from lab.production.imaging.errors import DECODE_FAILED, ENGINE_UNSUPPORTED, RasterError
from lab.production.imaging.geometry import ResamplePlan
from lab.production.imaging.pillow_engine import SHARPEN_SCALE, SHARPEN_WEIGHTS
from lab.production.imaging.source import Source

# Raster workers run one single-threaded process per core; libvips threads would only contend with the
# neighbouring worker, and its operation cache would only hold on to memory of photos already printed.
pyvips.concurrency_set(1)
pyvips.cache_set_max(0)

_SHARPEN_MASK = pyvips.Image.new_from_array(
    [list(SHARPEN_WEIGHTS[0:3]), list(SHARPEN_WEIGHTS[3:6]), list(SHARPEN_WEIGHTS[6:9])], scale=SHARPEN_SCALE
)
# Output pixels of real photo kept beyond each cropped edge, so LANCZOS3 (3 lobes) and the 3x3 sharpen see
# real neighbours there instead of libvips' edge extension.
_MARGIN_PIXELS = 4
_MAX_MARGIN_SEARCH = 64


@dataclass(frozen=True)
class _Window:
    """One axis of the crop-then-resize: integer crop [origin, origin + length) of the shrunk image."""

    origin: int
    length: int
    scale: float
    lead: int


def _window(*, start: float, length: float, available: int, output: int) -> _Window:
    """Choose an integer crop origin whose resampling grid lines up with the ideal sub-pixel box.

    libvips resizes whole images, so a crop at a fractional position is emulated: crop `lead` output pixels
    earlier, where the origin lands (within 1/64 pixel, usually) on a whole pixel, and drop them afterwards.
    """
    scale = output / length
    candidates = [lead for lead in range(_MAX_MARGIN_SEARCH) if start - lead / scale >= -1e-9]
    preferred = [lead for lead in candidates if lead >= _MARGIN_PIXELS] or candidates
    lead = min(preferred, key=lambda lead: abs(start - lead / scale - round(start - lead / scale)))
    origin = max(0, round(start - lead / scale))
    end = min(available, math.ceil(start + length + _MARGIN_PIXELS / scale) + 1)
    return _Window(origin=origin, length=end - origin, scale=scale, lead=lead)


def resample(*, data: bytes, source: Source, plan: ResamplePlan, shrink_factor: int) -> Image.Image:
    """Same contract as pillow_engine.resample, for 8-bit RGB or greyscale JPEGs only."""
    if source.format != "jpeg" or source.image.mode not in ("RGB", "L"):
        raise RasterError(
            code=ENGINE_UNSUPPORTED, message="the pyvips engine handles RGB and grey JPEGs only"
        )
    mode = source.image.mode
    width, height = plan.photo_size
    try:
        # fail_on="error": a truncated upload must fail, not print with a grey band.
        image = pyvips.Image.jpegload_buffer(
            data, shrink=shrink_factor, access="sequential", fail_on="error", autorotate=False
        )
        x = _window(
            start=plan.box[0] / shrink_factor,
            length=(plan.box[2] - plan.box[0]) / shrink_factor,
            available=image.width,
            output=width,
        )
        y = _window(
            start=plan.box[1] / shrink_factor,
            length=(plan.box[3] - plan.box[1]) / shrink_factor,
            available=image.height,
            output=height,
        )
        region = image.crop(x.origin, y.origin, x.length, y.length)
        resized = region.resize(x.scale, vscale=y.scale, kernel="lanczos3", gap=0.0)
        if resized.width < x.lead + width or resized.height < y.lead + height:
            resized = resized.embed(
                0, 0, max(resized.width, x.lead + width), max(resized.height, y.lead + height), extend="copy"
            )
        sharpened = resized.conv(_SHARPEN_MASK, precision="integer").cast("uchar")
        pixels = sharpened.crop(x.lead, y.lead, width, height).write_to_memory()
    except pyvips.Error as error:
        raise RasterError(
            code=DECODE_FAILED, message=f"photo could not be decoded: {error.message}"
        ) from error
    return Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)
