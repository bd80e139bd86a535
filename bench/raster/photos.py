"""The raster benchmark's generated photos: 24 MP camera-like and hard-content JPEGs for throughput and
fidelity, and very large photos of every accepted format (up to the pixel limit) for peak memory."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

PHOTO_WIDTH, PHOTO_HEIGHT = 6000, 4000  # 24 MP, 3:2 like most camera sensors
# Base pictures, cycled over the files: camera-like ones, and those in HARD_BASES hard content (thin lines
# and hard edges, where shrink-on-load and resampling errors show most).
BASE_PHOTOS = 4
HARD_BASES = frozenset({1})
# (orientation, embedded profile) cycled over the generated files: a third untagged, a third with an
# embedded sRGB profile (bytes different from ours), a third Display P3; every other one stored rotated.
VARIANTS = [(1, None), (6, None), (1, "srgb"), (6, "srgb"), (1, "p3"), (6, "p3")]
DISTINCT_FILES = 12


def builtin_profile(name: str) -> bytes:
    """libvips ships compact sRGB and Display P3 matrix profiles; take their bytes."""
    import pyvips

    probe = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").icc_export(output_profile=name)
    return bytes(probe.get("icc-profile-data"))


def camera_like_pixels(seed: int) -> Image.Image:
    """Smooth colour fields, mid-frequency texture, hard-edged shapes and sensor grain (sigma 5)."""
    import pyvips

    bands = []
    for channel in range(3):
        low = pyvips.Image.perlin(PHOTO_WIDTH // 8, PHOTO_HEIGHT // 8, cell_size=96, seed=seed * 31 + channel)
        texture = pyvips.Image.perlin(PHOTO_WIDTH, PHOTO_HEIGHT, cell_size=48, seed=seed * 31 + channel + 10)
        bands.append(low.resize(8, kernel="linear") * 1.6 + texture * 0.5)
    image = bands[0].bandjoin(bands[1:]) * 110 + 128
    shapes = pyvips.Image.perlin(PHOTO_WIDTH // 4, PHOTO_HEIGHT // 4, cell_size=120, seed=seed + 99)
    image = image + (shapes.resize(4, kernel="linear") > 0) / 255.0 * 70 - 35
    image = image + pyvips.Image.gaussnoise(PHOTO_WIDTH, PHOTO_HEIGHT, sigma=5, mean=0, seed=seed)
    pixels = image.cast("uchar").write_to_memory()
    return Image.frombytes("RGB", (PHOTO_WIDTH, PHOTO_HEIGHT), pixels)


def hard_pixels(seed: int) -> Image.Image:
    """Architecture and text at their worst: flat colour blocks with hard edges, 1-3 px lines at every angle
    in black, white and colours, and small dark strokes like print on a sign."""
    rng = random.Random(seed)
    image = Image.new("RGB", (PHOTO_WIDTH, PHOTO_HEIGHT), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.randrange(PHOTO_WIDTH), rng.randrange(PHOTO_HEIGHT)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x, y, x + rng.randrange(100, 1500), y + rng.randrange(100, 1200)), fill=colour)
    for _ in range(1500):
        x, y = rng.randrange(PHOTO_WIDTH), rng.randrange(PHOTO_HEIGHT)
        end = (x + rng.randrange(-2000, 2000), y + rng.randrange(-2000, 2000))
        colour = (rng.choice((0, 255, rng.randrange(256))), rng.randrange(256), rng.choice((0, 255)))
        draw.line(((x, y), end), fill=colour, width=rng.choice((1, 1, 2, 3)))
    for _ in range(4000):
        x, y = rng.randrange(PHOTO_WIDTH), rng.randrange(PHOTO_HEIGHT)
        draw.rectangle((x, y, x + rng.randrange(2, 12), y + rng.randrange(2, 30)), fill=(20, 20, 20))
    return image


def generate_photos(*, directory: Path, count: int, seed: int) -> list[Path]:
    """`count` prints' worth of files, cycling over at most DISTINCT_FILES distinct JPEGs (q92, 4:2:0)."""
    profiles = {"srgb": builtin_profile("srgb"), "p3": builtin_profile("p3")}
    bases = [
        hard_pixels(seed + index) if index in HARD_BASES else camera_like_pixels(seed + index)
        for index in range(min(BASE_PHOTOS, count))
    ]
    files: list[Path] = []
    for index in range(min(count, DISTINCT_FILES)):
        orientation, profile_name = VARIANTS[index % len(VARIANTS)]
        exif = Image.Exif()
        exif[0x0112] = orientation
        kind = "hard" if index % len(bases) in HARD_BASES else "camera"
        path = directory / f"photo-{index:02d}-{kind}.jpg"
        bases[index % len(bases)].save(
            path,
            "JPEG",
            quality=92,
            subsampling=2,  # 4:2:0 as cameras write
            exif=exif.tobytes(),
            icc_profile=profiles[profile_name] if profile_name else None,
        )
        files.append(path)
    return [files[index % len(files)] for index in range(count)]


def fidelity_sample(distinct: list[Path], count: int) -> list[Path]:
    """The photos checked against the reference: hard content first (the worst case), then camera-like
    untagged and Display P3 ones."""
    hard = [path for path in distinct if "-hard" in path.name]
    camera = [path for path in distinct if "-hard" not in path.name]
    preferred = hard[:1] + camera[:1] + camera[3:4]  # camera[3] is the first Display P3 one
    rest = [path for path in distinct if path not in preferred]
    return (preferred + rest)[:count]


