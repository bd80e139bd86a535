"""Large HEIC photos decoded one row of tiles at a time, so that a worker never holds the whole photo.

Phones store large HEIC photos as grids of independently coded tiles (512 x 512 on Apple's; HEVC's levels
cap one coded picture at 35.6 MP, so a 48 MP phone photo is always a grid). pillow-heif decodes whole images
only: libheif assembles the whole YCbCr picture, then converts all of it to RGB (a 48 MP photo peaked at
276 MiB in a worker, bench/raster). Here libheif's own tile API (libheif 1.19 and later: the copy bundled with
pillow-heif, loaded through ctypes) decodes one tile at a time to 8-bit RGB, with the file's rotation and
mirroring applied as in a whole decode, and one row of tiles at a time reaches libvips as a PNG stream of
stored (uncompressed) deflate blocks, which libvips' PNG loader reads sequentially as the pipeline asks.

Only plain grids are streamed (8-bit, no alpha, no crop: `_Photo.streamable`); anything else (`streamed`
returns None) is decoded whole, as before. Used by the raster workers (photos too large to decode whole),
intake's check of every upload and the gate's preview.

Every decode, streamed or whole, decodes every coded tile, and a grid's tiles may lie far outside the image
it displays: a grid displayed at 4096 x 4096 whose 128 columns of 4096 px tiles all point at one coded
picture (a 10 KB file) took 87 s to check at intake. `check_coded_pixels` refuses such a photo from its
header, before any pixel is decoded, counting every coded picture the primary image is derived from (a grid
hidden under an overlay too) and those of its auxiliary images (alpha, depth: a grid hidden as the alpha
image too); intake and the rasterizer's opening of a HEIC both call it.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy
import pillow_heif
import pyvips

_COLOURSPACE_RGB = 1  # heif_colorspace_RGB
_CHROMA_INTERLEAVED_RGB = 10  # heif_chroma_interleaved_RGB
_CHANNEL_INTERLEAVED = 10  # heif_channel_interleaved
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ROWS_PER_CHUNK = 16
_NO_FILTER = 0  # each PNG row starts with its filter type; ours are stored as they are
_DIMG = int.from_bytes(b"dimg", "big")  # the reference from a derived image to the images it is made of
_AUXL = int.from_bytes(b"auxl", "big")  # the reference from an auxiliary image (alpha, depth) to its image
_MAX_DERIVATION_DEPTH = 8  # an overlay of a grid of tiles is 2; iden steps add one each
_MAX_REFERENCE_BOXES = 64  # references of one item, grouped by type: a handful in any real file


class HeifTileError(ValueError):
    """libheif refused a tile (a corrupt or truncated file): the stream ends early and libvips fails the
    photo as undecodable."""


class CodedTooLarge(Exception):
    """A HEIC photo whose decode would cost more than it shows: its coded tiles hold more than the pixel
    limit, or a whole row or column of them lies outside the image (`check_coded_pixels`)."""

    def __init__(self, message: str, *, coded_pixels: int, outside: bool) -> None:
        super().__init__(message)
        self.coded_pixels = coded_pixels
        self.outside = outside  # refused for tiles outside the image, not for their count


class _HeifError(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("subcode", ctypes.c_int), ("message", ctypes.c_char_p)]


class _Tiling(ctypes.Structure):
    """libheif's `struct heif_image_tiling`, version 1."""

    _fields_ = [
        ("version", ctypes.c_int),
        ("num_columns", ctypes.c_uint32),
        ("num_rows", ctypes.c_uint32),
        ("tile_width", ctypes.c_uint32),
        ("tile_height", ctypes.c_uint32),
        ("image_width", ctypes.c_uint32),
        ("image_height", ctypes.c_uint32),
        ("top_offset", ctypes.c_uint32),
        ("left_offset", ctypes.c_uint32),
        ("number_of_extra_dimensions", ctypes.c_uint8),
        ("extra_dimension_size", ctypes.c_uint32 * 8),
    ]


_POINTER = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "heif_context_alloc": (_POINTER, []),
    "heif_context_free": (None, [_POINTER]),
    "heif_context_read_from_memory_without_copy": (
        _HeifError,
        [_POINTER, _POINTER, ctypes.c_size_t, _POINTER],
    ),
    "heif_context_get_primary_image_handle": (_HeifError, [_POINTER, ctypes.POINTER(_POINTER)]),
    "heif_context_get_primary_image_ID": (_HeifError, [_POINTER, ctypes.POINTER(ctypes.c_uint32)]),
    "heif_context_get_image_handle": (_HeifError, [_POINTER, ctypes.c_uint32, ctypes.POINTER(_POINTER)]),
    "heif_context_get_item_references": (
        ctypes.c_size_t,
        [
            _POINTER,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.POINTER(ctypes.POINTER(ctypes.c_uint32)),
        ],
    ),
    "heif_release_item_references": (None, [_POINTER, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint32))]),
    "heif_context_get_number_of_items": (ctypes.c_int, [_POINTER]),
    "heif_context_get_list_of_item_IDs": (
        ctypes.c_int,
        [_POINTER, ctypes.POINTER(ctypes.c_uint32), ctypes.c_int],
    ),
    "heif_item_get_item_type": (ctypes.c_uint32, [_POINTER, ctypes.c_uint32]),
    "heif_image_handle_release": (None, [_POINTER]),
    "heif_image_handle_has_alpha_channel": (ctypes.c_int, [_POINTER]),
    "heif_image_handle_get_luma_bits_per_pixel": (ctypes.c_int, [_POINTER]),
    "heif_image_handle_get_width": (ctypes.c_int, [_POINTER]),
    "heif_image_handle_get_height": (ctypes.c_int, [_POINTER]),
    "heif_image_handle_get_ispe_width": (ctypes.c_int, [_POINTER]),
    "heif_image_handle_get_ispe_height": (ctypes.c_int, [_POINTER]),
    "heif_image_handle_get_image_tiling": (_HeifError, [_POINTER, ctypes.c_int, ctypes.POINTER(_Tiling)]),
    "heif_image_handle_decode_image_tile": (
        _HeifError,
        [
            _POINTER,
            ctypes.POINTER(_POINTER),
            ctypes.c_int,
            ctypes.c_int,
            _POINTER,
            ctypes.c_uint32,
            ctypes.c_uint32,
        ],
    ),
    "heif_image_release": (None, [_POINTER]),
    "heif_image_get_width": (ctypes.c_int, [_POINTER, ctypes.c_int]),
    "heif_image_get_height": (ctypes.c_int, [_POINTER, ctypes.c_int]),
    "heif_image_get_bits_per_pixel_range": (ctypes.c_int, [_POINTER, ctypes.c_int]),
    "heif_image_get_plane_readonly": (_POINTER, [_POINTER, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
}


@functools.cache
def _libheif() -> ctypes.CDLL | None:
    """The libheif pillow-heif itself runs on (its wheel bundles it), or None when it is not there or too
    old for the tile API: photos are then decoded whole."""
    bundled = Path(pillow_heif.__file__).resolve().parent.parent / "pillow_heif.libs"
    candidates = sorted(bundled.glob("libheif-*.so*"))
    if len(candidates) != 1:
        return None
    library = ctypes.CDLL(str(candidates[0]))
    if not all(hasattr(library, name) for name in _SIGNATURES):
        return None
    for name, (result, arguments) in _SIGNATURES.items():
        function = getattr(library, name)
        function.restype = result
        function.argtypes = arguments
    return library


def _check(error: _HeifError) -> None:
    if error.code:
        raise HeifTileError((error.message or b"libheif error").decode(errors="replace"))


class _Photo:
    """A libheif context and its primary image's handle, freed when the last libvips image using the
    stream is gone (pyvips keeps references to what an image was made from)."""

    def __init__(self, library: ctypes.CDLL, data: bytes) -> None:
        self.library = library
        self.data = data  # read without a copy: the context points into these bytes
        self.context = _POINTER(library.heif_context_alloc())
        self.handle = _POINTER()
        self._finalizer = weakref.finalize(self, _free, library, self.context, self.handle)
        _check(library.heif_context_read_from_memory_without_copy(self.context, data, len(data), None))
        _check(library.heif_context_get_primary_image_handle(self.context, ctypes.byref(self.handle)))

    def tiling(self) -> _Tiling:
        """The grid as displayed: rotation and mirroring applied (libheif's process_image_transformations)."""
        tiling = _Tiling(version=1)
        _check(self.library.heif_image_handle_get_image_tiling(self.handle, 1, ctypes.byref(tiling)))
        return tiling

    def streamable(self, tiling: _Tiling) -> bool:
        """A grid of 8-bit tiles with no alpha and no crop: a crop (`clap`) would move the image within the
        grid by amounts libheif's tiling does not report usably, and wider samples or alpha would need
        the conversions the whole decode makes."""
        library, handle = self.library, self.handle
        shown = {library.heif_image_handle_get_width(handle), library.heif_image_handle_get_height(handle)}
        coded = {
            library.heif_image_handle_get_ispe_width(handle),
            library.heif_image_handle_get_ispe_height(handle),
        }
        return (
            tiling.num_columns * tiling.num_rows > 1
            and not tiling.number_of_extra_dimensions
            and shown == coded == {tiling.image_width, tiling.image_height}
            and library.heif_image_handle_get_luma_bits_per_pixel(handle) == 8
            and not library.heif_image_handle_has_alpha_channel(handle)
        )

    def decoded_pixels(self) -> tuple[int, int, str, int]:
        """The coded pixels a decode of the primary image decodes, how many coded pictures hold them, the
        primary item's type and how many auxiliary images are counted with it. A derived image (`grid`,
        `iovl` overlay, `iden`, any other) decodes every image its `dimg` references name, once per
        reference, whatever part of them it shows; a coded one decodes its picture (its `ispe` size). Any
        image decodes with it its auxiliary images, the items whose `auxl` reference names it (libheif
        decodes the alpha image with the primary; depth and the like are counted too), each with its own
        derivation: a 26 KB file whose alpha image was a hidden grid of 24 x 24 tiles of 1024 px, behind a
        primary of one 1024 px picture, decoded 605 MP. Walked from the primary item, each item's count
        computed once (a grid whose tiles all name one picture costs one look), at most
        `_MAX_DERIVATION_DEPTH` deep (a loop of references is corrupt)."""
        library, context = self.library, self.context
        counted: dict[int, tuple[int, int]] = {}
        auxiliaries = self.auxiliaries()
        auxiliaries_counted: set[int] = set()

        def walk(item: int, depth: int) -> tuple[int, int]:
            if item in counted:
                return counted[item]
            if depth > _MAX_DERIVATION_DEPTH:
                raise HeifTileError("image derivation too deep (or a loop of references)")
            inputs = self.derived_from(item)
            if inputs:
                pixels = pictures = 0
                for source in inputs:
                    more_pixels, more_pictures = walk(source, depth + 1)
                    pixels, pictures = pixels + more_pixels, pictures + more_pictures
            else:
                handle = _POINTER()
                _check(library.heif_context_get_image_handle(context, item, ctypes.byref(handle)))
                try:
                    width = library.heif_image_handle_get_ispe_width(handle)
                    height = library.heif_image_handle_get_ispe_height(handle)
                finally:
                    library.heif_image_handle_release(handle)
                pixels, pictures = max(width, 0) * max(height, 0), 1
            for auxiliary in auxiliaries.get(item, ()):
                auxiliaries_counted.add(auxiliary)
                more_pixels, more_pictures = walk(auxiliary, depth + 1)
                pixels, pictures = pixels + more_pixels, pictures + more_pictures
            counted[item] = pixels, pictures
            return pixels, pictures

        primary = self.primary_id()
        pixels, pictures = walk(primary, 0)
        kind = library.heif_item_get_item_type(context, primary).to_bytes(4, "big")
        return pixels, pictures, kind.decode("latin-1"), len(auxiliaries_counted)

    def primary_id(self) -> int:
        primary = ctypes.c_uint32()
        _check(self.library.heif_context_get_primary_image_ID(self.context, ctypes.byref(primary)))
        return primary.value

    def derived_from(self, item: int) -> list[int]:
        """The items `item`'s `dimg` references name, in order and with repeats (a grid's tiles)."""
        return self.references(item, _DIMG)

    def auxiliaries(self) -> dict[int, list[int]]:
        """For each item of the file that has any, the items whose `auxl` reference names it: its auxiliary
        images (alpha, depth), which need not be listed as such anywhere else (libheif finds them so)."""
        library, context = self.library, self.context
        count = max(library.heif_context_get_number_of_items(context), 0)
        items = (ctypes.c_uint32 * count)()
        listed = library.heif_context_get_list_of_item_IDs(context, items, count) if count else 0
        found: dict[int, list[int]] = {}
        for auxiliary in items[: max(listed, 0)]:
            for target in dict.fromkeys(self.references(auxiliary, _AUXL)):
                found.setdefault(target, []).append(auxiliary)
        return found

    def references(self, item: int, reference_type: int) -> list[int]:
        """The items `item`'s references of one type name, in order and with repeats."""
        library, context = self.library, self.context
        found: list[int] = []
        for index in range(_MAX_REFERENCE_BOXES):
            kind = ctypes.c_uint32()
            targets = ctypes.POINTER(ctypes.c_uint32)()
            count = library.heif_context_get_item_references(
                context, item, index, ctypes.byref(kind), ctypes.byref(targets)
            )
            try:
                if not count:
                    return found
                if kind.value == reference_type:
                    found.extend(targets[i] for i in range(count))
            finally:
                if targets:
                    library.heif_release_item_references(context, ctypes.byref(targets))
        raise HeifTileError("too many item references")


def _free(library: ctypes.CDLL, context: ctypes.c_void_p, handle: ctypes.c_void_p) -> None:
    if handle.value:
        library.heif_image_handle_release(handle)
    if context.value:
        library.heif_context_free(context)


def check_coded_pixels(data: bytes, *, max_pixels: int) -> None:
    """Refuse (`CodedTooLarge`) a HEIC photo whose decode would decode more than its image, from its header
    alone: before any tile is decoded.

    A decoder decodes every tile of a grid, whatever the image it displays (the grid's output size): a grid
    of 4096 x 4096 with 128 columns of 4096 px tiles is 2.1 GP of decoding for 16.7 MP shown. Refused:
    - more coded pixels (columns x tile width x rows x tile height) than `max_pixels`: one coded picture
      (1 x 1 "tiles") larger than the limit too, whatever crop it displays. Counted over the whole
      derivation of the primary image (`_Photo.decoded_pixels`): a 26 KB file whose primary item is a
      512 x 512 overlay (`iovl`) of a hidden grid of 24 x 24 tiles of 1024 px, which libheif reports as one
      512 px tile, decodes 604 MP (10 s or more, 2.7 GB) and is refused as that; the auxiliary images
      (`auxl`: alpha, depth) of every image counted are counted too, with their own derivations, as libheif
      decodes the primary's alpha with it (a hidden grid as the alpha of one 1024 px picture: 605 MP);
    - a whole column or row of tiles outside the image ((columns - 1) x tile width >= image width, or the
      same for rows): an encoder's grid only ever overhangs the image by part of its last tile.
    A file libheif cannot parse raises HeifTileError (a ValueError), as a corrupt file does elsewhere.
    Without libheif's tile API (`_libheif` None: not the pillow-heif wheel's libheif) nothing can be read
    here and nothing is refused.
    """
    library = _libheif()
    if library is None:
        return
    photo = _Photo(library, data)
    tiling = photo.tiling()
    columns, rows = tiling.num_columns, tiling.num_rows
    tile_width, tile_height = tiling.tile_width, tiling.tile_height
    coded, pictures, kind, auxiliaries = photo.decoded_pixels()
    coded = max(coded, columns * tile_width * rows * tile_height)
    if coded > max_pixels:
        if auxiliaries:
            where = (
                f"the {pictures} coded pictures its {kind!r} image and {auxiliaries} auxiliary image(s) "
                "(alpha, depth) are made of"
            )
        elif kind == "grid":
            where = f"{columns} x {rows} tiles"
        elif pictures > 1 or photo.derived_from(photo.primary_id()):
            where = f"the {pictures} coded pictures its {kind!r} image is made of"
        else:
            where = "its one coded picture"
        raise CodedTooLarge(
            f"the photo codes {coded} pixels in {where}; the limit is {max_pixels}",
            coded_pixels=coded,
            outside=False,
        )
    if (columns - 1) * tile_width >= tiling.image_width or (rows - 1) * tile_height >= tiling.image_height:
        raise CodedTooLarge(
            f"the photo's grid of {columns} x {rows} tiles of {tile_width} x {tile_height} has tiles wholly "
            f"outside its {tiling.image_width} x {tiling.image_height} image",
            coded_pixels=coded,
            outside=True,
        )


def streamed(data: bytes) -> pyvips.Image | None:
    """The photo as a sequential 8-bit sRGB libvips image decoded one row of tiles at a time, or None when it
    is not such a grid (`_Photo.streamable`) or libheif has no tile API here."""
    library = _libheif()
    if library is None:
        return None
    photo = _Photo(library, data)
    tiling = photo.tiling()
    if not photo.streamable(tiling):
        return None
    source = pyvips.SourceCustom()
    source.on_read(_Reader(_png(tiling.image_width, tiling.image_height, _strips(photo, tiling))).read)
    image = pyvips.Image.pngload_source(source, access="sequential", fail_on="error")
    # pyvips' own way to keep what an image reads from alive as long as any image made from it: the read
    # callback (libvips calls it from its threads) and the libheif context it decodes from.
    image._references.append((source, photo))
    return image


def _strips(photo: _Photo, tiling: _Tiling) -> Iterator[numpy.ndarray]:
    """Each row of tiles as PNG rows (a filter byte, then RGB), cropped to the image: edge tiles overhang it,
    and after a rotation or mirroring the grid's partial tiles may come first (see `_padding_first`). A tile
    wholly outside the image is not decoded (`check_coded_pixels` refuses such grids before this)."""
    width, height = tiling.image_width, tiling.image_height
    top_padding = _padding_first(tiling.top_offset, tiling.num_rows, tiling.tile_height, height)
    left_padding = _padding_first(tiling.left_offset, tiling.num_columns, tiling.tile_width, width)
    for tile_row in range(tiling.num_rows):
        top = tile_row * tiling.tile_height - top_padding
        first, end = max(top, 0), min(top + tiling.tile_height, height)
        if end <= first:
            continue
        strip = numpy.zeros((end - first, 1 + 3 * width), numpy.uint8)  # column 0: _NO_FILTER
        for tile_column in range(tiling.num_columns):
            left = tile_column * tiling.tile_width - left_padding
            if left >= width or left + tiling.tile_width <= 0:
                continue
            _paste_tile(photo, tile_column, tile_row, strip, top=top - first, left=left, width=width)
        yield strip


def _padding_first(offset: int, tiles: int, tile_size: int, size: int) -> int:
    """How far the first tile starts before the image. The grid's padding is at its right and bottom as
    stored; libheif reports a non-zero offset when a rotation or mirroring has moved it first. (libheif 1.23
    reports, as that offset, how much of the image the partial tile holds, not the negative shift its header
    describes; the padding itself is the grid's size less the image's, whichever it means.)"""
    return tiles * tile_size - size if offset else 0


def _paste_tile(
    photo: _Photo, tile_column: int, tile_row: int, strip: numpy.ndarray, *, top: int, left: int, width: int
) -> None:
    library = photo.library
    image = _POINTER()
    _check(
        library.heif_image_handle_decode_image_tile(
            photo.handle,
            ctypes.byref(image),
            _COLOURSPACE_RGB,
            _CHROMA_INTERLEAVED_RGB,
            None,
            tile_column,
            tile_row,
        )
    )
    try:
        if library.heif_image_get_bits_per_pixel_range(image, _CHANNEL_INTERLEAVED) != 8:
            raise HeifTileError("tile is not 8-bit RGB")
        tile_width = library.heif_image_get_width(image, _CHANNEL_INTERLEAVED)
        tile_height = library.heif_image_get_height(image, _CHANNEL_INTERLEAVED)
        stride = ctypes.c_int()
        plane = library.heif_image_get_plane_readonly(image, _CHANNEL_INTERLEAVED, ctypes.byref(stride))
        if not plane or tile_width <= 0 or tile_height <= 0:
            raise HeifTileError("tile has no pixels")
        rows = numpy.ctypeslib.as_array(
            ctypes.cast(plane, ctypes.POINTER(ctypes.c_uint8)), shape=(tile_height, stride.value)
        )
        y0, y1 = max(0, -top), min(tile_height, strip.shape[0] - top)
        x0, x1 = max(0, -left), min(tile_width, width - left)
        if y1 > y0 and x1 > x0:
            strip[top + y0 : top + y1, 1 + 3 * (left + x0) : 1 + 3 * (left + x1)] = rows[
                y0:y1, 3 * x0 : 3 * x1
            ]
    finally:
        library.heif_image_release(image)


def _png(width: int, height: int, strips: Iterator[numpy.ndarray]) -> Iterator[bytes]:
    """A PNG (8-bit RGB, no interlace) whose image data is deflate's stored blocks: no compression work on
    either side, only the checksums PNG and zlib require."""
    yield _PNG_SIGNATURE
    yield from _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    compressor = zlib.compressobj(0)
    for strip in strips:
        # A few rows per chunk: one chunk's body is all that is held besides the strip.
        for first in range(0, strip.shape[0], _ROWS_PER_CHUNK):
            body = compressor.compress(strip[first : first + _ROWS_PER_CHUNK].data)
            if body:
                yield from _chunk(b"IDAT", body)
        del strip
    yield from _chunk(b"IDAT", compressor.flush())
    yield from _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> Iterator[bytes]:
    yield struct.pack(">I", len(body)) + kind
    yield body
    yield struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


class _Reader:
    """libvips' read callback over the stream: hands out the pieces without copying them. A tile libheif
    refuses ends the stream; libvips then fails the photo as truncated."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._current = memoryview(b"")

    def read(self, size: int) -> memoryview | None:
        while not self._current:
            try:
                self._current = memoryview(next(self._pieces))
            except (StopIteration, HeifTileError):
                return None
        piece, self._current = self._current[:size], self._current[size:]
        return piece
