"""A photo is served back with the media type of the format intake stored it in, not a fresh probe of its
bytes: a phone's multi-picture JPEG (MPO) is stored as its first picture, whose index still names the others,
and was served as `image/mpo`, which no browser shows."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests.builders import UserFactory

pytestmark = pytest.mark.django_db


def mpo_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 10, 10)).save(
        out, "MPO", save_all=True, append_images=[Image.new("RGB", (300, 200), (10, 10, 200))]
    )
    return out.getvalue()


def test_a_phone_s_multi_picture_jpeg_is_downloaded_by_its_owner_as_a_jpeg(api):
    # given a customer's photo taken by a phone that stores two pictures in one JPEG
    api.force_authenticate(UserFactory.create())
    created = api.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("IMG_0001.JPG", mpo_bytes())}, format="multipart"
    ).json()
    assert created["image_format"] == "JPEG"

    # when its owner downloads it
    response = api.get(f"/api/v1/assets/{created['id']}/content")

    # then it is a JPEG a browser shows, and it is one
    assert (response.status_code, response["Content-Type"]) == (200, "image/jpeg")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body.startswith(b"\xff\xd8")
