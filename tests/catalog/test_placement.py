"""The placement geometry shared by quotes, order items and the rasterizer: its invariants over many photos,
prints and options (hypothesis, derandomised), and each refusal with its code."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.catalog.errors import CatalogError
from lab.catalog.placement import (
    MM_PER_INCH,
    CropRect,
    FocalPoint,
    Placement,
    PlacementError,
    PlacementOptions,
    placement_compute,
)

PRINTS = [(4.0, 6.0), (5.0, 7.0), (8.0, 10.0), (11.0, 14.0), (8.0, 8.0), (3.5, 5.0)]
PROPERTIES = settings(max_examples=300, derandomize=True, deadline=None)

photo_sides = st.integers(min_value=1, max_value=12_000)
prints = st.sampled_from(PRINTS)
dpis = st.sampled_from([50, 150, 300, 320, 400])
orientations = st.sampled_from(["auto", "portrait", "landscape"])
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _place(
    width: int,
    height: int,
    size: tuple[float, float] = (4.0, 6.0),
    dpi: int = 300,
    sizing: str = "fill",
    **options: object,
) -> Placement:
    return placement_compute(
        photo_width=width,
        photo_height=height,
        print_width_in=size[0],
        print_height_in=size[1],
        dpi=dpi,
        sizing=sizing,  # type: ignore[arg-type]
        options=PlacementOptions(**options),  # type: ignore[arg-type]
    )


def _area_inches(placement: Placement, size: tuple[float, float], border_mm: float) -> tuple[float, float]:
    long_in, short_in = max(size), min(size)
    width, height = (long_in, short_in) if placement.print_orientation == "landscape" else (short_in, long_in)
    border_in = border_mm / MM_PER_INCH
    return width - 2 * border_in, height - 2 * border_in


def _assert_box_inside_photo(placement: Placement, width: int, height: int) -> None:
    box = placement.crop_box
    assert box.width >= 1 and box.height >= 1
    assert box.x >= 0 and box.x + box.width <= width
    assert box.y >= 0 and box.y + box.height <= height


def _assert_exact_aspect(placement: Placement, aspect: float) -> None:
    """Within one pixel: one side of the box is the other side times the aspect, rounded."""
    box = placement.crop_box
    assert abs(box.width - box.height * aspect) < 1 or abs(box.height - box.width / aspect) < 1, (box, aspect)


@PROPERTIES
@given(
    width=photo_sides,
    height=photo_sides,
    size=prints,
    dpi=dpis,
    orientation=orientations,
    focal=st.none() | st.tuples(unit, unit),
    border=st.floats(0, 25.0),
)
def test_fill_gives_the_largest_box_of_the_image_areas_aspect_inside_the_photo(
    width, height, size, dpi, orientation, focal, border
):
    # given a photo, a print and a focal point (or none: the centre)
    focal_point = FocalPoint(*focal) if focal else None
    border = min(border, min(size) * MM_PER_INCH / 4)

    # when it is placed in fill mode
    placement = _place(
        width, height, size, dpi, focal_point=focal_point, orientation=orientation, border_mm=border
    )

    # then the box lies inside the photo, has the image area's aspect and is as large as the photo allows
    area_width_in, area_height_in = _area_inches(placement, size, border)
    aspect = area_width_in / area_height_in
    box = placement.crop_box
    _assert_box_inside_photo(placement, width, height)
    _assert_exact_aspect(placement, aspect)
    assert box.width == width or box.height == height
    # centred on the focal point, unless that would leave the photo (then it touches the edge)
    centre_x, centre_y = (focal or (0.5, 0.5))[0] * width, (focal or (0.5, 0.5))[1] * height
    assert abs(box.x + box.width / 2 - centre_x) <= 0.5 + 1e-6 or box.x in (0, width - box.width)
    assert abs(box.y + box.height / 2 - centre_y) <= 0.5 + 1e-6 or box.y in (0, height - box.height)
    # and the effective DPI is the box's pixels per printed inch on the tighter axis
    assert placement.effective_dpi == math.floor(
        min(box.width / area_width_in, box.height / area_height_in) + 1e-9
    )
    assert placement.photo_area == placement.image_area


@PROPERTIES
@given(
    width=photo_sides,
    height=photo_sides,
    size=prints,
    dpi=dpis,
    orientation=orientations,
    border=st.floats(0, 25.0),
)
def test_output_and_image_area_follow_orientation_border_and_dpi(
    width, height, size, dpi, orientation, border
):
    border = min(border, min(size) * MM_PER_INCH / 4)

    placement = _place(width, height, size, dpi, orientation=orientation, border_mm=border)

    long_px, short_px = round(max(size) * dpi), round(min(size) * dpi)
    expected = {
        "auto": "landscape" if width > height else "portrait",
        "portrait": "portrait",
        "landscape": "landscape",
    }[orientation]
    assert placement.print_orientation == expected
    output = (long_px, short_px) if expected == "landscape" else (short_px, long_px)
    assert (placement.output_width, placement.output_height) == output
    border_px = round(border / MM_PER_INCH * dpi)
    area = placement.image_area
    assert (area.x, area.y, area.width, area.height) == (
        border_px,
        border_px,
        output[0] - 2 * border_px,
        output[1] - 2 * border_px,
    )


@PROPERTIES
@given(
    width=st.integers(50, 12_000),
    height=st.integers(50, 12_000),
    size=prints,
    orientation=orientations,
    left=unit,
    top=unit,
    share=st.floats(0.05, 1.0),
    skew=st.floats(-0.009, 0.009),
)
def test_a_crop_rectangle_of_the_right_aspect_is_kept_to_within_a_pixel(
    width, height, size, orientation, left, top, share, skew
):
    # given a crop rectangle of the print's aspect (off by less than the 1 % tolerance), inside the photo
    long_in, short_in = max(size), min(size)
    landscape = orientation == "landscape" or (orientation == "auto" and width > height)
    aspect = (long_in / short_in if landscape else short_in / long_in) * (1 + skew)
    # the largest rectangle of that aspect, scaled by `share`, placed at (left, top) of the room left
    box_width = min(width, height * aspect) * share
    box_height = box_width / aspect
    crop = CropRect(
        x=left * (width - box_width) / width,
        y=top * (height - box_height) / height,
        width=box_width / width,
        height=box_height / height,
    )
    if orientation == "auto" and (box_width > box_height) != landscape:
        return  # auto follows the crop's own long side; covered by its own test

    # when it is placed
    placement = _place(width, height, size, orientation=orientation, crop=crop)

    # then the box is the rectangle trimmed to the exact aspect: inside it (to half a pixel), centred on it
    exact = (long_in / short_in) if placement.print_orientation == "landscape" else (short_in / long_in)
    box = placement.crop_box
    _assert_box_inside_photo(placement, width, height)
    _assert_exact_aspect(placement, exact)
    rect_left, rect_top = crop.x * width, crop.y * height
    assert box.x >= rect_left - 0.5 - 1e-6 and box.x + box.width <= rect_left + box_width + 0.5 + 1e-6
    assert box.y >= rect_top - 0.5 - 1e-6 and box.y + box.height <= rect_top + box_height + 0.5 + 1e-6
    assert box.width >= math.floor(box_width * 0.98) - 1 and box.height >= math.floor(box_height * 0.98) - 1


@PROPERTIES
@given(
    width=photo_sides,
    height=photo_sides,
    size=prints,
    dpi=dpis,
    orientation=orientations,
    border=st.floats(0, 25.0),
)
def test_fit_prints_the_whole_photo_centred_in_the_image_area(width, height, size, dpi, orientation, border):
    border = min(border, min(size) * MM_PER_INCH / 4)

    placement = _place(width, height, size, dpi, sizing="fit", orientation=orientation, border_mm=border)

    area, photo = placement.image_area, placement.photo_area
    assert (placement.crop_box.x, placement.crop_box.y) == (0, 0)
    assert (placement.crop_box.width, placement.crop_box.height) == (width, height)
    assert area.x <= photo.x and photo.x + photo.width <= area.x + area.width
    assert area.y <= photo.y and photo.y + photo.height <= area.y + area.height
    assert photo.width == area.width or photo.height == area.height
    assert abs((photo.x - area.x) - (area.x + area.width - photo.x - photo.width)) <= 1
    assert abs((photo.y - area.y) - (area.y + area.height - photo.y - photo.height)) <= 1
    area_width_in, area_height_in = _area_inches(placement, size, border)
    assert placement.effective_dpi == math.floor(max(width / area_width_in, height / area_height_in) + 1e-9)


@PROPERTIES
@given(
    width=photo_sides, height=photo_sides, size=prints, orientation=orientations, focal=st.tuples(unit, unit)
)
def test_crop_box_and_effective_dpi_do_not_depend_on_the_printers_dpi(
    width, height, size, orientation, focal
):
    # what a quote promises (at the nominal DPI) is what any printer prints
    placements = [
        _place(width, height, size, dpi, orientation=orientation, focal_point=FocalPoint(*focal))
        for dpi in (150, 300, 320, 400)
    ]

    assert len({(p.crop_box, p.effective_dpi, p.print_orientation) for p in placements}) == 1


def test_examples_fill_centre_and_fit_on_a_square_photo():
    # a square photo prints portrait; fill keeps the middle two thirds of its width, fit leaves a third white
    fill = _place(3000, 3000)
    fit = _place(3000, 3000, sizing="fit")

    assert fill.print_orientation == fit.print_orientation == "portrait"
    assert (fill.crop_box.x, fill.crop_box.y, fill.crop_box.width, fill.crop_box.height) == (
        500,
        0,
        2000,
        3000,
    )
    assert fill.effective_dpi == 500
    assert (fit.photo_area.x, fit.photo_area.y, fit.photo_area.width, fit.photo_area.height) == (
        0,
        300,
        1200,
        1200,
    )
    assert fit.effective_dpi == 750


def test_focal_point_near_an_edge_moves_the_box_inside_the_photo():
    # a 6000x2000 photo on 4x6 landscape: the box is 3000x2000; a focal point at the far right pins it there
    right = _place(6000, 2000, focal_point=FocalPoint(x=0.98, y=0.1))
    left = _place(6000, 2000, focal_point=FocalPoint(x=0.25, y=0.5))

    assert (right.crop_box.x, right.crop_box.width, right.crop_box.height) == (3000, 3000, 2000)
    assert (left.crop_box.x, left.crop_box.y) == (0, 0)
    middle = _place(6000, 2000, focal_point=FocalPoint(x=0.5, y=0.5))
    assert middle.crop_box.x == 1500


def test_auto_orientation_follows_the_crop_rectangle():
    # a portrait 2:3 crop of a landscape photo prints portrait under auto
    placement = _place(6000, 4000, crop=CropRect(x=0.1, y=0.0, width=2666.67 / 6000, height=1.0))

    assert placement.print_orientation == "portrait"
    assert (placement.crop_box.x, placement.crop_box.width, placement.crop_box.height) == (600, 2666, 4000)


def test_border_shrinks_the_image_area_and_raises_the_aspect_it_needs():
    # a 5 mm border on 4x6 at 300 DPI: 59 px each side; the area is 3.606 x 5.606 in
    placement = _place(1800, 1200, border_mm=5)

    assert placement.border_px == 59
    area = placement.image_area
    assert (area.x, area.y, area.width, area.height) == (59, 59, 1800 - 118, 1200 - 118)
    assert (placement.crop_box.width, placement.crop_box.height) == (1800, round(1800 * 3.6063 / 5.6063))


@pytest.mark.parametrize(
    ("sizing", "options", "code"),
    [
        ("fill", {"crop": CropRect(0.5, 0.0, 0.6, 1.0)}, CatalogError.CROP_OUT_OF_BOUNDS),
        ("fill", {"crop": CropRect(-0.1, 0.0, 0.5, 0.5)}, CatalogError.CROP_OUT_OF_BOUNDS),
        ("fill", {"crop": CropRect(0.0, 0.0, 0.0, 1.0)}, CatalogError.CROP_OUT_OF_BOUNDS),
        ("fill", {"crop": CropRect(0.0, 0.0, math.nan, 1.0)}, CatalogError.CROP_OUT_OF_BOUNDS),
        # a square of the photo's pixels on a 3:2 print; the whole 3:2 photo on a print forced portrait
        ("fill", {"crop": CropRect(0.0, 0.0, 2 / 3, 1.0)}, CatalogError.CROP_ASPECT_MISMATCH),
        (
            "fill",
            {"crop": CropRect(0.0, 0.0, 1.0, 1.0), "orientation": "portrait"},
            CatalogError.CROP_ASPECT_MISMATCH,
        ),
        (
            "fill",
            {"crop": CropRect(0.0, 0.0, 1.0, 1.0), "focal_point": FocalPoint(0.5, 0.5)},
            CatalogError.CROP_AND_FOCAL_POINT,
        ),
        ("fit", {"crop": CropRect(0.0, 0.0, 1.0, 1.0)}, CatalogError.CROP_REQUIRES_FILL),
        ("fit", {"focal_point": FocalPoint(0.5, 0.5)}, CatalogError.CROP_REQUIRES_FILL),
        ("fill", {"focal_point": FocalPoint(1.2, 0.5)}, CatalogError.FOCAL_POINT_OUT_OF_BOUNDS),
        ("fill", {"border_mm": -1.0}, CatalogError.BORDER_OUT_OF_RANGE),
        ("fill", {"border_mm": 25.5}, CatalogError.BORDER_OUT_OF_RANGE),  # over a quarter of 4 in (25.4 mm)
        ("fit", {"border_mm": math.inf}, CatalogError.BORDER_OUT_OF_RANGE),
    ],
)
def test_refusals_name_their_code(sizing, options, code):
    with pytest.raises(PlacementError) as refused:
        _place(1800, 1200, sizing=sizing, **options)

    assert refused.value.code == code


def test_a_crop_within_the_tolerance_is_accepted_and_one_beyond_refused():
    # 3:2 is 1.5; 1.514 is inside 1 %, 1.516 outside
    inside = CropRect(0.0, 0.0, 1.0, 1800 / 1.514 / 1200)
    outside = CropRect(0.0, 0.0, 1.0, 1800 / 1.516 / 1200)

    box = _place(1800, 1200, crop=inside).crop_box
    assert (box.x, box.y, box.width, box.height) == (9, 0, 1782, 1188)
    with pytest.raises(PlacementError) as refused:
        _place(1800, 1200, crop=outside)
    assert refused.value.details == {"crop_aspect": 1.516, "expected_aspect": 1.5}


def test_the_largest_border_is_a_quarter_of_the_short_side():
    placement = _place(1800, 1200, border_mm=25.4)

    assert placement.image_area.height == 1200 - 2 * 300
