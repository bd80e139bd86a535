"""The photo store is shared by photos and rasters: new photos stop at a free-space reserve that rasters of
paid orders keep writing into, and each uploader has a byte budget a day."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from lab.orders.models import Asset
from lab.production import rasterizing
from lab.production.models import PrintJob
from tests.builders import UserFactory, hotfolder_printer, released_order
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db

WORKER = "raster-test"
MIB = 1024 * 1024
_STORE_DISK_USAGE = "lab.orders.photos.shutil.disk_usage"  # the photo intake's view of the store's free space


def upload(api, data: bytes, **extra: str):
    return api.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("photo.jpg", data)}, format="multipart", **extra
    )


def stored_files(settings) -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def test_an_upload_is_refused_at_the_stores_reserve_while_a_paid_orders_raster_still_writes(
    api, settings, monkeypatch
):
    # given a paid order's job waiting for its raster, and a store with 100 MiB free under a 2 GiB reserve
    hotfolder_printer("minilab", sizes=["4x6"])
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    settings.LAB_STORAGE_RESERVE_MB = 2048
    monkeypatch.setattr(
        _STORE_DISK_USAGE, lambda path: shutil._ntuple_diskusage(500 * 1024 * MIB, 0, 100 * MIB)
    )
    api.force_authenticate(UserFactory.create())
    files, assets = stored_files(settings), Asset.objects.count()

    refused = upload(api, jpeg_bytes())

    # then the photo is refused with its code and a Retry-After, and nothing of it is kept: before, photos
    # took the store to its last byte, and rasters and every web host's readiness failed with it
    assert refused.status_code == 507, refused.json()
    assert refused.json()["code"] == "storage_full"
    assert int(refused.headers["Retry-After"]) > 0
    assert stored_files(settings) == files
    assert Asset.objects.count() == assets
    # and the paid order's raster is written into the reserve
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert len(stored_files(settings)) > len(files)


def test_an_upload_that_leaves_the_reserve_is_accepted(api, settings, monkeypatch):
    settings.LAB_STORAGE_RESERVE_MB = 2048
    monkeypatch.setattr(
        _STORE_DISK_USAGE, lambda path: shutil._ntuple_diskusage(500 * 1024 * MIB, 0, 2049 * MIB)
    )
    api.force_authenticate(UserFactory.create())

    assert upload(api, jpeg_bytes()).status_code == 201


def test_a_customers_upload_past_the_byte_budget_is_refused_and_an_invalid_one_costs_nothing(api, settings):
    # given a budget of one and a half photos a day
    photo = jpeg_bytes()
    settings.API_UPLOAD_BYTES_PER_DAY = len(photo) * 3 // 2
    customer = UserFactory.create()
    api.force_authenticate(customer)

    # an invalid upload as large as a photo is refused and counts nothing
    invalid = upload(api, b"\0" * len(photo))
    assert invalid.status_code == 422, invalid.json()
    first = upload(api, photo)
    assert first.status_code == 201, first.json()
    assert first.json()["size_bytes"] == len(photo)
    files = stored_files(settings)

    # then the second photo is past the budget: refused, with a Retry-After within the day, nothing kept
    second = upload(api, photo)
    assert second.status_code == 429, second.json()
    assert second.json()["code"] == "upload_budget_exhausted"
    assert 0 < int(second.headers["Retry-After"]) <= 86400
    assert stored_files(settings) == files
    assert Asset.objects.filter(owner=customer).count() == 1

    # and another customer is not affected
    api.force_authenticate(UserFactory.create())
    assert upload(api, photo).status_code == 201


def test_uploads_of_nobody_signed_in_share_the_budget_of_their_network(api, settings):
    photo = jpeg_bytes()
    settings.API_UPLOAD_BYTES_PER_DAY = len(photo) * 3 // 2

    assert upload(api, photo, REMOTE_ADDR="203.0.113.5").status_code == 201
    # the next address of the same /24 does not start over
    refused = upload(api, photo, REMOTE_ADDR="203.0.113.77")
    assert refused.status_code == 429, refused.json()
    assert refused.json()["code"] == "upload_budget_exhausted"
    # another network is not affected
    assert upload(api, photo, REMOTE_ADDR="198.51.100.1").status_code == 201


def test_an_uploader_whose_budget_is_spent_is_refused_before_the_photo_is_decoded(api, settings):
    photo = jpeg_bytes()
    settings.API_UPLOAD_BYTES_PER_DAY = len(photo)
    api.force_authenticate(UserFactory.create())
    assert upload(api, photo).status_code == 201

    # not decoded (that would be 422 not_an_image): the day's bytes are spent
    refused = upload(api, b"\0" * 10)

    assert refused.status_code == 429, refused.json()
    assert refused.json()["code"] == "upload_budget_exhausted"
    assert refused.json()["budget_bytes"] == len(photo)
