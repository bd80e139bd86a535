"""What the raster benchmark times, each a function of (photo bytes, print inches): our rasterizer, a naive
Pillow path, a plain pyvips pipeline, the decode alone (the limit), and the float reference for PSNR."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from PIL import Image, ImageCms, ImageFilter, ImageOps

# The decode-bound path's decoder, set in each worker (the fastest one measured by `decoder_pick`).
DECODER = {"name": "simplejpeg"}


def naive_print(data: bytes, width_in: float, height_in: float) -> bytes:
    """What a first implementation does: full decode, transpose, full-size LANCZOS, profile, unsharp mask."""
    from lab.production.raster import RasterSpec, target_size

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    size = target_size(
        spec=RasterSpec(width_in=width_in, height_in=height_in),
        photo_width=image.width,
        photo_height=image.height,
        orientation=1,
    )
    image = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    embedded = image.info.get("icc_profile")
    if embedded:
        converted = ImageCms.profileToProfile(
            image, io.BytesIO(embedded), ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
        assert converted is not None
        image = converted
    image = image.filter(ImageFilter.UnsharpMask())
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def plain_pyvips_print(data: bytes, width_in: float, height_in: float) -> bytes:
    """What a pyvips user writes: libvips' thumbnail (shrink-on-load by its own rule, EXIF rotation, centre
    crop, LANCZOS3), the same 3x3 sharpen, the embedded profile to sRGB, q95 4:4:4 with the profile kept."""
    import pyvips

    from lab.production.imaging.pillow_engine import SHARPEN_SCALE, SHARPEN_WEIGHTS
    from lab.production.raster import RasterSpec, target_size

    header = pyvips.Image.new_from_buffer(data, "")
    orientation = header.get("orientation") if header.get_typeof("orientation") else 1
    width, height = target_size(
        spec=RasterSpec(width_in=width_in, height_in=height_in),
        photo_width=header.width,
        photo_height=header.height,
        orientation=orientation,
    )
    image = pyvips.Image.thumbnail_buffer(data, width, height=height, size="both", crop="centre")
    mask = pyvips.Image.new_from_array(
        [list(SHARPEN_WEIGHTS[0:3]), list(SHARPEN_WEIGHTS[3:6]), list(SHARPEN_WEIGHTS[6:9])],
        scale=SHARPEN_SCALE,
    )
    image = image.conv(mask, precision="integer").cast("uchar")
    tagged = image.get_typeof("icc-profile-data") != 0
    if tagged:
        image = image.icc_transform("srgb", embedded=True, intent="perceptual")
    return bytes(image.jpegsave_buffer(Q=95, subsample_mode="off", keep="icc" if tagged else "none"))


def shrink_factor_for(data: bytes, width_in: float, height_in: float) -> int:
    """The shrink-on-load factor our rasterizer uses for this photo and print."""
    from lab.production.imaging.geometry import jpeg_shrink_factor, plan_resample
    from lab.production.imaging.source import open_source
    from lab.production.raster import SHRINK_HEADROOM, RasterSpec, raster_placement

    source = open_source(data)
    placement = raster_placement(
        spec=RasterSpec(width_in=width_in, height_in=height_in),
        photo_width=source.width,
        photo_height=source.height,
        orientation=source.orientation,
    )
    plan = plan_resample(
        stored_width=source.width,
        stored_height=source.height,
        orientation=source.orientation,
        placement=placement,
    )
    return jpeg_shrink_factor(plan=plan, headroom=SHRINK_HEADROOM)


def _decode_simplejpeg(data: bytes, factor: int) -> None:
    import simplejpeg

    width, height, _colour, _sampling = simplejpeg.decode_jpeg_header(data)
    simplejpeg.decode_jpeg(
        data, min_width=-(-int(width) // factor), min_height=-(-int(height) // factor), min_factor=factor
    )


def _decode_libvips(data: bytes, factor: int) -> None:
    import pyvips

    pyvips.Image.jpegload_buffer(data, shrink=factor, access="sequential").write_to_memory()


def _decode_pillow(data: bytes, factor: int) -> None:
    image = Image.open(io.BytesIO(data))
    if factor > 1:
        image.draft(image.mode, (image.width // factor, image.height // factor))
    image.load()


DECODERS: dict[str, Callable[[bytes, int], None]] = {
    "simplejpeg": _decode_simplejpeg,
    "libvips": _decode_libvips,
    "Pillow": _decode_pillow,
}


def decode_only(data: bytes, width_in: float, height_in: float) -> bytes:
    """The limit: decode the photo at our shrink-on-load factor into memory, nothing else."""
    DECODERS[DECODER["name"]](data, shrink_factor_for(data, width_in, height_in))
    return b""


def decoder_pick(samples: list[tuple[bytes, int]], *, rounds: int = 3) -> dict[str, float]:
    """CPU ms per decode of each decoder over the samples (best of `rounds`), fastest first."""
    timings: dict[str, float] = {}
    for name, decoder in DECODERS.items():
        best = []
        for data, factor in samples:
            spent = []
            for _ in range(rounds):
                started = time.process_time()
                decoder(data, factor)
                spent.append(time.process_time() - started)
            best.append(min(spent))
        timings[name] = 1000 * sum(best) / len(best)
    return dict(sorted(timings.items(), key=lambda item: item[1]))


def our_print(data: bytes, width_in: float, height_in: float) -> bytes:
    from lab.production.raster import RasterSpec, rasterize

    return rasterize(data=data, spec=RasterSpec(width_in=width_in, height_in=height_in)).data


PATHS: dict[str, Callable[[bytes, float, float], bytes]] = {
    "naive": naive_print,
    "pyvips": plain_pyvips_print,
    "decode": decode_only,
    "ours": our_print,
}


def reference_print(data: bytes, width_in: float, height_in: float) -> Image.Image:
    """Our pipeline with ideal resampling: full-size Pillow decode, LANCZOS in 32-bit float with the exact
    sub-pixel box, one rounding, the same 3x3 sharpen and ICC transform."""
    from lab.production.imaging.colour import output_profile, to_output_profile
    from lab.production.imaging.geometry import orient, plan_resample
    from lab.production.imaging.pillow_engine import SHARPEN
    from lab.production.imaging.source import open_source, to_working_mode
    from lab.production.raster import RasterSpec, raster_placement

    spec = RasterSpec(width_in=width_in, height_in=height_in)
    source = open_source(data)
    placement = raster_placement(
        spec=spec, photo_width=source.width, photo_height=source.height, orientation=source.orientation
    )
    plan = plan_resample(
        stored_width=source.width,
        stored_height=source.height,
        orientation=source.orientation,
        placement=placement,
    )
    decoded = to_working_mode(Image.open(io.BytesIO(data), formats=["JPEG"]))
    assert decoded.size == (source.width, source.height)
    bands = [
        band.convert("F")
        .resize(plan.photo_size, Image.Resampling.LANCZOS, box=plan.box, reducing_gap=None)
        .point(lambda value: value + 0.5)  # F -> L truncates; this makes it round
        .convert("L")
        for band in decoded.split()
    ]
    resampled = Image.merge(decoded.mode, bands).filter(SHARPEN)
    oriented = orient(resampled, orientation=source.orientation)
    return to_output_profile(oriented, embedded_icc=source.icc_profile, output=output_profile(None))
