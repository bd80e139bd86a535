"""Colour management: from the photo's embedded ICC profile (sRGB when absent) to the printer's profile.
Transforms are built once per (source, output) profile pair per process and reused for every print."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageCms

from lab.production.imaging.errors import INVALID_OUTPUT_PROFILE, RasterError

logger = logging.getLogger(__name__)


def _fixed_creation_date(icc: bytes) -> bytes:
    """LittleCMS stamps a built profile with the time it was built (ICC header bytes 24-35), so each worker
    process embedded a different sRGB profile and the same raster had different bytes (and checksums) on
    each worker. A fixed date makes the raster a function of the photo and the spec alone."""
    return icc[:24] + struct.pack(">6H", 2020, 1, 1, 0, 0, 0) + icc[36:]


SRGB_PROFILE: bytes = _fixed_creation_date(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
# Photographic prints: perceptual keeps gradations of out-of-gamut colours instead of clipping them.
RENDERING_INTENT = ImageCms.Intent.PERCEPTUAL
_MODE_FOR_COLOUR_SPACE = {"RGB": "RGB", "CMYK": "CMYK", "GRAY": "L"}
# A transform that moves no 8-bit value by more than this is skipped (e.g. a camera's sRGB profile to ours).
_IDENTITY_TOLERANCE = 1


@dataclass(frozen=True)
class OutputProfile:
    icc: bytes
    mode: str


def _colour_space(icc: bytes) -> str | None:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    return str(profile.profile.xcolor_space).strip()


@functools.lru_cache(maxsize=16)
def output_profile(icc: bytes | None) -> OutputProfile:
    """The printer profile decides the output pixel mode (RGB for photo printers, CMYK for presses)."""
    if icc is None:
        return OutputProfile(icc=SRGB_PROFILE, mode="RGB")
    mode = _MODE_FOR_COLOUR_SPACE.get(_colour_space(icc) or "")
    if mode not in ("RGB", "CMYK"):
        raise RasterError(
            code=INVALID_OUTPUT_PROFILE, message="output ICC profile is not a valid RGB or CMYK profile"
        )
    return OutputProfile(icc=icc, mode=mode)


@functools.lru_cache(maxsize=1)
def default_cmyk_profile() -> bytes:
    """Untagged CMYK photos are interpreted with libvips' built-in CMYK profile (a coated-press profile)."""
    import pyvips

    probe = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").icc_export(output_profile="cmyk")
    return bytes(probe.get("icc-profile-data"))


def _identity_probe(mode: str) -> Image.Image:
    levels = range(0, 256, 15)
    if mode == "L":
        return Image.frombytes("L", (len(levels), 1), bytes(levels))
    samples = bytes(level for r in levels for g in levels for b in levels for level in (r, g, b))
    return Image.frombytes("RGB", (len(samples) // 3, 1), samples)


def _is_near_identity(transform: ImageCms.ImageCmsTransform, *, mode: str) -> bool:
    probe = _identity_probe(mode)
    converted = ImageCms.applyTransform(probe, transform)
    assert converted is not None
    return all(
        abs(a - b) <= _IDENTITY_TOLERANCE for a, b in zip(probe.tobytes(), converted.tobytes(), strict=True)
    )


# Transforms kept per process, by the SHA-256 of each profile and the two modes. Keyed by the profiles'
# bytes themselves (functools.lru_cache), the cache kept every photo's profile: 32 photos with 20 MB profiles
# (intake refuses them now; photos stored before, not) held 640 MiB in each raster worker and web process. A
# transform keeps nothing of its source profile (Pillow keeps only the output one: the printer's, or sRGB).
_TRANSFORMS_KEPT = 32
_TransformKey = tuple[str, str, str, str]
_transforms_by_digest: OrderedDict[_TransformKey, ImageCms.ImageCmsTransform | None] = OrderedDict()
_transforms_lock = threading.Lock()


def _digest(icc: bytes) -> str:
    return hashlib.sha256(icc).hexdigest()


def cached_transform(
    source_icc: bytes, output_icc: bytes, source_mode: str, output_mode: str
) -> ImageCms.ImageCmsTransform | None:
    """None means 'leave the pixels alone': the two profiles agree to within one 8-bit step."""
    key = (_digest(source_icc), _digest(output_icc), source_mode, output_mode)
    with _transforms_lock:
        if key in _transforms_by_digest:
            _transforms_by_digest.move_to_end(key)
            return _transforms_by_digest[key]
    # Built outside the lock (LittleCMS takes a while on a large profile); two threads may both build one.
    transform = _transform_build(source_icc, output_icc, source_mode, output_mode)
    with _transforms_lock:
        _transforms_by_digest[key] = transform
        _transforms_by_digest.move_to_end(key)
        while len(_transforms_by_digest) > _TRANSFORMS_KEPT:
            _transforms_by_digest.popitem(last=False)
    return transform


def _transform_build(
    source_icc: bytes, output_icc: bytes, source_mode: str, output_mode: str
) -> ImageCms.ImageCmsTransform | None:
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(source_icc)),
        ImageCms.ImageCmsProfile(io.BytesIO(output_icc)),
        source_mode,
        output_mode,
        renderingIntent=RENDERING_INTENT,
    )
    if (
        source_mode == output_mode
        and source_mode in ("RGB", "L")
        and _is_near_identity(transform, mode=source_mode)
    ):
        return None
    return transform


