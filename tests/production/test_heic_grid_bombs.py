"""HEIC grids whose coded tiles cost far more than the image they display: every decoder decodes every tile,
so a few KB displayed at 4096 x 4096 with 128 columns of 4096 px tiles took 87 s to check at intake. The
rasterizer's opening of a HEIC (raster workers, proofs, the gate's preview) refuses them from the header, as
intake does (`heif_tiles.check_coded_pixels`), before any tile is decoded; grids as encoders write them
(the last column and row partly outside the image) print as before.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import numpy
import pillow_heif
import pytest
from PIL import Image

from lab.lib import heif_tiles
from lab.production.imaging import source
from lab.production.imaging.errors import TOO_LARGE
from lab.production.imaging.thumbnail import upright_thumbnail
from lab.production.raster import RasterError, RasterSpec, rasterize
from tests.support.images import (
    heic_bytes,
    heic_grid_with_tiles_beyond_the_image,
    heic_overlay_of_a_grid,
    heic_with_a_hidden_alpha_grid,
)


@pytest.fixture
def decoded_tiles(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every tile libheif is asked to decode (column, row), through heif_tiles' one decode of a tile."""
    decoded: list[tuple[int, int]] = []
    original = heif_tiles._paste_tile

    def counting(photo: object, tile_column: int, tile_row: int, *args: object, **kwargs: object) -> None:
        decoded.append((tile_column, tile_row))
        original(photo, tile_column, tile_row, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(heif_tiles, "_paste_tile", counting)
    return decoded


@functools.cache
def _grid(tile: int, columns: int, shown: int) -> bytes:
    return heic_grid_with_tiles_beyond_the_image(tile=tile, columns=columns, shown=(shown, shown))


def _print(data: bytes) -> object:
    return rasterize(data=data, spec=RasterSpec(width_in=4, height_in=4, dpi=30, output_format="tiff"))


OPENINGS: dict[str, Callable[[bytes], object]] = {
    "open_source": source.open_source,
    "rasterize": _print,
    "gate-preview": lambda data: upright_thumbnail(data, long_side=256),
}


@pytest.mark.parametrize("opening", OPENINGS.values(), ids=OPENINGS.keys())
@pytest.mark.parametrize(
    "grid",
    [
        pytest.param((512, 64, 512), id="64-columns-of-512"),
        # 268 MP coded, as the reported file (16 columns of 4096 px tiles shown as 4096 x 4096: 5 s to print),
        # over the rasterizer's limit of 178 MP too
        pytest.param((1024, 256, 1024), id="256-columns-of-1024"),
    ],
)
def test_a_grid_with_tiles_beyond_the_image_is_refused_before_any_tile_is_decoded(
    decoded_tiles: list[tuple[int, int]], opening: Callable[[bytes], object], grid: tuple[int, int, int]
) -> None:
    data = _grid(*grid)

    with pytest.raises(RasterError) as refused:
        opening(data)

    assert refused.value.code == TOO_LARGE
    assert decoded_tiles == []


def test_a_grid_whose_tiles_hold_more_than_the_limit_is_refused(
    decoded_tiles: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a grid with no whole tile outside its 1100 x 700 image (0.77 MP), but 2.1 MP in its two tiles,
    # and a limit of 2 MP
    monkeypatch.setattr(source, "MAX_SOURCE_PIXELS", 2_000_000)
    data = heic_grid_with_tiles_beyond_the_image(tile=1024, columns=2, shown=(1100, 700))

    with pytest.raises(RasterError) as refused:
        source.open_source(data)

    assert refused.value.code == TOO_LARGE
    assert "codes 2097152 pixels" in refused.value.message
    assert decoded_tiles == []


@pytest.mark.parametrize("opening", OPENINGS.values(), ids=OPENINGS.keys())
def test_an_overlay_of_a_hidden_grid_is_refused_for_the_pixels_of_the_grid(
    opening: Callable[[bytes], object],
) -> None:
    # given a 26 KB HEIC whose primary item is a 512 x 512 overlay (`iovl`) of a hidden grid of 24 x 24 tiles
    # of 1024 px, all one coded picture: libheif reports the primary's tiling as one 512 px tile, so the check
    # of that tiling alone passed it, and its decode took 10 s or more and 2.7 GB
    data = _overlay()

    with pytest.raises(RasterError) as refused:
        opening(data)

    # then it is refused from its header, counted as every coded picture the overlay is made of
    assert refused.value.code == TOO_LARGE
    assert (
        "codes 603979776 pixels in the 576 coded pictures its 'iovl' image is made of"
        in refused.value.message
    )


def test_the_coded_pixels_counted_are_those_of_the_whole_derivation() -> None:
    # an overlay counts the tiles of the grid it shows a quarter of (refused one pixel under them), a grid its
    # tiles, one coded picture itself
    overlay = heic_overlay_of_a_grid(tile=256, columns=2, rows=2, shown=(256, 256))
    heif_tiles.check_coded_pixels(overlay, max_pixels=4 * 256 * 256)
    with pytest.raises(heif_tiles.CodedTooLarge) as refused:
        heif_tiles.check_coded_pixels(overlay, max_pixels=4 * 256 * 256 - 1)
    assert (refused.value.coded_pixels, refused.value.outside) == (4 * 256 * 256, False)
    heif_tiles.check_coded_pixels(heic_bytes(1100, 700, tile_size=256), max_pixels=5 * 3 * 256 * 256)
    with pytest.raises(heif_tiles.CodedTooLarge) as refused:
        heif_tiles.check_coded_pixels(heic_bytes(1100, 700), max_pixels=1100 * 700 - 1)
    assert "in its one coded picture" in str(refused.value)


@functools.cache
def _overlay() -> bytes:
    return heic_overlay_of_a_grid()


@pytest.mark.parametrize("opening", OPENINGS.values(), ids=OPENINGS.keys())
def test_a_hidden_grid_as_the_alpha_image_is_refused_for_the_pixels_of_the_grid(
    opening: Callable[[bytes], object],
) -> None:
    # given a 26 KB HEIC whose primary item is one 1024 px coded picture, and whose alpha image (`auxl` to the
    # primary, `auxC` alpha), which libheif decodes with it, is a hidden grid of 24 x 24 tiles of 1024 px, all
    # one coded picture: the primary's derivation alone counted 1 MP, and its decode took 1 GB
    data = _alpha_grid()

    with pytest.raises(RasterError) as refused:
        opening(data)

    # then it is refused from its header, the alpha grid's tiles counted with the primary's picture
    assert refused.value.code == TOO_LARGE
    assert "codes 605028352 pixels in the 577 coded pictures" in refused.value.message


def test_the_coded_pixels_counted_include_those_of_the_alpha_image() -> None:
    # a primary of one 256 px picture whose alpha is a grid of 2 x 2 such tiles: five pictures counted,
    # refused one pixel under them
    data = heic_with_a_hidden_alpha_grid(tile=256, columns=2, rows=2)
    heif_tiles.check_coded_pixels(data, max_pixels=5 * 256 * 256)
    with pytest.raises(heif_tiles.CodedTooLarge) as refused:
        heif_tiles.check_coded_pixels(data, max_pixels=5 * 256 * 256 - 1)
    assert (refused.value.coded_pixels, refused.value.outside) == (5 * 256 * 256, False)
    with pytest.raises(heif_tiles.CodedTooLarge):
        heif_tiles.check_coded_pixels(_alpha_grid(), max_pixels=178_000_000)


@functools.cache
def _alpha_grid() -> bytes:
    return heic_with_a_hidden_alpha_grid()


def test_streaming_skips_tiles_wholly_outside_the_image(decoded_tiles: list[tuple[int, int]]) -> None:
    # given such a grid handed to the streamed decode directly (the openings refuse it before this)
    data = _grid(512, 64, 512)

    streamed = heif_tiles.streamed(data)

    # then only the one tile inside the image is decoded, and it is the image libheif's whole decode gives
    assert streamed is not None
    pixels = numpy.ndarray(buffer=streamed.write_to_memory(), dtype=numpy.uint8, shape=(512, 512, 3))
    assert decoded_tiles == [(0, 0)]
    whole = numpy.asarray(pillow_heif.open_heif(data, convert_hdr_to_8bit=True).to_pillow().convert("RGB"))
    assert numpy.array_equal(pixels, whole)


@pytest.mark.parametrize(
    ("build", "tiles"),
    [
        pytest.param(lambda: heic_bytes(1100, 700, tile_size=256), 5 * 3, id="encoder-grid"),
        pytest.param(
            lambda: heic_grid_with_tiles_beyond_the_image(tile=256, columns=4, shown=(1000, 600)),
            4 * 3,
            id="hand-built-grid",
        ),
    ],
)
def test_a_grid_whose_last_tiles_overhang_the_image_prints_as_its_whole_decode(
    decoded_tiles: list[tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
    build: Callable[[], bytes],
    tiles: int,
) -> None:
    # given grids as encoders write them, the last column and row of tiles partly outside the image
    data = build()
    whole = _print(data)  # under the whole-decode limit: libheif's whole decode

    # when printed streamed, one row of tiles at a time (the whole-decode limit lowered)
    monkeypatch.setattr(source, "WHOLE_DECODE_MAX_BYTES", 0)
    streamed = _print(data)

    # then every tile is decoded once, and the print is the same
    assert len(decoded_tiles) == len(set(decoded_tiles)) == tiles
    assert _pixels(streamed) == _pixels(whole)


def _pixels(result: object) -> bytes:
    with Image.open(io.BytesIO(result.data)) as image:  # type: ignore[attr-defined]
        return image.tobytes()