# Very large photos, for peak memory. Content is blocks of flat colour: it compresses, so each file stays far
# below the 100 MiB upload limit as a real photo of that size would not always do, and generating it is
# quick; the decoder's work per pixel is the same. 178 MP is the largest photo intake accepts.
@dataclass(frozen=True)
class BigCase:
    name: str
    suffix: str
    write: Callable[[Path], None]


def _blocks(
    width: int, height: int, *, bands: int = 3, sixteen_bits: bool = False, alpha: bool = False
) -> Any:
    import pyvips

    xy = pyvips.Image.xyz(width, height)
    cells = (xy[0] / 97).floor() + (xy[1] / 89).floor()
    channels = [(cells % 7) * 30 + 20, (cells % 5) * 50, (cells % 3) * 100 + 40, (cells % 4) * 20][:bands]
    if alpha:
        channels.append((cells % 2) * 127 + 128)
    image = channels[0].bandjoin(channels[1:]) if len(channels) > 1 else channels[0]
    if sixteen_bits:
        return (image * 257).cast("ushort").copy(interpretation="rgb16" if bands == 3 else "grey16")
    interpretation = {1: "b-w", 3: "srgb", 4: "cmyk"}[bands]
    return image.cast("uchar").copy(interpretation=interpretation)


def _heic(width: int, height: int, *, tile_size: int = 0) -> Callable[[Path], None]:
    """One coded picture, or (tile_size) a grid of tiles as phones store photos above HEVC's 35.6 MP."""

    def write(path: Path) -> None:
        import pillow_heif

        pillow_heif.register_heif_opener()
        pixels = _blocks(width, height).write_to_memory()
        buffer = io.BytesIO()
        # x265's fastest preset: the encoder's time is not what is measured here.
        Image.frombytes("RGB", (width, height), pixels).save(
            buffer, "HEIF", quality=80, enc_params={"preset": "ultrafast"}, tile_size=tile_size
        )
        path.write_bytes(buffer.getvalue())

    return write


# Intake's pixel limit (Pillow's MAX_IMAGE_PIXELS, 89.5 MP) at 3:2.
INTAKE_LIMIT_SIZE = (11580, 7720)


def _as_intake_stores(write: Callable[[Path], None], *, layout: str) -> Callable[[Path], None]:
    """A progressive JPEG or an interlaced PNG reaches a raster worker in the sequential form intake stores
    (lab/orders/image_sequential.py), never as sent."""
    from lab.orders.image_sequential import sequential_bytes

    def write_stored(path: Path) -> None:
        write(path)
        path.write_bytes(sequential_bytes(path.read_bytes(), layout=layout))

    return write_stored


BIG_CASES = [
    BigCase(
        "PNG 8-bit RGB 100 MP", "png", lambda path: _blocks(12250, 8164).pngsave(str(path), compression=1)
    ),
    BigCase(
        "PNG 8-bit RGB 178 MP", "png", lambda path: _blocks(16000, 11125).pngsave(str(path), compression=1)
    ),
    BigCase(
        "PNG 16-bit RGBA 100 MP",
        "png",
        lambda path: _blocks(12250, 8164, sixteen_bits=True, alpha=True).pngsave(str(path), compression=1),
    ),
    BigCase(
        "PNG interlaced 8-bit RGB 89 MP, as stored",
        "png",
        _as_intake_stores(
            lambda path: _blocks(*INTAKE_LIMIT_SIZE).pngsave(str(path), compression=1, interlace=True),
            layout="interlaced",
        ),
    ),
    BigCase(
        "TIFF 16-bit RGB 178 MP",
        "tif",
        lambda path: _blocks(16000, 11125, sixteen_bits=True).tiffsave(
            str(path), compression="deflate", predictor="horizontal"
        ),
    ),
    BigCase(
        "TIFF 8-bit CMYK 100 MP",
        "tif",
        lambda path: _blocks(12250, 8164, bands=4).tiffsave(str(path), compression="deflate"),
    ),
    BigCase("JPEG RGB 178 MP", "jpg", lambda path: _blocks(16000, 11125).jpegsave(str(path), Q=90)),
    BigCase("JPEG CMYK 100 MP", "jpg", lambda path: _blocks(12250, 8164, bands=4).jpegsave(str(path), Q=90)),
    BigCase(
        "JPEG progressive 4:4:4 89 MP, as stored",
        "jpg",
        _as_intake_stores(
            lambda path: _blocks(*INTAKE_LIMIT_SIZE).jpegsave(
                str(path), Q=90, interlace=True, subsample_mode="off"
            ),
            layout="progressive",
        ),
    ),
    BigCase("HEIC 8-bit RGB 24 MP", "heic", _heic(6000, 4000)),
    BigCase("HEIC 8-bit RGB 48 MP, one coded picture", "heic", _heic(8064, 6048)),
    BigCase("HEIC 8-bit RGB 48 MP, 512 px grid", "heic", _heic(8064, 6048, tile_size=512)),
    BigCase("HEIC 8-bit RGB 89 MP, 512 px grid", "heic", _heic(*INTAKE_LIMIT_SIZE, tile_size=512)),
]
