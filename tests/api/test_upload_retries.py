"""POST assets honours an optional Idempotency-Key: the retry of a photo (after a 503, a lost answer) is
answered with the photo the first request stored, storing and counting nothing again."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from lab.accounts.tokens import api_token_issue
from lab.customer_data.photo_purge import asset_purge
from lab.customer_data.retention_rules import RULE_ERASURE
from lab.orders.models import Asset, AssetUploadKey
from tests.builders import UserFactory
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db

PHOTO = jpeg_bytes()


def upload(api, data: bytes, key: str | None = None, **extra: str):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(
        "/api/v1/assets",
        {"file": SimpleUploadedFile("photo.jpg", data)},
        format="multipart",
        **headers,
        **extra,
    )


def stored_files(settings) -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def test_a_customers_retry_with_its_key_gets_the_same_photo_stored_and_counted_once(api, settings):
    # given a budget of one and a half photos a day, and a photo stored with a key
    settings.API_UPLOAD_BYTES_PER_DAY = len(PHOTO) * 3 // 2
    customer = UserFactory.create()
    api.force_authenticate(customer)
    first = upload(api, PHOTO, key="photo-1")
    assert first.status_code == 201, first.json()
    files = stored_files(settings)

    # when it is sent again with its key (its answer was lost, or it was a 503)
    retries = [upload(api, PHOTO, key="photo-1") for _ in range(2)]

    # then each retry is answered 200 with the same photo: before, the retry stored a second photo and
    # counted its bytes again (here: 429 upload_budget_exhausted)
    assert [retry.status_code for retry in retries] == [200, 200], [retry.json() for retry in retries]
    assert [retry.json() for retry in retries] == [first.json(), first.json()]
    assert Asset.objects.filter(owner=customer).count() == 1
    assert stored_files(settings) == files
    # and the day's bytes were counted once: another photo is still past the budget (1.5 photos)
    refused = upload(api, PHOTO, key="photo-2")
    assert refused.status_code == 429, refused.json()
    assert refused.json()["code"] == "upload_budget_exhausted"


def test_a_retry_on_a_spent_day_is_still_answered_with_its_photo(api, settings):
    # a budget of exactly one photo: the first spends the day
    settings.API_UPLOAD_BYTES_PER_DAY = len(PHOTO)
    api.force_authenticate(UserFactory.create())
    first = upload(api, PHOTO, key="the-only-one")
    assert first.status_code == 201, first.json()

    retry = upload(api, PHOTO, key="the-only-one")

    assert retry.status_code == 200, retry.json()
    assert retry.json()["id"] == first.json()["id"]
    assert Asset.objects.count() == 1


def test_a_guests_retry_with_its_key_gets_the_same_photo(api):
    first = upload(api, PHOTO, key="guest-photo", REMOTE_ADDR="203.0.113.5")
    assert first.status_code == 201, first.json()

    # the retry may come from the next address of the network (the upload budget's uploader)
    retry = upload(api, PHOTO, key="guest-photo", REMOTE_ADDR="203.0.113.77")

    assert retry.status_code == 200, retry.json()
    assert retry.json()["id"] == first.json()["id"]
    assert Asset.objects.count() == 1
    # another network's key of the same text is its own
    elsewhere = upload(api, PHOTO, key="guest-photo", REMOTE_ADDR="198.51.100.1")
    assert elsewhere.status_code == 201, elsewhere.json()
    assert Asset.objects.count() == 2


def test_the_same_key_with_another_photo_is_refused_and_nothing_is_stored(api, settings):
    customer = UserFactory.create()
    api.force_authenticate(customer)
    first = upload(api, PHOTO, key="photo-1")
    assert first.status_code == 201, first.json()
    files = stored_files(settings)

    other = upload(api, jpeg_bytes(1200, 800), key="photo-1")

    assert other.status_code == 409, other.json()
    assert other.json()["code"] == "idempotency_key_reused"
    assert list(Asset.objects.filter(owner=customer).values_list("pk", flat=True)) == [
        uuid.UUID(first.json()["id"])
    ]
    assert stored_files(settings) == files


def test_without_a_key_each_upload_stores_its_photo(api):
    api.force_authenticate(UserFactory.create())

    answers = [upload(api, PHOTO), upload(api, PHOTO)]

    assert [answer.status_code for answer in answers] == [201, 201]
    assert len({answer.json()["id"] for answer in answers}) == 2
    assert Asset.objects.count() == 2
    assert AssetUploadKey.objects.count() == 0


def test_a_keys_row_names_neither_the_key_nor_its_uploader_and_goes_with_its_photo(api):
    customer = UserFactory.create()
    api.force_authenticate(customer)
    first = upload(api, PHOTO, key="holiday-2026-anna.jpg")
    assert first.status_code == 201, first.json()

    (row,) = AssetUploadKey.objects.values_list("key_seal", "request_seal")
    stored = " ".join(row)
    assert "holiday" not in stored
    assert str(customer.public_id) not in stored
    Asset.objects.filter(pk=first.json()["id"]).delete()
    assert AssetUploadKey.objects.count() == 0


def test_a_url_photos_retry_with_its_key_gets_the_same_photo(api, settings):
    settings.ASSET_FETCH_ALLOW_PRIVATE = True
    settings.ASSET_FETCH_ALLOW_HTTP = True
    api.force_authenticate(UserFactory.create())
    body = {"url": "http://127.0.0.1:9/photo.jpg"}

    first = api.post("/api/v1/assets", body, format="json", HTTP_IDEMPOTENCY_KEY="url-1")
    retry = api.post("/api/v1/assets", body, format="json", HTTP_IDEMPOTENCY_KEY="url-1")
    other = api.post(
        "/api/v1/assets", {"url": "http://127.0.0.1:9/other.jpg"}, format="json", HTTP_IDEMPOTENCY_KEY="url-1"
    )

    assert (first.status_code, retry.status_code, other.status_code) == (202, 200, 409)
    assert retry.json()["id"] == first.json()["id"]
    assert other.json()["code"] == "idempotency_key_reused"
    assert Asset.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_identical_uploads_at_once_with_one_key_store_one_photo(live_server, settings):
    token = api_token_issue(user=UserFactory.create(), name="test").key
    boundary = "retry-boundary"
    payload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + PHOTO
        + f"\r\n--{boundary}--\r\n".encode()
    )
    answers: list[tuple[int, str]] = []
    barrier = threading.Barrier(6)

    def submit() -> None:
        request = urllib.request.Request(
            f"{live_server.url}/api/v1/assets",
            data=payload,
            method="POST",
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Authorization": f"Token {token}",
                "Idempotency-Key": "same-photo",
            },
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answers.append((response.status, response.read().decode()))
        except urllib.error.HTTPError as error:
            answers.append((error.code, error.read().decode()))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(status for status, _ in answers) == [200, 200, 200, 200, 200, 201], answers
    assert Asset.objects.count() == 1
    assert AssetUploadKey.objects.count() == 1
    asset_id = str(Asset.objects.get().pk)
    assert all(asset_id in body for _, body in answers)
    # and the requests that lost the race left no file of theirs behind: one photo, one blob
    assert len(stored_files(settings)) == 1


def test_a_purged_photos_key_is_spent_with_it_and_its_retry_is_stored_afresh(api):
    customer = UserFactory.create()
    api.force_authenticate(customer)
    first = upload(api, PHOTO, key="photo-1")
    assert first.status_code == 201, first.json()
    asset_purge(asset_id=first.json()["id"], rule=RULE_ERASURE, cutoffs=None, purpose="erasure")
    # the key's row goes with the purge itself, not at the next look-up
    assert not AssetUploadKey.objects.exists()

    retry = upload(api, PHOTO, key="photo-1")

    # not answered with a photo that is gone: stored again, the purged photo's key row deleted
    assert retry.status_code == 201, retry.json()
    assert retry.json()["id"] != first.json()["id"]
    assert list(AssetUploadKey.objects.values_list("asset_id", flat=True)) == [uuid.UUID(retry.json()["id"])]
