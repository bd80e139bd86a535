"""Where a photo lands on a product: print orientation, white border, and the crop box in the photo's pixels.
One pure function (no Django, no pixels) shared by quotes, order items and the rasterizer, so all agree."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from lab.catalog.errors import CatalogError
from lab.lib.errors import DomainError

Sizing = Literal["fill", "fit"]
Orientation = Literal["auto", "portrait", "landscape"]
PrintOrientation = Literal["portrait", "landscape"]

MM_PER_INCH: Final = 25.4
# Quotes and order items are computed at this resolution. The crop box and the effective DPI do not depend
# on it (they follow from the paper in inches), only the output size in pixels does, which the rasterizer
# computes again at the printer's own DPI.
NOMINAL_DPI: Final = 300
# A crop rectangle's aspect may differ from the image area's by this share (a client rounding its rectangle
# to whole pixels of a small photo is off by a fraction of a percent); the crop box is then trimmed to the
# exact aspect inside the rectangle.
CROP_ASPECT_TOLERANCE: Final = 0.01
# A border is at most this share of the paper's short side on each side, so at least half of the short side
# is photo.
MAX_BORDER_SHARE: Final = 0.25
_EPSILON: Final = 1e-9


class PlacementError(DomainError):
    """Placement options that cannot make a print of this product from this photo (an invalid request)."""


@dataclass(frozen=True)
class CropRect:
    """A rectangle of the upright photo (after EXIF orientation), each value a share 0..1 of its side."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class FocalPoint:
    """A point of the upright photo, 0..1 of its width and height, that the automatic crop centres on."""

    x: float
    y: float


@dataclass(frozen=True)
class PlacementOptions:
    """What a customer chooses per item; the defaults are the lab's automatic placement."""

    crop: CropRect | None = None
    focal_point: FocalPoint | None = None
    orientation: Orientation = "auto"
    border_mm: float = 0.0


@dataclass(frozen=True)
class PixelBox:
    x: int
    y: int
    width: int
    height: int

    def as_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


@dataclass(frozen=True)
class Placement:
    """The geometry of one print.

    `crop_box` is in upright photo pixels; the other boxes are on the output raster at the DPI given.
    `photo_area` is where the crop box lands: the whole image area (inside the border) in fill mode, the
    photo's share of it, centred, in fit mode (the rest is white).
    """

    print_orientation: PrintOrientation
    output_width: int
    output_height: int
    border_px: int
    image_area: PixelBox
    photo_area: PixelBox
    crop_box: PixelBox
    effective_dpi: int


def max_border_mm(*, print_width_in: float, print_height_in: float) -> float:
    return min(print_width_in, print_height_in) * MM_PER_INCH * MAX_BORDER_SHARE


def placement_compute(
    *,
    photo_width: int,
    photo_height: int,
    print_width_in: float,
    print_height_in: float,
    dpi: int,
    sizing: Sizing,
    options: PlacementOptions,
) -> Placement:
    """Place an upright photo of photo_width x photo_height pixels on a print (inches, orientation-free).

    Orientation `auto` prints landscape when what is printed (the crop rectangle if there is one, otherwise
    the photo) is wider than tall, portrait otherwise (a square prints portrait). Fill crops: the crop
    rectangle trimmed to the image area's exact aspect, or else the largest box of that aspect centred on
    the focal point (or the photo's centre), moved to stay inside the photo. Fit prints the whole photo
    inside the image area, so it refuses a crop or a focal point rather than ignore it.
    Raises PlacementError (with a CatalogError code) for options that do not fit this photo and product.
    """
    if photo_width <= 0 or photo_height <= 0 or print_width_in <= 0 or print_height_in <= 0 or dpi <= 0:
        raise ValueError("photo size, print size and DPI must be positive")
    if sizing not in ("fill", "fit") or options.orientation not in ("auto", "portrait", "landscape"):
        raise ValueError(f"unknown sizing {sizing!r} or orientation {options.orientation!r}")
    _check_options(
        options=options, sizing=sizing, print_width_in=print_width_in, print_height_in=print_height_in
    )
    crop = options.crop
    subject = (crop.width * photo_width, crop.height * photo_height) if crop else (photo_width, photo_height)
    print_orientation = _print_orientation(options.orientation, width=subject[0], height=subject[1])
    long_in, short_in = max(print_width_in, print_height_in), min(print_width_in, print_height_in)
    paper_width_in, paper_height_in = (
        (long_in, short_in) if print_orientation == "landscape" else (short_in, long_in)
    )
    border_in = options.border_mm / MM_PER_INCH
    area_width_in, area_height_in = paper_width_in - 2 * border_in, paper_height_in - 2 * border_in
    output_width, output_height = round(paper_width_in * dpi), round(paper_height_in * dpi)
    border_px = round(border_in * dpi)
    image_area = PixelBox(
        x=border_px,
        y=border_px,
        width=max(1, output_width - 2 * border_px),
        height=max(1, output_height - 2 * border_px),
    )
    if sizing == "fit":
        crop_box = PixelBox(x=0, y=0, width=photo_width, height=photo_height)
        photo_area = _fitted(photo_width=photo_width, photo_height=photo_height, area=image_area)
        # The whole photo at the scale that fits it: the looser axis sets the resolution.
        effective_dpi = max(photo_width / area_width_in, photo_height / area_height_in)
    else:
        aspect = area_width_in / area_height_in
        crop_box = _crop_box(
            photo_width=photo_width, photo_height=photo_height, aspect=aspect, options=options
        )
        photo_area = image_area
        # The crop box covers the image area: the tighter axis sets the resolution.
        effective_dpi = min(crop_box.width / area_width_in, crop_box.height / area_height_in)
    return Placement(
        print_orientation=print_orientation,
        output_width=output_width,
        output_height=output_height,
        border_px=border_px,
        image_area=image_area,
        photo_area=photo_area,
        crop_box=crop_box,
        effective_dpi=math.floor(effective_dpi + _EPSILON),
    )


