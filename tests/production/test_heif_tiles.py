"""Large HEIC grid photos streamed one row of tiles at a time (lab/lib/heif_tiles.py): the same
pixels as libheif's whole decode in every orientation, the same print, and a clear failure for a cut file.

The photos are small grids of 256 px tiles whose last column and row are partial, so that every rotation
and mirroring moves a partial tile first; the rasterizer streams them when its whole-decode limit is lowered.
"""

from __future__ import annotations

import io

import numpy
import pillow_heif
import pytest
from PIL import Image

from lab.lib import heif_tiles
from lab.production.imaging import source
from lab.production.raster import RasterError, RasterSpec, rasterize

_SIZE = (1100, 700)  # 5 x 3 tiles of 256 px; the last column holds 76 px, the last row 188


def _photo(width: int = _SIZE[0], height: int = _SIZE[1]) -> Image.Image:
    """Distinct content everywhere (a misplaced or mirrored tile changes pixels), smooth enough that the
    encoder keeps it."""
    x, y = numpy.meshgrid(numpy.arange(width), numpy.arange(height))
    pixels = numpy.stack([(x * 255) // width, (y * 255) // height, ((x + 2 * y) % 97) * 2], axis=-1)
    return Image.fromarray(pixels.astype(numpy.uint8), "RGB")


def _grid_heic(image: Image.Image, *, orientation: int = 1, tile_size: int = 256) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    heif = pillow_heif.from_pillow(image)
    heif.save(buffer, quality=90, exif=exif.tobytes(), tile_size=tile_size)
    return buffer.getvalue()


def _pixels(image: object) -> numpy.ndarray:
    import pyvips

    assert isinstance(image, pyvips.Image)
    return numpy.ndarray(
        buffer=image.write_to_memory(), dtype=numpy.uint8, shape=(image.height, image.width, image.bands)
    )


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_grid_streamed_by_rows_of_tiles_has_the_pixels_of_libheifs_whole_decode(orientation: int) -> None:
    data = _grid_heic(_photo(), orientation=orientation)
    whole = numpy.asarray(pillow_heif.open_heif(data, convert_hdr_to_8bit=True).to_pillow().convert("RGB"))

    streamed = heif_tiles.streamed(data)

    assert streamed is not None
    assert (streamed.width, streamed.height, streamed.bands) == (whole.shape[1], whole.shape[0], 3)
    assert numpy.array_equal(_pixels(streamed), whole), orientation


def test_what_is_not_a_plain_8_bit_grid_is_left_to_the_whole_decode() -> None:
    one_picture = io.BytesIO()
    pillow_heif.from_pillow(_photo()).save(one_picture, quality=90)
    with_alpha = io.BytesIO()
    pillow_heif.from_pillow(_photo().convert("RGBA")).save(with_alpha, quality=90, tile_size=256)
    ten_bits = io.BytesIO()
    sixteen = (numpy.asarray(_photo()).astype(numpy.uint16) * 257).tobytes()
    pillow_heif.from_bytes(mode="RGB;16", size=_SIZE, data=sixteen).save(ten_bits, quality=-1, tile_size=256)

    assert heif_tiles.streamed(one_picture.getvalue()) is None
    assert heif_tiles.streamed(with_alpha.getvalue()) is None
    assert heif_tiles.streamed(ten_bits.getvalue()) is None


def test_a_cropped_grid_is_left_to_the_whole_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a grid displayed smaller than it is coded, as a crop (`clap`) makes it (pillow-heif writes none:
    # libheif is made to report the displayed width a crop of 100 px would give)
    library = heif_tiles._libheif()
    assert library is not None
    coded_width = library.heif_image_handle_get_width
    monkeypatch.setattr(library, "heif_image_handle_get_width", lambda handle: coded_width(handle) - 100)

    assert heif_tiles.streamed(_grid_heic(_photo())) is None


@pytest.fixture
def streams_every_grid(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make the rasterizer stream grids of any size, and record each stream it made."""
    made: list[object] = []
    real = heif_tiles.streamed

    def recording(data: bytes) -> object:
        image = real(data)
        made.append(image)
        return image

    monkeypatch.setattr(source, "WHOLE_DECODE_MAX_BYTES", 1)
    monkeypatch.setattr(heif_tiles, "streamed", recording)
    return made


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_streamed_grid_prints_as_the_whole_decode_does(
    streams_every_grid: list[object], orientation: int
) -> None:
    data = _grid_heic(_photo(), orientation=orientation)
    spec = RasterSpec(width_in=4, height_in=6, dpi=100)

    streamed = rasterize(data=data, spec=spec)
    assert streams_every_grid and streams_every_grid[0] is not None
    with pytest.MonkeyPatch.context() as whole_decode:
        whole_decode.setattr(source, "WHOLE_DECODE_MAX_BYTES", 10**12)
        whole = rasterize(data=data, spec=spec)

    same = streamed.data == whole.data  # (pytest's diff of two rasters' bytes would take minutes)
    assert same


def test_a_cut_grid_photo_is_refused_as_undecodable() -> None:
    data = _grid_heic(_photo())
    cut = data[: len(data) * 2 // 3]  # libheif checks every tile's extent against the file when it opens it

    with pytest.raises(RasterError) as raised:
        rasterize(data=cut, spec=RasterSpec(width_in=4, height_in=6, dpi=100))

    assert raised.value.code == "decode_failed"
    assert raised.value.is_permanent is True


def test_a_tile_libheif_refuses_mid_stream_fails_the_print_as_undecodable(
    streams_every_grid: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a grid whose second row of tiles libheif refuses (a zeroed or cut tile decodes as garbage or is
    # caught at open, so the refusal is made here, where libheif answers)
    real = heif_tiles._paste_tile
    pasted: list[int] = []

    def refusing(photo: object, tile_column: int, tile_row: int, *args: object, **kwargs: object) -> None:
        if tile_row == 2:
            raise heif_tiles.HeifTileError("Invalid input: tile data")
        pasted.append(tile_row)
        real(photo, tile_column, tile_row, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(heif_tiles, "_paste_tile", refusing)

    # when it is printed through the stream, then the print fails as undecodable: no grey band, no hang
    with pytest.raises(RasterError) as raised:
        rasterize(data=_grid_heic(_photo()), spec=RasterSpec(width_in=4, height_in=6, dpi=100))

    assert streams_every_grid and streams_every_grid[0] is not None
    assert pasted == [0] * 5 + [1] * 5
    assert raised.value.code == "decode_failed"
