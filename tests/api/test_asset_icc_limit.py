"""Intake refuses a photo whose embedded ICC profile is over ASSET_MAX_ICC_PROFILE_BYTES: every raster worker
and web process keeps the colour transforms of recent photos' profiles."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageCms

from lab.orders.models import Asset
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
