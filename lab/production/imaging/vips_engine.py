"""The pyvips resampling engine, for every photo larger than its print: crop, LANCZOS3 reduce and sharpen
in one streaming libvips pipeline over the decoded rows: memory follows the print's size, not the photo's."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import pyvips
from PIL import Image

from lab.production.imaging.errors import ENGINE_UNSUPPORTED, RasterError
from lab.production.imaging.geometry import ResamplePlan
from lab.production.imaging.pillow_engine import SHARPEN_SCALE, SHARPEN_WEIGHTS
from lab.production.imaging.source import WorkingMode

# Raster workers run one single-threaded process per core; libvips threads would only contend with the
# neighbouring worker, and its operation cache would only hold on to memory of photos already printed.
pyvips.concurrency_set(1)
pyvips.cache_set_max(0)
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _return_large_blocks_on_free() -> None:
    """glibc raises its mmap threshold (up to 32 MiB) whenever a large block is freed, after which the
    print-sized buffers (7-72 MB) come from the heap and stay resident: a worker's peak RSS grew from 170 to
    193 MiB over four 8x10 prints. A fixed threshold keeps each block of 1 MiB or more mapped on its own, so
    it goes back to the system when freed (175 MiB after four prints)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc: its own policy
    mallopt(_M_MMAP_THRESHOLD, 1 << 20)


_return_large_blocks_on_free()

_SHARPEN_MASK = pyvips.Image.new_from_array(
    [list(SHARPEN_WEIGHTS[0:3]), list(SHARPEN_WEIGHTS[3:6]), list(SHARPEN_WEIGHTS[6:9])], scale=SHARPEN_SCALE
)
# Output pixels of real photo kept beyond each cropped edge, so LANCZOS3 (3 lobes) and the 3x3 sharpen see
# real neighbours there instead of libvips' edge extension.
_MARGIN_PIXELS = 4
_MAX_MARGIN_SEARCH = 64


@dataclass(frozen=True)
class _Window:
    """One axis of the crop-then-reduce: the decoded pixels [origin, origin + length) are reduced to exactly
    `outputs` pixels, of which the print keeps those from `lead` on. Past the photo's edge (`available`
    ends first) the window is filled by repeating the edge pixel, as libvips' own kernels do."""

    origin: int
    length: int
    available: int
    scale: float
    lead: int
    outputs: int


def _fraction_off(value: float) -> float:
    return abs(value - round(value))


def _window(*, start: float, length: float, available: int, output: int) -> _Window:
    """Choose an integer crop whose reduction lands on the ideal sub-pixel box's sampling grid.

    libvips reduces whole images and centres its output grid on its input, so both ends of the crop must sit
    on the ideal grid: the origin `lead` output pixels before the box's start, and the length a whole number
    of output pixels (`outputs`), each choice the nearest to exact (usually exact: scales are rational).
    Otherwise the grid moves by half the remainder, up to a third of a pixel: 34 dB on thin lines at 8x10.
    """
    scale = output / length
    candidates = [lead for lead in range(_MAX_MARGIN_SEARCH) if start - lead / scale >= -1e-9]
    preferred = [lead for lead in candidates if lead >= _MARGIN_PIXELS] or candidates
    lead = min(preferred, key=lambda lead: _fraction_off(start - lead / scale))
    origin = max(0, round(start - lead / scale))
    needed = lead + output + _MARGIN_PIXELS
    outputs = min(range(needed, needed + _MAX_MARGIN_SEARCH), key=lambda count: _fraction_off(count / scale))
    window_length = round(outputs / scale)
    return _Window(
        origin=origin,
        length=window_length,
        available=min(window_length, available - origin),
        scale=outputs / window_length,
        lead=lead,
        outputs=outputs,
    )


def resample(
    *,
    image: pyvips.Image,
    mode: WorkingMode,
    plan: ResamplePlan,
    shrink_factor: int,
    to_srgb_from: bytes | None = None,
) -> Image.Image:
    """Crop plan.box (in full-resolution stored pixels; `image` is decoded at 1/shrink_factor) and reduce it
    to exactly plan.photo_size with LANCZOS3, then sharpen; 8-bit, stored orientation. With `to_srgb_from`
    (an RGB photo's embedded profile, see colour.converts_in_libvips) the result is converted to sRGB too."""
    if not plan.is_downscale:
        raise RasterError(code=ENGINE_UNSUPPORTED, message="the pyvips engine only reduces photos")
    width, height = plan.photo_size
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
    region = image.crop(x.origin, y.origin, x.available, y.available)
    if (x.available, y.available) != (x.length, y.length):
        region = region.embed(0, 0, x.length, y.length, extend="copy")
    # reduce, not resize: resize bends the factor so that the output is a whole number of pixels; here the
    # window already is one, so the factor stays exact.
    reduced = region.reduce(1 / x.scale, 1 / y.scale, kernel="lanczos3")
    sharpened = reduced.conv(_SHARPEN_MASK, precision="integer").cast("uchar")
    printed = sharpened.crop(x.lead, y.lead, width, height)
    if to_srgb_from is not None:
        printed = printed.copy()
        printed.set_type(pyvips.GValue.blob_type, "icc-profile-data", to_srgb_from)
        printed = printed.icc_transform("srgb", embedded=True, intent="perceptual", depth=8)
    pixels = printed.write_to_memory()
    return Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)
