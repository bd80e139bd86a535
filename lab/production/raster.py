"""The rasterizer: one call that turns a customer photo into a print-ready raster for a product size.
Decode, EXIF-orient, place (crop, orientation, border) at the printer's DPI, convert to its ICC, encode."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from typing import Final, Literal

from PIL import Image

from lab.catalog.placement import Placement, PlacementError, PlacementOptions, placement_compute
from lab.production.imaging import pillow_engine, vips_engine
from lab.production.imaging.colour import (
    OutputProfile,
    converts_in_libvips,
    output_profile,
    to_output_profile,
)
from lab.production.imaging.errors import INVALID_SPEC, TOO_LARGE, RasterError
from lab.production.imaging.geometry import (
    SHRINK_HEADROOM,
    ResamplePlan,
    jpeg_shrink_factor,
    normalised_orientation,
    orient,
    plan_resample,
    swaps_axes,
)
from lab.production.imaging.source import Source, decode, decoding, open_source

__all__ = [
    "Engine",
    "RasterError",
    "RasterResult",
    "RasterSpec",
    "raster_placement",
    "rasterize",
    "target_size",
]

Engine = Literal["pyvips", "pillow"]
JPEG_QUALITY: Final = 95
MAX_OUTPUT_PIXELS: Final = 200_000_000
_MEDIA_TYPES: Final = {"jpeg": "image/jpeg", "tiff": "image/tiff"}
_PAPER_WHITE: Final[dict[str, int | tuple[int, ...]]] = {"RGB": (255, 255, 255), "CMYK": (0, 0, 0, 0)}


@dataclass(frozen=True)
class RasterSpec:
    """What the printer needs: size in inches (orientation-free: 4 x 6 = 6 x 4), DPI, sizing, format, ICC,
    and the item's placement options (crop or focal point, orientation, border)."""

    width_in: float
    height_in: float
    dpi: int = 300
    sizing: Literal["fill", "fit"] = "fill"  # fill = crop to the paper; fit = the whole photo, white margins
    output_format: Literal["jpeg", "tiff"] = "jpeg"
    output_icc: bytes | None = None  # printer ICC profile; None = sRGB
    placement: PlacementOptions = field(default_factory=PlacementOptions)


@dataclass(frozen=True)
class RasterResult:
    data: bytes
    width_px: int
    height_px: int
    media_type: str
    engine: str


def _validate(spec: RasterSpec) -> None:
    if not (spec.width_in > 0 and spec.height_in > 0 and spec.dpi > 0):
        raise RasterError(code=INVALID_SPEC, message="print size and DPI must be positive")
    if spec.sizing not in ("fill", "fit") or spec.output_format not in _MEDIA_TYPES:
        raise RasterError(code=INVALID_SPEC, message="unknown sizing or output format")
    if spec.width_in * spec.dpi * spec.height_in * spec.dpi > MAX_OUTPUT_PIXELS:
        raise RasterError(code=TOO_LARGE, message="print would exceed the output pixel limit")


def raster_placement(*, spec: RasterSpec, photo_width: int, photo_height: int, orientation: int) -> Placement:
    """The print's geometry for a photo stored as photo_width x photo_height with this EXIF orientation: the
    function quotes and order items use (lab.catalog.placement), on the upright photo, at the printer's DPI.
    Options it refuses (an order's items were checked with them already) are a permanent `invalid_spec`."""
    swapped = swaps_axes(orientation)
    try:
        return placement_compute(
            photo_width=photo_height if swapped else photo_width,
            photo_height=photo_width if swapped else photo_height,
            print_width_in=spec.width_in,
            print_height_in=spec.height_in,
            dpi=spec.dpi,
            sizing=spec.sizing,
            options=spec.placement,
        )
    except PlacementError as error:
        raise RasterError(code=INVALID_SPEC, message=f"{error.code}: {error.message}") from error


def target_size(
    *, spec: RasterSpec, photo_width: int, photo_height: int, orientation: int
) -> tuple[int, int]:
    """Output (width, height) in pixels for a photo stored as photo_width x photo_height.

    With orientation `auto` the print's long side follows the photo's long side after EXIF orientation, so a
    landscape photo prints landscape on the same 4x6 paper; a square photo prints portrait.
    """
    placement = raster_placement(
        spec=spec, photo_width=photo_width, photo_height=photo_height, orientation=orientation
    )
    return placement.output_width, placement.output_height


def choose_engine(*, plan: ResamplePlan) -> Engine:
    """pyvips for every photo larger than its print (streaming: memory follows the print, not the photo);
    Pillow's LANCZOS with a sub-pixel box for enlarging, the sharper choice there (bench/raster/README.md)."""
    return "pyvips" if plan.is_downscale else "pillow"


