"""Photo intake: decode-validated uploads, encryption at rest, URL fetches behind the SSRF guard."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from lab.orders.models import Asset
from lab.privacy.models import DataKey
from lab.privacy.vault import data_key_destroy, vault_read
from tests.builders import UserFactory
from tests.support.images import heic_bytes, jpeg_bytes, png_bytes, tiff_bytes

pytestmark = pytest.mark.django_db


def upload(api, data: bytes, name: str = "photo.jpg", **extra: str):
    return api.post("/api/v1/assets", {"file": SimpleUploadedFile(name, data), **extra}, format="multipart")


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize(
    ("data", "expected_format"),
    [
        (jpeg_bytes(), "JPEG"),
        (png_bytes(), "PNG"),
        (tiff_bytes(), "TIFF"),
        (heic_bytes(), "HEIF"),
        (png_bytes(mode="I;16"), "PNG"),
    ],
)
def test_accepted_formats_are_measured_and_stored_encrypted(api, settings, data, expected_format):
    api.force_authenticate(UserFactory.create())

    response = upload(api, data)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "ready"
    assert body["image_format"] == expected_format
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    (blob,) = stored_files(settings)
    assert data[:64] not in blob.read_bytes()  # ciphertext on disk, not the photo
    asset = Asset.objects.get(pk=body["id"])
    assert vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original") == data


def test_orientation_icc_and_gps_are_recorded_and_gps_is_stripped(api, settings):
    api.force_authenticate(UserFactory.create())
    data = jpeg_bytes(orientation=6, gps=True)

    body = upload(api, data).json()

    assert body["exif_orientation"] == 6
    assert body["gps_stripped"] is True
    assert body["has_icc_profile"] is False
    asset = Asset.objects.get(pk=body["id"])
    stored = vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
    with Image.open(io.BytesIO(stored)) as image:
        assert 0x8825 not in image.getexif()
        assert image.getexif()[0x0112] == 6


def truncated() -> bytes:
    return jpeg_bytes()[:5000]


def bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, "PNG")  # 400 MP, a few kB on the wire
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "GIF")
    return out.getvalue()


def hsv_tiff() -> bytes:
    out = io.BytesIO()
    Image.new("F", (10, 10)).save(out, "TIFF")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"%PDF-1.4 not a photo at all", 422, "not_an_image"),
        (b"", 422, "empty_file"),
        (truncated(), 422, "corrupt_image"),
        (bomb(), 422, "decompression_bomb"),
        (gif(), 422, "unsupported_format"),
        (hsv_tiff(), 422, "unsupported_color_mode"),
    ],
    ids=["not-image", "empty", "truncated", "bomb", "gif", "float-mode"],
)
def test_bad_uploads_get_a_specific_code_and_store_nothing(api, settings, data, status, code):
    api.force_authenticate(UserFactory.create())

    response = upload(api, data, name="photo.jpg")

    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    assert Asset.objects.count() == 0
    assert DataKey.objects.count() == 0
    assert stored_files(settings) == []


def test_oversize_upload_is_refused(api, settings):
    settings.ASSET_MAX_BYTES = 10_000
    api.force_authenticate(UserFactory.create())

    response = upload(api, jpeg_bytes())

    assert (response.status_code, response.json()["code"]) == (413, "file_too_large")
    assert Asset.objects.count() == 0


def test_client_checksum_mismatch_is_refused_and_match_accepted(api):
    api.force_authenticate(UserFactory.create())
    data = jpeg_bytes()

    wrong = upload(api, data, sha256="0" * 64)
    right = upload(api, data, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest())

    assert (wrong.status_code, wrong.json()["code"]) == (422, "checksum_mismatch")
    assert right.status_code == 201


def test_customer_cannot_read_another_customers_asset(api):
    owner, other = UserFactory.create(), UserFactory.create()
    api.force_authenticate(owner)
    asset_id = upload(api, jpeg_bytes()).json()["id"]
    api.force_authenticate(other)

    response = api.get(f"/api/v1/assets/{asset_id}")

    assert (response.status_code, response.json()["code"]) == (404, "asset_not_found")


def test_destroyed_data_key_makes_the_photo_unreadable(api):
    api.force_authenticate(UserFactory.create())
    asset = Asset.objects.get(pk=upload(api, jpeg_bytes()).json()["id"])
    assert asset.data_key is not None

    data_key_destroy(data_key=asset.data_key)

    from lab.privacy.crypto import KeyDestroyed

    asset.refresh_from_db()
    with pytest.raises(KeyDestroyed):
        vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")


def test_url_to_loopback_is_refused_by_the_ssrf_guard(api):
    api.force_authenticate(UserFactory.create())

    for url in (
        "https://127.0.0.1/photo.jpg",
        "https://169.254.169.254/latest",
        "https://[::1]/x.jpg",
        "https://10.0.0.8/x.jpg",
    ):
        response = api.post("/api/v1/assets", {"url": url}, format="json")
        assert (response.status_code, response.json()["code"]) == (422, "url_target_not_allowed"), url
    plain = api.post("/api/v1/assets", {"url": "http://example.com/x.jpg"}, format="json")
    assert (plain.status_code, plain.json()["code"]) == (422, "url_scheme_not_allowed")
    assert Asset.objects.count() == 0


def zip_archive() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return out.getvalue()


def noisy_jpeg(**options: object) -> bytes:
    """A photo-like JPEG: noise makes 0xFF bytes (stuffed as 0xFF00) common in the entropy-coded data."""
    out = io.BytesIO()
    Image.effect_noise((640, 480), 90).convert("RGB").save(out, "JPEG", **options)
    return out.getvalue()


def stored_original(asset_id: str) -> bytes:
    asset = Asset.objects.get(pk=asset_id)
    return vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


@pytest.mark.parametrize(
    ("image", "tail"),
    [
        (jpeg_bytes(), zip_archive()),  # a JPEG/ZIP polyglot
        (
            # progressive (several scans), restart markers, and an 0xFFD9 inside a comment segment
            noisy_jpeg(progressive=True, restart_marker_rows=1, comment=b"not the end \xff\xd9 of it"),
            jpeg_bytes(width=64, height=48) + b"ftypmp42 motion photo video",
        ),
        (noisy_jpeg(restart_marker_blocks=3), b"\xff\xd9" + zip_archive()),
        (png_bytes(), zip_archive()),
        (png_bytes(), b"IEND trailing bytes"),
    ],
    ids=["jpeg+zip", "progressive+trailer", "restarts+eoi+zip", "png+zip", "png+tail"],
)
def test_bytes_after_the_image_are_not_kept(api, image, tail):
    api.force_authenticate(UserFactory.create())

    response = upload(api, image + tail)

    assert response.status_code == 201, response.json()
    body = response.json()
    stored = stored_original(body["id"])
    assert stored == image
    assert (body["sha256"], body["size_bytes"]) == (hashlib.sha256(image).hexdigest(), len(image))
    assert pixels(stored) == pixels(image)


def test_a_trailer_is_cut_and_gps_removed_and_the_checksum_describes_the_stored_bytes(api):
    api.force_authenticate(UserFactory.create())
    image = jpeg_bytes(gps=True)

    body = upload(api, image + zip_archive()).json()

    stored = stored_original(body["id"])
    assert body["gps_stripped"] is True
    assert stored.endswith(b"\xff\xd9") and b"PK\x03\x04" not in stored
    assert (body["sha256"], body["size_bytes"]) == (hashlib.sha256(stored).hexdigest(), len(stored))
    assert pixels(stored) == pixels(image)


def test_a_multi_picture_jpeg_keeps_its_first_image(api):
    api.force_authenticate(UserFactory.create())
    first = Image.new("RGB", (300, 200), (200, 10, 10))
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[Image.new("RGB", (300, 200), (10, 10, 200))])
    data = out.getvalue()

    body = upload(api, data).json()

    stored = stored_original(body["id"])
    assert (body["status"], body["image_format"]) == ("ready", "JPEG")
    assert len(stored) < len(data) and data.startswith(stored)
    assert pixels(stored) == pixels(data)  # Pillow decodes the first frame of the original