def _transforms(source_icc: bytes, mode: str) -> bool:
    """Whether LittleCMS builds a transform from this profile: one can be readable and still lack a tag a
    transform needs (a matrix-shaper without its red colorant or curve). Such a profile raised PyCMSError
    in the raster worker, which no handler caught: the job was taken over and crashed again, for ever."""
    try:
        cached_transform(source_icc, SRGB_PROFILE, mode, "RGB")
    except ImageCms.PyCMSError:
        return False
    return True


def _source_profile(image: Image.Image, embedded: bytes | None) -> tuple[Image.Image, bytes]:
    """The embedded profile when it is readable, matches the pixels and makes a transform; otherwise the
    default for the mode."""
    expected_space = {"RGB": "RGB", "CMYK": "CMYK", "L": "GRAY"}[image.mode]
    if embedded is not None:
        if _colour_space(embedded) == expected_space and _transforms(embedded, image.mode):
            return image, embedded
        logger.warning("embedded ICC profile unreadable or for another colour space; using the default")
    if image.mode == "CMYK":
        return image, default_cmyk_profile()
    # Untagged grey is grey in sRGB: R = G = B.
    return (image.convert("RGB") if image.mode == "L" else image), SRGB_PROFILE


def converts_in_libvips(*, embedded_icc: bytes | None, mode: str, output: OutputProfile) -> bool:
    """Whether the conversion of an RGB photo with this embedded profile to sRGB output is left to libvips'
    `icc_transform` inside the resampling pipeline (LittleCMS too: the same pixels as Pillow's, measured ~35 %
    faster on an 8x10 as it runs on the rows as they stream). Printer profiles stay with the cached Pillow
    transforms below: libvips would rebuild theirs, from a file, for every print."""
    if mode != "RGB" or embedded_icc is None or output.icc != SRGB_PROFILE:
        return False
    if _colour_space(embedded_icc) != "RGB" or not _transforms(embedded_icc, "RGB"):
        return False
    return cached_transform(embedded_icc, output.icc, "RGB", "RGB") is not None


def to_output_profile(
    image: Image.Image, *, embedded_icc: bytes | None, output: OutputProfile
) -> Image.Image:
    image, source_icc = _source_profile(image, embedded_icc)
    if source_icc == output.icc and image.mode == output.mode:
        return image
    transform = cached_transform(source_icc, output.icc, image.mode, output.mode)
    if transform is None:
        return image
    if image.mode == output.mode:
        ImageCms.applyTransform(image, transform, inPlace=True)
        return image
    converted = ImageCms.applyTransform(image, transform)
    assert converted is not None
    return converted
