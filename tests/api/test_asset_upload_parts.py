"""A photo upload is one photo: a form with two `file` parts (a browser's `<input type=file multiple>`),
or a photo under another part's name, is refused whole; before, the last `file` part was stored and the
first dropped without a word."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from lab.orders.models import Asset
from tests.support.images import jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "parts",
    [
        {"file": [SimpleUploadedFile("a.jpg", jpeg_bytes()), SimpleUploadedFile("b.png", png_bytes())]},
        {
            "file": SimpleUploadedFile("a.jpg", jpeg_bytes()),
            "photo": SimpleUploadedFile("b.png", png_bytes()),
        },
    ],
    ids=["two-file-parts", "another-part-name"],
)
def test_an_upload_of_more_than_one_photo_is_refused_and_keeps_none(api, parts):
    response = api.post("/api/v1/assets", parts, format="multipart")

    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert "one photo per request" in str(response.json()["errors"])
    assert Asset.objects.count() == 0


def test_one_photo_is_still_taken(api):
    response = api.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("a.jpg", jpeg_bytes())}, format="multipart"
    )

    assert (response.status_code, response.json()["status"]) == (201, "ready")
    assert Asset.objects.count() == 1
