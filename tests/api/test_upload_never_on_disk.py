"""A photo upload is held in the web worker's memory until it is encrypted: no plaintext copy of it is ever
written to the web host's temporary directory, where a killed worker would leave it for good."""

from __future__ import annotations

import io
import random
import tempfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from api.middleware import MULTIPART_FIELDS_ROOM
from lab.orders import imaging
from lab.orders.models import Asset
from lab.privacy.vault import vault_read
from tests.builders import UserFactory

pytestmark = pytest.mark.django_db

# Django's default threshold, and this lab's until uploads were kept in memory: a bigger body was written to
# a NamedTemporaryFile in plaintext before the view ran.
OLD_MEMORY_THRESHOLD = 10 * 1024 * 1024


def noisy_png(width: int, height: int) -> bytes:
    """Noise does not compress: a PNG of about 3 bytes a pixel, decodable as any photo."""
    pixels = random.Random(width * height).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


def files_holding(directory: Path, part: bytes) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file() and part in path.read_bytes()]


def test_a_photo_over_the_old_memory_threshold_is_never_written_to_the_temporary_directory(
    api, monkeypatch, tmp_path
):
    # given a signed-in customer, a photo larger than Django's 10 MiB threshold, and the host's temporary
    # directory (where Django's TemporaryFileUploadHandler writes) watched while the photo is being inspected
    api.force_authenticate(UserFactory.create())
    photo = noisy_png(2000, 2000)
    assert len(photo) > OLD_MEMORY_THRESHOLD
    temporary = tmp_path / "host-tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    middle = photo[len(photo) // 2 : len(photo) // 2 + 4096]  # a part of the photo no other file holds
    found_while_inspecting: list[list[Path]] = []
    inspect_image = imaging.inspect_image

    def inspecting_while_the_upload_is_open(**arguments):
        found_while_inspecting.append(files_holding(temporary, middle))
        return inspect_image(**arguments)

    monkeypatch.setattr(imaging, "inspect_image", inspecting_while_the_upload_is_open)

    # when it is uploaded
    response = api.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("photo.png", photo)}, format="multipart"
    )

    # then it is stored, and no file on the host held its bytes while it was being handled
    assert response.status_code == 201, response.json()
    assert found_while_inspecting == [[]]
    assert files_holding(temporary, middle) == []
    asset = Asset.objects.get(pk=response.json()["id"])
    assert vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original") == photo


def test_every_upload_the_api_lets_through_is_one_the_memory_handler_takes(settings):
    # given the API's cap on a multipart body (api/middleware.py) and the only upload handler, which takes
    # a file into memory when the body is at most FILE_UPLOAD_MAX_MEMORY_SIZE, and otherwise drops it
    largest_body = settings.ASSET_MAX_BYTES + MULTIPART_FIELDS_ROOM

    # then no upload is written to disk, and none the API accepts is dropped
    assert settings.FILE_UPLOAD_HANDLERS == ["django.core.files.uploadhandler.MemoryFileUploadHandler"]
    assert largest_body <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE
