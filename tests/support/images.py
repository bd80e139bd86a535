"""Real image bytes for tests: generated with Pillow, never fixtures checked into the repository."""

from __future__ import annotations

import io
import struct
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageCms

# Stored pixels for each EXIF orientation: the inverse of what a reader applies to see the upright photo.
STORED_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def jpeg_bytes(width: int = 1800, height: int = 1200, *, orientation: int = 1, gps: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), (200, 120, 40))
    image.paste((20, 40, 220), (0, 0, width // 4, height // 4))
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def png_bytes(width: int = 1200, height: int = 1800, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), 128 if mode in ("L", "I;16") else (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def tiff_bytes(width: int = 1200, height: int = 1800) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(out, "TIFF")
    return out.getvalue()


def heic_bytes(width: int = 1200, height: int = 900, *, tile_size: int = 0) -> bytes:
    """One coded picture, or (tile_size) a grid of tiles, as phones store their photos."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.new("RGB", (width, height), (60, 160, 60)).save(out, "HEIF", tile_size=tile_size)
    return out.getvalue()


def bigtiff_bytes(width: int = 600, height: int = 400, *, byte_order: str = "II") -> bytes:
    """A BigTIFF ("II+\\0" little-endian, "MM\\0+" big-endian) of one uncompressed RGB strip, written by hand:
    Pillow writes only little-endian ones. The picture is `upright_quadrants`."""
    endian = "<" if byte_order == "II" else ">"
    pixels = upright_quadrants(width, height).tobytes()
    entries: list[tuple[int, int, bytes]] = [  # tag, type, value (inline: at most 8 bytes)
        (256, 4, struct.pack(endian + "I", width)),  # ImageWidth, LONG
        (257, 4, struct.pack(endian + "I", height)),  # ImageLength
        (258, 3, struct.pack(endian + "HHH", 8, 8, 8)),  # BitsPerSample, SHORT x 3
        (259, 3, struct.pack(endian + "H", 1)),  # Compression: none
        (262, 3, struct.pack(endian + "H", 2)),  # PhotometricInterpretation: RGB
        (273, 16, b""),  # StripOffsets, LONG8: filled in below
        (277, 3, struct.pack(endian + "H", 3)),  # SamplesPerPixel
        (278, 4, struct.pack(endian + "I", height)),  # RowsPerStrip: one strip
        (279, 16, struct.pack(endian + "Q", len(pixels))),  # StripByteCounts, LONG8
        (284, 3, struct.pack(endian + "H", 1)),  # PlanarConfiguration: chunky
    ]
    ifd_offset = 16
    strip_offset = ifd_offset + 8 + 20 * len(entries) + 8
    out = byte_order.encode() + struct.pack(endian + "HHHQ", 43, 8, 0, ifd_offset)
    out += struct.pack(endian + "Q", len(entries))
    for tag, kind, value in entries:
        inline = value or struct.pack(endian + "Q", strip_offset)
        values = len(value) // {3: 2, 4: 4, 16: 8}[kind] if value else 1
        out += struct.pack(endian + "HHQ", tag, kind, values) + inline.ljust(8, b"\0")
    return out + struct.pack(endian + "Q", 0) + pixels


def heic_with_brand(brand: bytes, width: int = 640, height: int = 480) -> bytes:
    """A HEIC whose ftyp box names `brand` as its major brand (its compatible brands stay mif1, heic)."""
    data = heic_bytes(width, height)
    assert data[4:8] == b"ftyp"
    return data[:8] + brand + data[12:]


def tiff_with_an_orientation_of_two_values(width: int = 600, height: int = 400) -> bytes:
    """A TIFF whose Orientation tag is 6 with a count of 2 (6, 1): Pillow turns the photo by it, libtiff
    (the raster workers' decoder) ignores the malformed tag and reads 1."""
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    upright_quadrants(width, height).save(out, "TIFF", exif=exif)
    data = bytearray(out.getvalue())
    assert data[:4] == b"II*\0"
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack("<H", data[entry : entry + 2]) == (0x0112,):
            data[entry + 4 : entry + 12] = struct.pack("<IHH", 2, 6, 1)
            return bytes(data)
    raise AssertionError("Pillow wrote no Orientation tag")


def upright_quadrants(width: int, height: int) -> Image.Image:
    """Top-left red, top-right green, bottom-left blue, bottom-right white: where each lands tells how a
    print was turned."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height // 2))
    image.paste((0, 255, 0), (width // 2, 0, width, height // 2))
    image.paste((0, 0, 255), (0, height // 2, width // 2, height))
    return image


def large_blocks(directory: Path, *, image_format: str, width: int = 7740, height: int = 5160) -> str:
    """A 40 MP photo of flat colour blocks (120 MB decoded, a few MB on disk) written into `directory`;
    its path. libvips makes it row by row, so the test process never holds it decoded either."""
    import pyvips

    xy = pyvips.Image.xyz(width, height)
    cells = (xy[0] / 97).floor() + (xy[1] / 89).floor()
    pixels = ((cells % 7) * 30 + 20).bandjoin([(cells % 5) * 50, (cells % 3) * 100 + 40]).cast("uchar")
    path = directory / f"blocks.{image_format}"
    if image_format == "png":
        pixels.pngsave(str(path), compression=1)
    elif image_format == "tiff":
        pixels.tiffsave(str(path), compression="deflate")
    else:
        pixels.jpegsave(str(path), Q=90)
    return str(path)


def heic_grid_with_tiles_beyond_the_image(
    tile: int = 512, columns: int = 64, shown: tuple[int, int] = (512, 512)
) -> bytes:
    """A HEIC grid displayed at `shown` whose `columns` columns of `tile` px tiles (and as many rows as
    `shown` needs) all point at one coded picture: a few KB that every decoder decodes tile by tile, columns x
    rows x tile² pixels, whatever it shows. Written by hand (no encoder makes one): ftyp, a meta box whose
    primary item is a `grid` (idat) of hvc1 items sharing one hvcC and one mdat payload."""
    return _hand_written_heic(tile=tile, columns=columns, rows=-(-shown[1] // tile), grid_shown=shown)


def heic_overlay_of_a_grid(
    tile: int = 1024, columns: int = 24, rows: int = 24, shown: tuple[int, int] = (512, 512)
) -> bytes:
    """A HEIC whose primary item is an overlay (`iovl`) `shown` in size, drawn from one hidden `grid` of
    `columns` x `rows` tiles of `tile` px (each the same coded picture) that it places at its origin: by
    default 26 KB, 512 x 512 shown and 604 MP decoded. libheif reports the primary's tiling as one tile of
    the overlay's size, so a check of the primary's tiling alone passed it. Written by hand, as
    `heic_grid_with_tiles_beyond_the_image` (no encoder makes one)."""
    return _hand_written_heic(
        tile=tile, columns=columns, rows=rows, grid_shown=(columns * tile, rows * tile), overlay_shown=shown
    )


def heic_with_a_hidden_alpha_grid(tile: int = 1024, columns: int = 24, rows: int = 24) -> bytes:
    """A HEIC whose primary item is one coded picture of `tile` px, and whose alpha image (an item whose
    `auxl` reference names the primary, with `auxC` urn:mpeg:hevc:2015:auxid:1) is a hidden `grid` of
    `columns` x `rows` tiles of `tile` px, each the same coded picture: by default 26 KB, 1024 x 1024 shown
    and 604 MP decoded, as libheif decodes a primary's alpha with it. Written by hand, as
    `heic_grid_with_tiles_beyond_the_image` (no encoder makes one)."""
    return _hand_written_heic(
        tile=tile, columns=columns, rows=rows, grid_shown=(columns * tile, rows * tile), alpha_grid=True
    )


def _hand_written_heic(
    *,
    tile: int,
    columns: int,
    rows: int,
    grid_shown: tuple[int, int],
    overlay_shown: tuple[int, int] | None = None,
    alpha_grid: bool = False,
) -> bytes:
    """ftyp, a meta box and one mdat: a `grid` (data in idat) of hvc1 items sharing one hvcC and one mdat
    payload, the primary item; or, with `overlay_shown`, a hidden one under a primary `iovl` (data in idat
    after the grid's) of that size that places it at (0, 0); or, with `alpha_grid`, a hidden one that is the
    alpha image (`auxl` and `auxC`) of a primary hvc1 item of one tile, the same coded picture."""
    import pillow_heif

    coded = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (tile, tile), (120, 130, 140))).save(
        coded, quality=10, enc_params={"preset": "ultrafast"}
    )
    hvcc, picture = _hvcc_and_picture(coded.getvalue())

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
        return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)

    overlaid = overlay_shown is not None
    grid_item = (
        2 if overlaid or alpha_grid else 1
    )  # item 1 is the primary: the overlay, the picture or the grid
    tiles = range(grid_item + 1, grid_item + 1 + rows * columns)
    width, height = grid_shown
    grid = bytes([0, 1, rows - 1, columns - 1]) + struct.pack(">II", width, height)  # 32-bit sizes
    # ispe properties: 2 each tile's size, 3 the grid's (1 is the hvcC), 4 the overlay's
    sizes = [(tile, tile), grid_shown]
    infos = [full_box(b"infe", 2, 0 if grid_item == 1 else 1, struct.pack(">HH", grid_item, 0) + b"grid\0")]
    infos += [full_box(b"infe", 2, 1, struct.pack(">HH", item, 0) + b"hvc1\0") for item in tiles]  # hidden
    associations = [struct.pack(">HB", grid_item, 1) + bytes([3])]
    associations += [struct.pack(">HB", item, 2) + bytes([0x81, 2]) for item in tiles]  # hvcC essential
    references = box(
        b"dimg", struct.pack(">HH", grid_item, len(tiles)) + b"".join(struct.pack(">H", i) for i in tiles)
    )
    in_idat = [(grid_item, grid)]
    if overlay_shown is not None:
        # iovl: version, flags 1 (32-bit fields), the canvas' fill (RGBA, 16 bits each), its size, then each
        # input's offset
        overlay = bytes([0, 1]) + struct.pack(">4H", 0, 0, 0, 0xFFFF) + struct.pack(">II", *overlay_shown)
        overlay += struct.pack(">ii", 0, 0)
        sizes.append(overlay_shown)
        infos.insert(0, full_box(b"infe", 2, 0, struct.pack(">HH", 1, 0) + b"iovl\0"))
        associations.insert(0, struct.pack(">HB", 1, 1) + bytes([4]))
        references = box(b"dimg", struct.pack(">HHH", 1, 1, grid_item)) + references
        in_idat.append((1, overlay))
    alpha = b""
    coded_items = list(tiles)
    if alpha_grid:
        # the primary: the tiles' picture, shown (hvcC and ispe 2); the grid: its alpha (auxC, property 4)
        alpha = full_box(b"auxC", 0, 0, b"urn:mpeg:hevc:2015:auxid:1\0")
        infos.insert(0, full_box(b"infe", 2, 0, struct.pack(">HH", 1, 0) + b"hvc1\0"))
        associations[0] = struct.pack(">HB", grid_item, 2) + bytes([3, 4])
        associations.insert(0, struct.pack(">HB", 1, 2) + bytes([0x81, 2]))
        references += box(b"auxl", struct.pack(">HHH", grid_item, 1, 1))
        coded_items.insert(0, 1)
    properties = box(
        b"ipco",
        hvcc + b"".join(full_box(b"ispe", 0, 0, struct.pack(">II", *size)) for size in sizes) + alpha,
    )
    idat = b"".join(data for _, data in in_idat)

    def meta(mdat_offset: int) -> bytes:
        # iloc version 1: offset and length of 4 bytes, no base offset; grid and overlay in idat (method 1)
        locations, at = [], 0
        for item, data in in_idat:
            locations.append(struct.pack(">HHHH", item, 1, 0, 1) + struct.pack(">II", at, len(data)))
            at += len(data)
        locations += [
            struct.pack(">HHHH", i, 0, 0, 1) + struct.pack(">II", mdat_offset, len(picture))
            for i in coded_items
        ]
        return full_box(
            b"meta",
            0,
            0,
            full_box(b"hdlr", 0, 0, b"\0\0\0\0pict" + b"\0" * 13)
            + full_box(b"pitm", 0, 0, struct.pack(">H", 1))
            + full_box(b"iloc", 1, 0, b"\x44\x00" + struct.pack(">H", len(locations)) + b"".join(locations))
            + full_box(b"iinf", 0, 0, struct.pack(">H", len(infos)) + b"".join(infos))
            + box(
                b"iprp",
                properties
                + full_box(b"ipma", 0, 0, struct.pack(">I", len(associations)) + b"".join(associations)),
            )
            + full_box(b"iref", 0, 0, references)
            + box(b"idat", idat),
        )

    file_type = box(b"ftyp", b"heic" + b"\0\0\0\0" + b"mif1heic")
    mdat_offset = len(file_type) + len(meta(0)) + 8  # after the mdat box's header
    return file_type + meta(mdat_offset) + box(b"mdat", picture)


def _hvcc_and_picture(heic: bytes) -> tuple[bytes, bytes]:
    """The hvcC box (whole) and the coded picture (mdat's payload) of a one-picture HEIC pillow-heif wrote."""
    containers = {b"meta": 4, b"iprp": 0, b"ipco": 0}  # a full box's version and flags come first in meta
    found: dict[bytes, bytes] = {}

    def walk(start: int, end: int) -> None:
        while start < end:
            size, kind = struct.unpack(">I4s", heic[start : start + 8])
            if kind in containers:
                walk(start + 8 + containers[kind], start + size)
            elif kind == b"hvcC":
                found[kind] = heic[start : start + size]
            elif kind == b"mdat":
                found[kind] = heic[start + 8 : start + size]
            start += size

    walk(0, len(heic))
    return found[b"hvcC"], found[b"mdat"]


def progressive_jpeg_with_scans(scans: int, width: int = 512, height: int = 512) -> bytes:
    """A progressive JPEG of `scans` scans (a "scan bomb"): Pillow's ten over a flat image, then copies of its
    first AC scan (luma, coefficients 1-5) as a first pass at full precision (Al 0). Legal after the ten
    (those coefficients are complete, so no decoder warns) and 12 bytes each whatever the size, as the flat
    image's blocks are one EOB run; yet every decoder decodes each scan over the whole image."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "JPEG", quality=90, progressive=True)
    data = out.getvalue()
    found: list[tuple[int, int]] = []  # each scan's SOS segment and entropy-coded data: (start, end)
    position = 2  # after SOI
    while data[position + 1] != 0xD9:  # EOI
        start = position
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if data[start + 1] == 0xDA:
            while data[position] != 0xFF or data[position + 1] == 0x00 or 0xD0 <= data[position + 1] <= 0xD7:
                position += 1
            found.append((start, position))
    assert 0 < len(found) <= scans
    for start, end in found:
        components = data[start + 4]
        spectral_start, _, approximation = data[start + 5 + 2 * components : start + 8 + 2 * components]
        if spectral_start > 0 and approximation >> 4 == 0:  # the first AC scan: Ah 0
            scan = bytearray(data[start:end])
            scan[7 + 2 * components] = 0  # Ah 0, Al 0
            return data[:position] + bytes(scan) * (scans - len(found)) + data[position:]
    raise AssertionError("Pillow wrote no AC scan")


def progressive_jpeg_scripted(width: int = 640, height: int = 480) -> bytes:
    """A photo-like progressive JPEG of 68 scans, more than any encoder writes on its own but a legal script
    (`jpegtran -scans`): each luma AC coefficient in a scan of its own, then refined."""
    script = (
        "0,1,2: 0-0, 0, 1;\n"
        + "".join(f"0: {k}-{k}, 0, 1;\n" for k in range(1, 64))
        + "1: 1-63, 0, 0;\n2: 1-63, 0, 0;\n0,1,2: 0-0, 1, 0;\n0: 1-63, 1, 0;\n"
    )
    out = io.BytesIO()
    Image.effect_noise((width, height), 60).convert("RGB").save(out, "JPEG", quality=90)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as script_file:
        script_file.write(script)
        script_file.flush()
        result = subprocess.run(
            ["jpegtran", "-copy", "all", "-scans", script_file.name],
            input=out.getvalue(),
            capture_output=True,
            check=True,
        )
    return result.stdout


def icc_profile_described(description: str) -> bytes:
    """lcms's sRGB profile with its `desc` tag (an mluc) saying `description`, as a photo editor writes the
    profile's name; the old tag's bytes stay in the file, unreferenced."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    text = description.encode("utf-16-be")
    tag = b"mluc" + bytes(4) + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", len(text), 28) + text
    icc += bytes(-len(icc) % 4)
    offset = len(icc)
    icc += tag
    (count,) = struct.unpack(">I", icc[128:132])
    for entry in range(132, 132 + 12 * count, 12):
        if icc[entry : entry + 4] == b"desc":
            icc[entry + 4 : entry + 12] = struct.pack(">II", offset, len(tag))
    icc[0:4] = struct.pack(">I", len(icc))
    assert (
        ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(bytes(icc)))).strip()
        == description
    )
    return bytes(icc)
