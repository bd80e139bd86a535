"""The rasterizer honours the placement geometry of lab.catalog.placement (crop rectangle, focal point,
orientation, border) on both engines and in every EXIF orientation: each output pixel shows the photo cell the
geometry says it should, and the border is paper white of the right width at the printer's DPI."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image, ImageChops, ImageOps

from lab.catalog.placement import MM_PER_INCH, CropRect, FocalPoint, Placement, PlacementOptions
from lab.production.imaging.geometry import orient, stored_box
from lab.production.imaging.pillow_engine import SHARPEN
from lab.production.raster import Engine, RasterError, RasterSpec, raster_placement, rasterize
from tests.support.images import STORED_FOR_ORIENTATION

CELL = 100  # photo pixels per grid cell
WHITE = (255, 255, 255)


def _cell_colour(column: int, row: int) -> tuple[int, int, int]:
    return 15 + 20 * column, 15 + 20 * row, 128


def _grid(width: int, height: int) -> Image.Image:
    """The upright photo: CELL x CELL cells whose red tells the column and green the row."""
    image = Image.new("RGB", (width, height))
    for column in range(width // CELL):
        for row in range(height // CELL):
            image.paste(
                _cell_colour(column, row), (column * CELL, row * CELL, (column + 1) * CELL, (row + 1) * CELL)
            )
    return image


def _photo(width: int, height: int, *, orientation: int = 1, image_format: str = "JPEG") -> bytes:
    upright = _grid(width, height)
    transpose = STORED_FOR_ORIENTATION[orientation]
    stored = upright if transpose is None else upright.transpose(transpose)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    options: dict[str, object] = {"exif": exif.tobytes()}
    if image_format == "JPEG":
        options |= {"quality": 95, "subsampling": 0}
    stored.save(buffer, image_format, **options)
    return buffer.getvalue()


def _print(data: bytes, spec: RasterSpec, engine: Engine | None = None) -> Image.Image:
    result = rasterize(data=data, spec=spec, engine=engine)
    image = Image.open(io.BytesIO(result.data))
    image.load()
    assert (result.width_px, result.height_px) == image.size
    return image.convert("RGB")


def _cell_at(pixel: tuple[int, ...]) -> tuple[int, int] | None:
    red, green, blue = pixel[:3]
    column, row = round((red - 15) / 20), round((green - 15) / 20)
    if (
        _cell_colour(column, row) != (red, green, blue)
        and max(abs(a - b) for a, b in zip(_cell_colour(column, row), (red, green, blue), strict=True)) > 7
    ):
        return None
    return column, row


def _assert_follows_the_geometry(printed: Image.Image, placement: Placement) -> int:
    """Every probed output pixel inside the photo area shows the cell the crop box maps it to; every one
    outside it is paper white. Returns how many pixels were checked against a cell."""
    assert printed.size == (placement.output_width, placement.output_height)
    box, area = placement.crop_box, placement.photo_area
    scale_x, scale_y = box.width / area.width, box.height / area.height
    # LANCZOS reaches 3 output pixels, the sharpen one more: skip what is that close to a cell edge.
    margin_x, margin_y = 5 * max(1.0, scale_x), 5 * max(1.0, scale_y)
    checked = 0
    for out_y in range(0, printed.height, 3):
        for out_x in range(0, printed.width, 3):
            pixel = printed.getpixel((out_x, out_y))
            assert isinstance(pixel, tuple)
            inside = area.x <= out_x < area.x + area.width and area.y <= out_y < area.y + area.height
            if not inside:
                assert pixel == WHITE, (out_x, out_y, pixel)
                continue
            photo_x = box.x + (out_x + 0.5 - area.x) * scale_x
            photo_y = box.y + (out_y + 0.5 - area.y) * scale_y
            near_x = min(photo_x % CELL, CELL - photo_x % CELL) < margin_x
            near_y = min(photo_y % CELL, CELL - photo_y % CELL) < margin_y
            if near_x or near_y:
                continue
            expected = (int(photo_x // CELL), int(photo_y // CELL))
            assert _cell_at(pixel) == expected, ((out_x, out_y), (photo_x, photo_y), pixel, expected)
            checked += 1
    return checked


def _placement_for(data: bytes, spec: RasterSpec) -> Placement:
    image = Image.open(io.BytesIO(data))
    orientation = image.getexif().get(0x0112, 1)
    return raster_placement(
        spec=spec, photo_width=image.width, photo_height=image.height, orientation=orientation
    )


BORDERED_ASPECT = (6 - 2 * 10 / MM_PER_INCH) / (4 - 2 * 10 / MM_PER_INCH)
CASES = {
    # 1200x800 landscape photo, 4x6 at 50 DPI: 300x200 output, downscaled 4x (pyvips is the measured choice)
    "fill_centred": ((1200, 800), {}),
    "crop_rectangle": ((1200, 800), {"crop": CropRect(x=0.5, y=0.5, width=0.5, height=0.5)}),
    "crop_rectangle_off_grid": ((1200, 800), {"crop": CropRect(x=0.13, y=0.21, width=0.6, height=0.6)}),
    "focal_point_top_right": ((1200, 600), {"focal_point": FocalPoint(x=0.9, y=0.1)}),
    "focal_point_left": ((1200, 600), {"focal_point": FocalPoint(x=0.2, y=0.5)}),
    "landscape_photo_printed_portrait": ((1200, 800), {"orientation": "portrait"}),
    "portrait_photo_printed_landscape": ((800, 1200), {"orientation": "landscape"}),
    "portrait_photo_auto": ((800, 1200), {}),
    "border": ((1200, 800), {"border_mm": 10.0}),
    # a 10 mm border makes the image area 5.21 x 3.21 in: the crop has that aspect in the photo's pixels
    "border_and_crop": (
        (1200, 800),
        {
            "border_mm": 10.0,
            "crop": CropRect(x=0.1, y=0.1, width=0.5, height=0.5 * 1200 / BORDERED_ASPECT / 800),
        },
    ),
}


@pytest.mark.parametrize("engine", ["pyvips", "pillow"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_placement_option_lands_the_right_cells_on_both_engines(case: str, engine: Engine) -> None:
    # given a grid photo and an item's placement options
    (width, height), options = CASES[case]
    data = _photo(width, height)
    spec = RasterSpec(
        width_in=4,
        height_in=6,
        dpi=50,
        output_format="tiff",
        placement=PlacementOptions(**options),  # type: ignore[arg-type]
    )

    # when it is rasterized by either engine
    printed = _print(data, spec, engine)

    # then every pixel is where the shared geometry puts it
    assert _assert_follows_the_geometry(printed, _placement_for(data, spec)) > 500


def _psnr(first: Image.Image, second: Image.Image) -> float:
    histogram = ImageChops.difference(first, second).histogram()
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (first.width * first.height * 3)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _reference(data: bytes, placement: Placement, *, shift: int = 0) -> Image.Image:
    """What the geometry asks for, drawn independently: the upright photo's crop box (optionally moved by
    `shift` pixels), resized onto the photo area of white paper."""
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    box, area = placement.crop_box, placement.photo_area
    left = box.x + shift
    region = upright.resize(
        (area.width, area.height),
        Image.Resampling.LANCZOS,
        box=(left, box.y, left + box.width, box.y + box.height),
        reducing_gap=None,
    ).filter(SHARPEN)
    paper = Image.new("RGB", (placement.output_width, placement.output_height), WHITE)
    paper.paste(region, (area.x, area.y))
    return paper


@pytest.mark.parametrize("engine", ["pyvips", "pillow"])
@pytest.mark.parametrize("case", ["crop_rectangle_off_grid", "focal_point_top_right", "border_and_crop"])
def test_the_raster_matches_an_independent_drawing_of_the_geometry_to_the_pixel(
    case: str, engine: Engine
) -> None:
    # given a grid photo and placement options
    (width, height), options = CASES[case]
    data = _photo(width, height)
    spec = RasterSpec(
        width_in=4,
        height_in=6,
        dpi=100,
        output_format="tiff",
        placement=PlacementOptions(**options),  # type: ignore[arg-type]
    )
    placement = _placement_for(data, spec)

    # when it is rasterized
    printed = _print(data, spec, engine)

    # then it matches the crop box drawn on its own, and clearly better than the box one pixel off either way
    exact = _psnr(printed, _reference(data, placement))
    assert exact >= 50.0
    box = placement.crop_box
    shifts = [shift for shift in (-1, 1) if box.x + shift >= 0 and box.x + box.width + shift <= width]
    assert shifts
    for shift in shifts:
        assert _psnr(printed, _reference(data, placement, shift=shift)) < exact - 8


@pytest.mark.parametrize("sizing", ["fill", "fit"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_crop_is_taken_from_the_upright_photo_in_every_exif_orientation(
    orientation: int, sizing: str
) -> None:
    # given the same upright grid stored in each EXIF orientation, and a crop of its upright right half
    data = _photo(1200, 800, orientation=orientation)
    options = (
        PlacementOptions(crop=CropRect(x=0.5, y=0.25, width=0.5, height=0.5))
        if sizing == "fill"
        else PlacementOptions()
    )
    spec = RasterSpec(width_in=4, height_in=6, dpi=50, sizing=sizing, output_format="tiff", placement=options)  # type: ignore[arg-type]

    printed = _print(data, spec)

    placement = _placement_for(data, spec)
    assert placement.print_orientation == "landscape"
    assert _assert_follows_the_geometry(printed, placement) > 500


@pytest.mark.parametrize("orientation", range(1, 9))
def test_stored_box_is_the_inverse_of_orient(orientation: int) -> None:
    # given an upright photo, its stored pixels for an EXIF orientation, and a box of the upright photo
    upright = _grid(600, 400)
    transpose = STORED_FOR_ORIENTATION[orientation]
    stored = upright if transpose is None else upright.transpose(transpose)
    placement = raster_placement(
        spec=RasterSpec(
            width_in=4, height_in=6, dpi=50, placement=PlacementOptions(focal_point=FocalPoint(0.8, 0.3))
        ),
        photo_width=stored.width,
        photo_height=stored.height,
        orientation=orientation,
    )
    box = placement.crop_box

    # when the box is turned into stored pixels, cut there and oriented
    left, top, right, bottom = stored_box(
        box=box, orientation=orientation, stored_width=stored.width, stored_height=stored.height
    )
    cut = orient(stored.crop((int(left), int(top), int(right), int(bottom))), orientation=orientation)

    # then it is exactly that box of the upright photo
    assert cut.tobytes() == upright.crop((box.x, box.y, box.x + box.width, box.y + box.height)).tobytes()


def test_the_border_is_paper_white_and_as_wide_as_its_millimetres_at_the_printers_dpi() -> None:
    # given a 5 mm border at 300 DPI: 5 / 25.4 * 300 = 59.06, so 59 pixels on every side
    data = _photo(1200, 800, image_format="PNG")
    spec = RasterSpec(
        width_in=4, height_in=6, dpi=300, output_format="tiff", placement=PlacementOptions(border_mm=5)
    )

    printed = _print(data, spec)

    border = round(5 / MM_PER_INCH * 300)
    assert border == 59
    assert printed.size == (1800, 1200)
    for x, y in [(border - 1, 600), (1800 - border, 600), (900, border - 1), (900, 1200 - border)]:
        assert printed.getpixel((x, y)) == WHITE, (x, y)
    for x, y in [(border + 2, 600), (1800 - border - 3, 600), (900, border + 2), (900, 1200 - border - 3)]:
        assert printed.getpixel((x, y)) != WHITE, (x, y)
    # the top-left cell of the photo starts right inside the border (the crop box takes the full width)
    assert _cell_at(printed.getpixel((border + 10, border + 10))) == (0, 0)  # type: ignore[arg-type]


def test_landscape_and_portrait_overrides_give_the_paper_orientation_asked_for() -> None:
    landscape_photo, portrait_photo = _photo(1200, 800), _photo(800, 1200)

    def size(data: bytes, orientation: str) -> tuple[int, int]:
        options = PlacementOptions(orientation=orientation)  # type: ignore[arg-type]
        return _print(data, RasterSpec(width_in=4, height_in=6, dpi=50, placement=options)).size

    assert size(landscape_photo, "auto") == size(landscape_photo, "landscape") == (300, 200)
    assert size(landscape_photo, "portrait") == (200, 300)
    assert size(portrait_photo, "auto") == size(portrait_photo, "portrait") == (200, 300)
    assert size(portrait_photo, "landscape") == (300, 200)


def test_an_explicit_crop_shows_the_cells_it_names() -> None:
    # given the lower-right quarter of a 1200x800 grid (columns 6-11, rows 4-7) on 4x6 at 50 DPI
    spec = RasterSpec(
        width_in=4,
        height_in=6,
        dpi=50,
        output_format="tiff",
        placement=PlacementOptions(crop=CropRect(x=0.5, y=0.5, width=0.5, height=0.5)),
    )

    printed = _print(_photo(1200, 800), spec)

    # then its corners show those cells: 600x400 photo pixels on 300x200 output, 50 output pixels per cell
    assert _cell_at(printed.getpixel((25, 25))) == (6, 4)  # type: ignore[arg-type]
    assert _cell_at(printed.getpixel((275, 25))) == (11, 4)  # type: ignore[arg-type]
    assert _cell_at(printed.getpixel((25, 175))) == (6, 7)  # type: ignore[arg-type]
    assert _cell_at(printed.getpixel((275, 175))) == (11, 7)  # type: ignore[arg-type]


def test_options_the_geometry_refuses_are_a_permanent_invalid_spec() -> None:
    spec = RasterSpec(
        width_in=4,
        height_in=6,
        dpi=50,
        placement=PlacementOptions(crop=CropRect(x=0, y=0, width=0.5, height=1.0)),
    )

    with pytest.raises(RasterError) as refused:
        rasterize(data=_photo(1200, 800), spec=spec)

    assert refused.value.code == "invalid_spec"
    assert refused.value.message.startswith("crop_aspect_mismatch")
    assert refused.value.is_permanent is True


@pytest.mark.django_db
def test_a_print_job_is_rasterized_with_its_items_placement(settings):
    from lab.orders.models import OrderItem
    from lab.privacy.vault import vault_read
    from lab.production import rasterizing, routing
    from lab.production.models import PrintJob
    from tests.builders import WORKER, hotfolder_printer, paid_order

    # given a portrait photo ordered on 5x7 printed landscape with a 5 mm border, on a 300 DPI printer
    hotfolder_printer("minilab", sizes=["5x7"], dpi=300)
    order = paid_order(lines=[("PRINT-5X7-LUSTRE", 1)], photo=(1200, 1800))
    OrderItem.objects.filter(order=order).update(orientation="landscape", border_mm=5.0)
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get()

    # when its job is rasterized
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"

    # then the raster is landscape with 59 white pixels on every side
    job.refresh_from_db()
    assert (job.raster_width_px, job.raster_height_px) == (2100, 1500)
    data = vault_read(data_key=job.item.asset.data_key, name=job.raster_blob, purpose="raster")
    with Image.open(io.BytesIO(data)) as image:
        printed = image.convert("RGB")
    for x, y in [(58, 750), (2041, 750), (1050, 58), (1050, 1441)]:
        assert min(_pixel_rgb(printed, (x, y))) >= 250, (x, y)
    for x, y in [(62, 750), (2037, 750), (1050, 62), (1050, 1437)]:
        assert min(_pixel_rgb(printed, (x, y))) < 240, (x, y)


def _pixel_rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value
