"""A photo with GPS data whose EXIF Pillow reads but cannot write back without it is refused as
`corrupt_image`, uploaded or fetched from a URL, and leaves nothing behind.

Before: a text tag stored as a number (Software as a FLOAT, DOUBLE or RATIONAL) made Pillow's EXIF writer
raise AttributeError while the GPS was stripped: an upload was a 500, and a URL photo's fetch task crashed
every time until the sweep gave up on it (`url_fetch_failed`).
"""

from __future__ import annotations

import http.server
import io
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from lab.orders.models import Asset
from lab.orders.photos import asset_create_from_url, asset_fetch
from lab.privacy.models import DataKey
from tests.builders import UserFactory
from tests.support.crafted_images import (
    tiff_with_a_thumbnail_ifd_without_size,
    tiff_with_gps_pointing_at_ifd0,
)

pytestmark = pytest.mark.django_db

EXIF_FLOAT, EXIF_DOUBLE, EXIF_RATIONAL = 11, 12, 5
_VALUES = {
    EXIF_FLOAT: struct.pack("<f", 1.5),
    EXIF_DOUBLE: struct.pack("<d", 1.5),
    EXIF_RATIONAL: struct.pack("<II", 3, 2),
}


def jpeg_with_gps_and_software_as(kind: int) -> bytes:
    """A JPEG whose EXIF has a GPS IFD (GPSLatitudeRef "N") and its Software tag (text) stored as a number of
    `kind`. Little-endian TIFF layout: IFD0 at 8 (two entries, to 38), the number's 8 bytes at 38 when it
    does not fit in its entry, the GPS IFD at 46."""
    value = _VALUES[kind]
    in_entry = value if len(value) <= 4 else struct.pack("<I", 38)
    entries = struct.pack("<HHI", 0x0131, kind, 1) + in_entry.ljust(4, b"\0")
    entries += struct.pack("<HHI", 0x8825, 4, 1) + struct.pack("<I", 46)
    ifd0 = struct.pack("<H", 2) + entries + struct.pack("<I", 0)
    gps = struct.pack("<H", 1) + struct.pack("<HHI", 1, 2, 2) + b"N\0\0\0" + struct.pack("<I", 0)
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd0 + value.ljust(8, b"\0") + gps
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(out, "JPEG", exif=b"Exif\0\0" + tiff)
    return out.getvalue()


KINDS = pytest.mark.parametrize(
    "kind", [EXIF_FLOAT, EXIF_DOUBLE, EXIF_RATIONAL], ids=["float", "double", "rational"]
)


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@KINDS
def test_an_upload_whose_exif_cannot_be_written_back_without_its_gps_is_corrupt_image(api, settings, kind):
    # given a photo Pillow reads, with its GPS where the EXIF is found
    photo = jpeg_with_gps_and_software_as(kind)
    with Image.open(io.BytesIO(photo)) as image:
        assert 0x8825 in image.getexif()
    api.force_authenticate(UserFactory.create())

    response = api.post("/api/v1/assets", {"file": SimpleUploadedFile("p.jpg", photo)}, format="multipart")

    assert (response.status_code, response["Content-Type"]) == (422, "application/problem+json")
    assert response.json()["code"] == "corrupt_image"
    assert (Asset.objects.count(), DataKey.objects.count(), stored_files(settings)) == (0, 0, [])


class _OnePhoto(http.server.BaseHTTPRequestHandler):
    photo = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.photo)))
        self.end_headers()
        self.wfile.write(self.photo)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def photo_server(settings) -> Iterator[str]:
    settings.ASSET_FETCH_ALLOW_PRIVATE = True
    settings.ASSET_FETCH_ALLOW_HTTP = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OnePhoto)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/photo.jpg"
    httpd.shutdown()


@KINDS
def test_a_url_photo_whose_exif_cannot_be_written_back_fails_as_corrupt_image(settings, photo_server, kind):
    _OnePhoto.photo = jpeg_with_gps_and_software_as(kind)
    asset = asset_create_from_url(owner=UserFactory.create(), url=photo_server)

    asset_fetch(asset_id=str(asset.pk))

    asset.refresh_from_db()
    assert (asset.status, asset.failure_code, asset.blob_name) == ("failed", "corrupt_image", "")
    assert (DataKey.objects.count(), stored_files(settings)) == (0, [])


@pytest.mark.parametrize(
    ("photo", "code"),
    [
        (tiff_with_gps_pointing_at_ifd0(), "gps_not_removable"),
        (tiff_with_a_thumbnail_ifd_without_size(), "corrupt_image"),
    ],
    ids=["tiff-gps-is-ifd0", "tiff-sizeless-next-ifd"],
)
def test_a_url_photo_whose_structure_broke_intake_fails_with_its_code(settings, photo_server, photo, code):
    # Before: UnidentifiedImageError and TypeError left intake unmapped, and the fetch task crashed.
    _OnePhoto.photo = photo
    asset = asset_create_from_url(owner=UserFactory.create(), url=photo_server)

    asset_fetch(asset_id=str(asset.pk))

    asset.refresh_from_db()
    assert (asset.status, asset.failure_code, asset.blob_name) == ("failed", code, "")
    assert (DataKey.objects.count(), stored_files(settings)) == (0, [])
