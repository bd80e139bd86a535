"""Pure geometry of a print: output pixel size, the photo region that fills it, JPEG shrink-on-load factor.
No pixels are touched here, so both engines (and the benchmark's reference) share one exact plan."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from PIL import Image

Sizing = Literal["fill", "fit"]

# EXIF orientations 5-8 store the picture rotated by 90 degrees: width and height swap on display.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
JPEG_SHRINK_FACTORS = (8, 4, 2, 1)


def normalised_orientation(value: object) -> int:
    """EXIF orientation 1-8; anything else (missing, 0, garbage) means 'as stored'."""
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def swaps_axes(orientation: int) -> bool:
    return orientation in _SWAPPING_ORIENTATIONS


def orient(image: Image.Image, *, orientation: int) -> Image.Image:
    """Apply an EXIF orientation to already-resampled pixels (cheap: it runs on print-sized images)."""
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return image if transpose is None else image.transpose(transpose)


def print_size_px(
    *, width_in: float, height_in: float, dpi: int, display_width: int, display_height: int
) -> tuple[int, int]:
    """The print's long side follows the photo's long side as displayed; a square photo prints portrait."""
    long_px = round(max(width_in, height_in) * dpi)
    short_px = round(min(width_in, height_in) * dpi)
    if display_width > display_height:
        return long_px, short_px
    return short_px, long_px


@dataclass(frozen=True)
class ResamplePlan:
    """What an engine must produce, in the photo's stored (un-rotated) orientation.

    `box` is the region of the full-resolution stored photo, in pixels (floats: sub-pixel exact), that is
    resampled to exactly `photo_size`. In fill mode photo_size is the whole canvas; in fit mode it is the
    photo's share of it and the rest becomes white border after orientation.
    """

    box: tuple[float, float, float, float]
    photo_size: tuple[int, int]

    @property
    def scale_x(self) -> float:
        return self.photo_size[0] / (self.box[2] - self.box[0])

    @property
    def scale_y(self) -> float:
        return self.photo_size[1] / (self.box[3] - self.box[1])

    @property
    def is_downscale(self) -> bool:
        return self.scale_x <= 1.0 and self.scale_y <= 1.0


def plan_resample(
    *, stored_width: int, stored_height: int, orientation: int, canvas: tuple[int, int], sizing: Sizing
) -> ResamplePlan:
    canvas_width, canvas_height = (canvas[1], canvas[0]) if swaps_axes(orientation) else canvas
    if sizing == "fill":
        scale = max(canvas_width / stored_width, canvas_height / stored_height)
        box_width, box_height = canvas_width / scale, canvas_height / scale
        left, top = (stored_width - box_width) / 2, (stored_height - box_height) / 2
        return ResamplePlan(
            box=(left, top, left + box_width, top + box_height), photo_size=(canvas_width, canvas_height)
        )
    scale = min(canvas_width / stored_width, canvas_height / stored_height)
    photo_size = (
        min(canvas_width, max(1, round(stored_width * scale))),
        min(canvas_height, max(1, round(stored_height * scale))),
    )
    return ResamplePlan(box=(0.0, 0.0, float(stored_width), float(stored_height)), photo_size=photo_size)


def jpeg_shrink_factor(*, plan: ResamplePlan, headroom: float) -> int:
    """Largest libjpeg DCT scale-down (1/2, 1/4, 1/8) that still leaves `headroom` times the output size.

    Decoding at 1/2 costs about 60 % of a full decode on this machine; headroom >= 1 guarantees the final
    resampling step never enlarges, which is what keeps shrink-on-load close to a full-size LANCZOS result.
    """
    box_width, box_height = plan.box[2] - plan.box[0], plan.box[3] - plan.box[1]
    for factor in JPEG_SHRINK_FACTORS:
        if (
            box_width / factor >= plan.photo_size[0] * headroom
            and box_height / factor >= plan.photo_size[1] * headroom
        ):
            return factor
    return 1


def shrunk_length(length: int, factor: int) -> int:
    """libjpeg's scaled dimension: ceil(length / factor)."""
    return math.ceil(length / factor)