def _check_options(
    *, options: PlacementOptions, sizing: Sizing, print_width_in: float, print_height_in: float
) -> None:
    limit = max_border_mm(print_width_in=print_width_in, print_height_in=print_height_in)
    if not (math.isfinite(options.border_mm) and 0 <= options.border_mm <= limit + _EPSILON):
        raise PlacementError(
            CatalogError.BORDER_OUT_OF_RANGE,
            f"A border is 0 to {limit:.1f} mm on this product (a quarter of the paper's short side).",
            max_border_mm=round(limit, 1),
        )
    crop, focal_point = options.crop, options.focal_point
    if crop is not None and focal_point is not None:
        raise PlacementError(
            CatalogError.CROP_AND_FOCAL_POINT, "Give a crop rectangle or a focal point, not both."
        )
    if sizing == "fit" and (crop is not None or focal_point is not None):
        raise PlacementError(
            CatalogError.CROP_REQUIRES_FILL,
            "Fit prints the whole photo; a crop rectangle or a focal point needs sizing `fill`.",
        )
    if crop is not None and not _is_inside_unit_square(crop):
        raise PlacementError(
            CatalogError.CROP_OUT_OF_BOUNDS,
            "The crop rectangle must have a positive size and lie inside the photo (0..1 on each axis).",
        )
    if focal_point is not None and not all(
        math.isfinite(value) and 0 <= value <= 1 for value in (focal_point.x, focal_point.y)
    ):
        raise PlacementError(
            CatalogError.FOCAL_POINT_OUT_OF_BOUNDS, "The focal point must lie inside the photo (0..1)."
        )


def _is_inside_unit_square(crop: CropRect) -> bool:
    values = (crop.x, crop.y, crop.width, crop.height)
    return (
        all(math.isfinite(value) for value in values)
        # Within float rounding of the edges on both sides (a client's `1 - height` can be -1e-16): the pixel
        # box is clamped inside the photo in _crop_box.
        and crop.x >= -_EPSILON
        and crop.y >= -_EPSILON
        and crop.width > 0
        and crop.height > 0
        and crop.x + crop.width <= 1 + _EPSILON
        and crop.y + crop.height <= 1 + _EPSILON
    )


def _print_orientation(orientation: Orientation, *, width: float, height: float) -> PrintOrientation:
    if orientation != "auto":
        return orientation
    return "landscape" if width > height else "portrait"


def _crop_box(*, photo_width: int, photo_height: int, aspect: float, options: PlacementOptions) -> PixelBox:
    crop = options.crop
    if crop is not None:
        region_width, region_height = crop.width * photo_width, crop.height * photo_height
        if min(region_width, region_height) < 1 - _EPSILON:
            # Less than one of the photo's pixels is no region to print, and its aspect is no number: a
            # height of 1e-320 made it infinite, and the problem carrying it could not be sent (a 500).
            raise PlacementError(
                CatalogError.CROP_OUT_OF_BOUNDS,
                f"The crop rectangle must cover at least one pixel of the photo on each side; it covers "
                f"{region_width:.3g} x {region_height:.3g} of this {photo_width} x {photo_height} photo.",
                min_width=1 / photo_width,
                min_height=1 / photo_height,
            )
        crop_aspect = region_width / region_height
        if abs(crop_aspect / aspect - 1) > CROP_ASPECT_TOLERANCE:
            raise PlacementError(
                CatalogError.CROP_ASPECT_MISMATCH,
                f"The crop rectangle is {crop_aspect:.4f}:1 in the photo's pixels; this print's image area "
                f"is {aspect:.4f}:1 (1 % tolerance).",
                crop_aspect=round(crop_aspect, 4),
                expected_aspect=round(aspect, 4),
            )
        centre_x = (crop.x + crop.width / 2) * photo_width
        centre_y = (crop.y + crop.height / 2) * photo_height
    else:
        region_width, region_height = photo_width, photo_height
        focal_point = options.focal_point or FocalPoint(x=0.5, y=0.5)
        centre_x, centre_y = focal_point.x * photo_width, focal_point.y * photo_height
    width, height = _largest_of_aspect(width=region_width, height=region_height, aspect=aspect)
    width, height = min(width, photo_width), min(height, photo_height)
    return PixelBox(
        x=min(max(round(centre_x - width / 2), 0), photo_width - width),
        y=min(max(round(centre_y - height / 2), 0), photo_height - height),
        width=width,
        height=height,
    )


def _largest_of_aspect(*, width: float, height: float, aspect: float) -> tuple[int, int]:
    """The largest whole-pixel box inside width x height whose aspect is `aspect` to within one pixel."""
    whole_width, whole_height = max(1, math.floor(width + _EPSILON)), max(1, math.floor(height + _EPSILON))
    if width / height >= aspect:  # height-limited
        return max(1, min(whole_width, round(whole_height * aspect))), whole_height
    return whole_width, max(1, min(whole_height, round(whole_width / aspect)))


def _fitted(*, photo_width: int, photo_height: int, area: PixelBox) -> PixelBox:
    scale = min(area.width / photo_width, area.height / photo_height)
    width = min(area.width, max(1, round(photo_width * scale)))
    height = min(area.height, max(1, round(photo_height * scale)))
    return PixelBox(
        x=area.x + (area.width - width) // 2,
        y=area.y + (area.height - height) // 2,
        width=width,
        height=height,
    )
