"""Photos by URL: the worker-side fetch with size and time limits, against a real HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.orders.models import Asset
from lab.orders.photos import asset_create_from_url, asset_fetch
from lab.privacy.models import DataKey
from tests.builders import UserFactory
from tests.support.disk import files_capped_at
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db

PHOTO = jpeg_bytes(1200, 800)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/photo.jpg":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PHOTO)))
            self.end_headers()
            self.wfile.write(PHOTO)
        elif self.path == "/text":
            body = b"just some text"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server(settings) -> Iterator[str]:
    settings.ASSET_FETCH_ALLOW_PRIVATE = True
    settings.ASSET_FETCH_ALLOW_HTTP = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_url_asset_goes_pending_then_ready(server):
    asset = asset_create_from_url(owner=UserFactory.create(), url=f"{server}/photo.jpg")
    assert asset.status == "pending"

    asset_fetch(asset_id=str(asset.pk))

    asset.refresh_from_db()
    assert (asset.status, asset.width_px, asset.height_px, asset.image_format) == ("ready", 1200, 800, "JPEG")
    asset_fetch(asset_id=str(asset.pk))  # a redelivered task changes nothing
    assert Asset.objects.get(pk=asset.pk).blob_name == asset.blob_name


@pytest.mark.parametrize(
    ("path", "code"),
    [("/text", "not_an_image"), ("/missing", "url_fetch_status"), ("/redirect", "url_fetch_status")],
)
def test_url_asset_failures_are_recorded_with_a_reason(server, path, code):
    asset = asset_create_from_url(owner=UserFactory.create(), url=f"{server}{path}")

    asset_fetch(asset_id=str(asset.pk))

    asset.refresh_from_db()
    assert (asset.status, asset.failure_code) == ("failed", code)
    assert asset.blob_name == ""


def test_url_asset_the_photo_store_refuses_fails_with_its_reason_and_keeps_nothing(server, settings):
    asset = asset_create_from_url(owner=UserFactory.create(), url=f"{server}/photo.jpg")

    with files_capped_at(8_000):  # the store's disk fails the write midway, as a full disk does
        asset_fetch(asset_id=str(asset.pk))

    asset.refresh_from_db()
    assert (asset.status, asset.failure_code, asset.blob_name) == ("failed", "photo_store_unavailable", "")
    assert [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()] == []
    assert DataKey.objects.count() == 0  # its key was made in the fetch's transaction, rolled back


def test_url_asset_over_the_size_limit_fails(server, settings):
    settings.ASSET_MAX_BYTES = 1000
    asset = asset_create_from_url(owner=UserFactory.create(), url=f"{server}/photo.jpg")

    asset_fetch(asset_id=str(asset.pk))

    asset.refresh_from_db()
    assert (asset.status, asset.failure_code) == ("failed", "file_too_large")


def test_url_asset_read_over_api_shows_failure_reason(api, server):
    user = UserFactory.create()
    api.force_authenticate(user)
    created = api.post("/api/v1/assets", {"url": f"{server}/text"}, format="json")
    asset_fetch(asset_id=created.json()["id"])

    body = api.get(f"/api/v1/assets/{created.json()['id']}").json()

    assert created.status_code == 202
    assert body["status"] == "failed"
    assert body["failure"]["code"] == "not_an_image"