def _resample(
    *, data: bytes, source: Source, plan: ResamplePlan, engine: Engine, to_srgb: bool
) -> Image.Image:
    shrink_factor = jpeg_shrink_factor(plan=plan, headroom=SHRINK_HEADROOM) if source.format == "jpeg" else 1
    with decoding():
        image = decode(data, source, shrink_factor=shrink_factor)
        if engine == "pillow":
            return pillow_engine.resample(
                image=image, mode=source.mode, plan=plan, shrink_factor=shrink_factor
            )
        return vips_engine.resample(
            image=image,
            mode=source.mode,
            plan=plan,
            shrink_factor=shrink_factor,
            to_srgb_from=source.icc_profile if to_srgb else None,
        )


def _on_canvas(photo: Image.Image, *, placement: Placement) -> Image.Image:
    """Border and fit margins: the photo on paper white of the output colour space at its photo area (after
    colour conversion, so the border is the printer's white whatever the source profile)."""
    canvas = (placement.output_width, placement.output_height)
    if photo.size == canvas:
        return photo
    paper = Image.new(photo.mode, canvas, _PAPER_WHITE[photo.mode])
    paper.paste(photo, (placement.photo_area.x, placement.photo_area.y))
    return paper


def _encode(image: Image.Image, *, spec: RasterSpec, profile: OutputProfile) -> bytes:
    # Only pixels, the output ICC profile (colour data the printer needs) and the DPI leave this function:
    # the source's EXIF (GPS, camera serial), XMP and comments are dropped on purpose.
    image.info = {}
    buffer = io.BytesIO()
    if spec.output_format == "jpeg":
        image.save(
            buffer,
            "JPEG",
            quality=JPEG_QUALITY,
            subsampling=0,
            icc_profile=profile.icc,
            dpi=(spec.dpi, spec.dpi),
        )
    else:
        image.save(buffer, "TIFF", compression="raw", icc_profile=profile.icc, dpi=(spec.dpi, spec.dpi))
    return buffer.getvalue()


def rasterize(
    *, data: bytes, spec: RasterSpec, engine: Engine | None = None, orientation: int | None = None
) -> RasterResult:
    """Turn photo bytes into a print-ready raster. Raises RasterError (permanent) for bad input or spec.

    `engine` is for benchmarks and tests that compare engines; production leaves it None and gets the
    engine chosen by measurement for this photo (recorded in the result). `orientation`: the one intake
    recorded for a JPEG or PNG, which the customer's quote and proof were made with (libvips' own reading
    otherwise): photos stored before intake read it as libvips does (a phone photo whose GPS was stripped
    kept an EXIF header only Pillow read) print as they were quoted, not sideways. A TIFF keeps libvips'
    reading: intake records exactly that now (from the same stored bytes), and a TIFF stored before it did
    has orientation 1 recorded beside the size Pillow had already turned by the tag, so for it libvips'
    reading, not the recorded 1, is the one its quote was made with (wherever the two read the tag alike).
    """
    _validate(spec)
    profile = output_profile(spec.output_icc)
    source = open_source(data)
    if orientation is not None and source.format in ("jpeg", "png"):
        source = dataclasses.replace(source, orientation=normalised_orientation(orientation))
    placement = raster_placement(
        spec=spec, photo_width=source.width, photo_height=source.height, orientation=source.orientation
    )
    plan = plan_resample(
        stored_width=source.width,
        stored_height=source.height,
        orientation=source.orientation,
        placement=placement,
    )
    chosen = engine or choose_engine(plan=plan)
    # One name for every stage so each print-sized intermediate is freed as soon as the next one exists:
    # an 8x10 at 300 DPI is 29 MB per copy and workers have a 200 MB budget.
    to_srgb = chosen == "pyvips" and converts_in_libvips(
        embedded_icc=source.icc_profile, mode=source.mode, output=profile
    )
    printed = _resample(data=data, source=source, plan=plan, engine=chosen, to_srgb=to_srgb)
    printed = orient(printed, orientation=source.orientation)
    if not to_srgb:
        printed = to_output_profile(printed, embedded_icc=source.icc_profile, output=profile)
    printed = _on_canvas(printed, placement=placement)
    return RasterResult(
        data=_encode(printed, spec=spec, profile=profile),
        width_px=printed.width,
        height_px=printed.height,
        media_type=_MEDIA_TYPES[spec.output_format],
        engine=chosen,
    )
