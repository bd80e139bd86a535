"""Pure geometry of a print in the stored photo's terms: the placement's crop box turned to the stored pixels,
the JPEG shrink-on-load factor. No pixels are touched, so both engines (and the benchmark) share one plan."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from lab.catalog.placement import PixelBox, Placement

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
# Shrink-on-load only while the decoded photo is still at least this many times the output size (libvips'
# own thumbnail rule): libjpeg's DCT scaling cost 16-20 dB on thin lines at 1.0 (bench/raster/README.md).
SHRINK_HEADROOM = 2.0


def normalised_orientation(value: object) -> int:
    """EXIF orientation 1-8; anything else (missing, 0, garbage) means 'as stored'."""
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def swaps_axes(orientation: int) -> bool:
    return orientation in _SWAPPING_ORIENTATIONS


def orient(image: Image.Image, *, orientation: int) -> Image.Image:
    """Apply an EXIF orientation to already-resampled pixels (cheap: it runs on print-sized images)."""
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return image if transpose is None else image.transpose(transpose)


@dataclass(frozen=True)
class ResamplePlan:
    """What an engine must produce, in the photo's stored (un-rotated) orientation.

    `box` is the region of the full-resolution stored photo, in pixels, that is resampled to exactly
    `photo_size`: the placement's crop box and photo area, turned to the stored orientation. Whatever of the
    output the photo area leaves (border, fit margins) becomes white after orientation.
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


def stored_box(
    *, box: PixelBox, orientation: int, stored_width: int, stored_height: int
) -> tuple[float, float, float, float]:
    """The region (left, top, right, bottom) of the stored photo that shows as `box` of the upright photo.

    Each EXIF orientation maps an upright point back to the stored pixels it came from (the inverse of
    `orient`); a rectangle maps to the rectangle between its two mapped corners.
    """
    corners = [
        _stored_point(x, y, orientation=orientation, stored_width=stored_width, stored_height=stored_height)
        for x, y in ((box.x, box.y), (box.x + box.width, box.y + box.height))
    ]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))


def _stored_point(
    x: int, y: int, *, orientation: int, stored_width: int, stored_height: int
) -> tuple[int, int]:
    width, height = stored_width, stored_height
    return {
        1: (x, y),
        2: (width - x, y),
        3: (width - x, height - y),
        4: (x, height - y),
        5: (y, x),
        6: (y, height - x),
        7: (width - y, height - x),
        8: (width - y, x),
    }.get(orientation, (x, y))


def plan_resample(
    *, stored_width: int, stored_height: int, orientation: int, placement: Placement
) -> ResamplePlan:
    """The stored-photo region and the size to resample it to, for a placement computed on the upright
    photo (lab.catalog.placement): its crop box becomes exactly its photo area on the print."""
    photo = placement.photo_area
    photo_size = (photo.height, photo.width) if swaps_axes(orientation) else (photo.width, photo.height)
    return ResamplePlan(
        box=stored_box(
            box=placement.crop_box,
            orientation=orientation,
            stored_width=stored_width,
            stored_height=stored_height,
        ),
        photo_size=photo_size,
    )


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
