"""Intake refuses a photo whose embedded ICC profile is over ASSET_MAX_ICC_PROFILE_BYTES: every raster worker
and web process keeps the colour transforms of recent photos' profiles."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageCms

from lab.orders import imaging
from lab.orders.models import Asset
from lab.production.imaging.source import open_source
from tests.builders import UserFactory

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def _profile_of(size: int) -> bytes:
    """lcms's sRGB profile grown to `size` bytes after its tags (its header's size says so), as large as a
    press profile; still a profile LittleCMS reads."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    padded = icc + bytes(size - len(icc))
    profile = len(padded).to_bytes(4, "big") + padded[4:]
    ImageCms.ImageCmsProfile(io.BytesIO(profile))
    return profile


def _photo(image_format: str, profile: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(buffer, image_format, icc_profile=profile)
    return buffer.getvalue()


def _upload(api, data: bytes, name: str):
    return api.post("/api/v1/assets", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def _stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@pytest.mark.parametrize(("image_format", "name"), [("TIFF", "photo.tif"), ("JPEG", "photo.jpg")])
def test_a_photo_with_an_icc_profile_over_the_limit_is_refused_and_nothing_is_stored(
    api, settings, image_format, name
):
    # given a photo embedding a 5 MB profile (the limit is 4 MiB)
    api.force_authenticate(UserFactory.create())
    data = _photo(image_format, _profile_of(5 * 1000 * 1000))
    assert Image.open(io.BytesIO(data)).info["icc_profile"][:4] == (5_000_000).to_bytes(4, "big")

    # when it is uploaded
    response = _upload(api, data, name)

    # then it is refused with the limit, and nothing is kept
    assert response.status_code == 422, response.json()
    assert response.json()["code"] == "icc_profile_too_large"
    assert response.json()["max_bytes"] == 4 * MIB == settings.ASSET_MAX_ICC_PROFILE_BYTES
    assert Asset.objects.count() == 0
    assert _stored_files(settings) == []


@pytest.mark.parametrize(("image_format", "name"), [("TIFF", "photo.tif"), ("JPEG", "photo.jpg")])
def test_a_photo_with_a_press_sized_icc_profile_is_accepted(api, image_format, name):
    # given a photo embedding a 3 MB profile, as a prepress CMYK profile is
    api.force_authenticate(UserFactory.create())

    # when it is uploaded, then it is stored with its profile
    response = _upload(api, _photo(image_format, _profile_of(3 * 1000 * 1000)), name)

    assert response.status_code == 201, response.json()
    assert Asset.objects.get().has_icc_profile is True


def test_the_limit_is_the_setting(api, settings):
    # given a limit lowered under a 3 MB profile
    settings.ASSET_MAX_ICC_PROFILE_BYTES = 2 * MIB
    api.force_authenticate(UserFactory.create())

    response = _upload(api, _photo("TIFF", _profile_of(3 * 1000 * 1000)), "photo.tif")

    assert response.status_code == 422, response.json()
    assert response.json()["code"] == "icc_profile_too_large"
    assert response.json()["max_bytes"] == 2 * MIB
    assert Asset.objects.count() == 0


def _jpeg_with_icc_chunks_miscounted(profile: bytes, chunk_size: int = 0xFFFF - 2 - 14) -> bytes:
    """A JPEG carrying `profile` in ICC_PROFILE APP2 segments (each "ICC_PROFILE\\0", its number, the total,
    then at most `chunk_size` bytes) whose total says one more than there are: Pillow drops such a profile,
    libvips (the raster workers' reader) joins every chunk."""
    chunks = [profile[start : start + chunk_size] for start in range(0, len(profile), chunk_size)]
    segments = b"".join(
        b"\xff\xe2"
        + (2 + 14 + len(chunk)).to_bytes(2, "big")
        + b"ICC_PROFILE\x00"
        + bytes([number, len(chunks) + 1])
        + chunk
        for number, chunk in enumerate(chunks, start=1)
    )
    photo = _photo("JPEG", b"")
    return photo[:2] + segments + photo[2:]


def test_a_profile_only_the_workers_read_is_judged_by_its_size(api, settings):
    # given a JPEG whose 5 MB profile Pillow does not read (miscounted chunks) and libvips does
    api.force_authenticate(UserFactory.create())
    data = _jpeg_with_icc_chunks_miscounted(_profile_of(5 * 1000 * 1000))
    assert Image.open(io.BytesIO(data)).info.get("icc_profile") is None
    assert len(open_source(data).icc_profile or b"") == 5 * 1000 * 1000

    # when it is uploaded, then it is refused as the workers would have converted the print with it
    response = _upload(api, data, "photo.jpg")

    assert response.status_code == 422, response.json()
    assert response.json()["code"] == "icc_profile_too_large"
    assert Asset.objects.count() == 0
    assert _stored_files(settings) == []


def test_has_icc_profile_is_what_the_workers_read():
    # given a JPEG whose sRGB profile is in two miscounted chunks: Pillow reads none, libvips all of it
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = _jpeg_with_icc_chunks_miscounted(profile, chunk_size=len(profile) // 2 + 1)
    assert Image.open(io.BytesIO(data)).info.get("icc_profile") is None

    # when intake checks it
    facts = imaging.inspect_image(data=data, max_bytes=len(data), max_pixels=1_000_000)

    # then it says the photo has the profile the workers will convert its print with, and describes it
    assert open_source(facts.data).icc_profile == profile
    assert (facts.has_icc_profile, facts.icc_description) == (True, "sRGB built-in")
