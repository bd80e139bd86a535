"""Photos by URL: the worker-side fetch with size and time limits, against a real HTTP server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.utils import timezone

from lab.lib import safe_http
from lab.orders import photos
from lab.orders.models import Asset
from lab.orders.photos import asset_create_from_url, asset_fetch
from lab.privacy.models import DataKey
from tests.builders import UserFactory
from tests.support.broker import emptied_queues, queued_tasks
from tests.support.disk import files_capped_at
from tests.support.images import jpeg_bytes
from tests.support.resolver import HANGING_HOST
from workers import tasks as worker_tasks

pytestmark = pytest.mark.django_db

PHOTO = jpeg_bytes(1200, 800)


class Handler(http.server.BaseHTTPRequestHandler):
    photo_gets = 0  # requests for a photo, per test (the server fixture resets it)
    slow_requested = threading.Event()  # /slow.jpg was asked for; it is sent once slow_release is set
    slow_release = threading.Event()

    def do_GET(self) -> None:
        if self.path in ("/photo.jpg", "/slow.jpg", "/f%C3%B6to.jpg"):  # the last: "/föto.jpg" as sent
            type(self).photo_gets += 1
            if self.path == "/slow.jpg":
                type(self).slow_requested.set()
                type(self).slow_release.wait(10)
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
        elif self.path == "/drip.jpg":  # the headers at once, then the body a few bytes at a time
            self.send_response(200)
            self.send_header("Content-Length", str(len(PHOTO)))
            self.end_headers()
            self._drip(PHOTO[i : i + 16] for i in range(0, len(PHOTO), 16))
        elif self.path == "/drip-headers.jpg":  # the status line, then one header line at a time
            self._drip([b"HTTP/1.1 200 OK\r\n", *(b"X-Drip: %d\r\n" % i for i in range(90))])
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def do_POST(self) -> None:  # a webhook receiver that answers a line at a time
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._drip([b"HTTP/1.1 200 OK\r\n", *(b"X-Drip: %d\r\n" % i for i in range(90))])

    def _drip(self, pieces: Iterable[bytes]) -> None:
        """Each piece 0.2 s after the last, well inside a per-read timeout; 20 s at most, then it hangs up."""
        stop_at = time.monotonic() + 20
        for piece in pieces:
            if time.monotonic() > stop_at:
                return
            try:
                self.wfile.write(piece)
                self.wfile.flush()
            except OSError:
                return  # the client hung up
            time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server(settings) -> Iterator[str]:
    settings.ASSET_FETCH_ALLOW_PRIVATE = True
    settings.ASSET_FETCH_ALLOW_HTTP = True
    Handler.photo_gets = 0
    Handler.slow_requested.clear()
    Handler.slow_release.clear()
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


def test_a_url_whose_path_is_not_ascii_is_fetched_percent_encoded(server):
    # Before: http.client raised UnicodeEncodeError writing "/föto.jpg" into the request line, which the
    # fetch did not catch (no OSError): the task failed, and the photo stayed pending until the sweep's third
    # claim failed it, with no reason the customer could act on.
    asset = asset_create_from_url(owner=UserFactory.create(), url=f"{server}/föto.jpg")

    asset_fetch(asset_id=str(asset.pk))

    asset.refresh_from_db()
    assert (asset.status, asset.failure_code, asset.width_px) == ("ready", "", 1200)
    assert Handler.photo_gets == 1


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


@pytest.mark.parametrize("path", ["/drip.jpg", "/drip-headers.jpg"])
def test_a_url_that_drips_its_answer_fails_when_the_fetch_timeout_has_passed(server, settings, path):
    # Each byte comes well inside a per-read timeout: only a deadline on the whole fetch ends it, instead of
    # holding the worker (and the default queue behind it: releases, e-mail) until the server stops.
    settings.ASSET_FETCH_TIMEOUT_SECONDS = 1
    asset = asset_create_from_url(owner=UserFactory.create(), url=f"{server}{path}")

    started = time.monotonic()
    asset_fetch(asset_id=str(asset.pk))

    assert time.monotonic() - started < 10  # the server drips for 20 s
    asset.refresh_from_db()
    assert (asset.status, asset.failure_code, asset.blob_name) == ("failed", "url_fetch_failed", "")


def test_a_webhook_endpoint_that_drips_its_answer_fails_when_the_timeout_has_passed(server):
    started = time.monotonic()
    with pytest.raises(safe_http.FetchFailed) as failed:
        safe_http.post(
            f"{server}/hook", body=b"{}", headers={}, timeout=1, allow_private=True, allow_http=True
        )

    assert time.monotonic() - started < 10
    assert failed.value.code == "delivery_failed"


def test_url_asset_read_over_api_shows_failure_reason(api, server):
    user = UserFactory.create()
    api.force_authenticate(user)
    created = api.post("/api/v1/assets", {"url": f"{server}/text"}, format="json")
    asset_fetch(asset_id=created.json()["id"])

    body = api.get(f"/api/v1/assets/{created.json()['id']}").json()

    assert created.status_code == 202
    assert body["status"] == "failed"
    assert body["failure"]["code"] == "not_an_image"


# --- The web side's check of a URL has a deadline too -------------------------------------------------------


def test_a_photo_url_whose_host_never_resolves_is_refused_within_the_check_timeout(api, hanging_resolver):
    # given a customer, a web process that has answered a request (the first imports the views: seconds), and
    # a host whose lookup never answers, the check given 1 s
    api.force_authenticate(UserFactory.create())
    assert api.get("/api/v1/assets").status_code == 405
    started = time.monotonic()

    # when they send a photo by a URL on that host
    response = api.post("/api/v1/assets", {"url": f"https://{HANGING_HOST}/photo.jpg"}, format="json")

    # then it is refused once the second is up (before, the lookup held the web worker for as long as it took)
    assert time.monotonic() - started < 10  # the timeout is 1 s, the hang 30 s: the bound is neither
    assert (response.status_code, response.json()["code"]) == (422, "url_host_unresolvable")
    assert hanging_resolver == [HANGING_HOST]
    assert Asset.objects.count() == 0


# --- A lost or duplicate fetch message ----------------------------------------------------------------------


@pytest.fixture
def fetch_queue() -> Iterator[redis.Redis]:
    with emptied_queues("fetch") as client:
        yield client


def fetches_queued(broker: redis.Redis) -> list[str]:
    queued = queued_tasks(broker, "fetch")
    return [kwargs["asset_id"] for task, kwargs in queued if task == "intake.asset_fetch"]


def test_a_url_photo_whose_fetch_message_was_lost_is_sent_again_by_the_sweep_and_fetched_once(
    server, fetch_queue, django_capture_on_commit_callbacks, settings
):
    with django_capture_on_commit_callbacks(execute=True):
        asset = asset_create_from_url(owner=UserFactory.create(), url=f"{server}/photo.jpg")
    assert fetches_queued(fetch_queue) == [str(asset.pk)]
    fetch_queue.delete("fetch")  # the broker lost it (restarted without persistence, flushed)
    sent_at = Asset.objects.get(pk=asset.pk).fetch_sent_at
    assert sent_at is not None

    # A message younger than one sweep interval is left to arrive.
    assert photos.asset_fetches_sweep(now=sent_at + timedelta(seconds=30)) == {"resent": 0, "failed": 0}
    later = sent_at + timedelta(seconds=settings.ASSET_FETCH_SWEEP_SECONDS + 1)
    assert photos.asset_fetches_sweep(now=later) == {"resent": 1, "failed": 0}
    assert photos.asset_fetches_sweep(now=later) == {"resent": 0, "failed": 0}  # no second message
    assert fetches_queued(fetch_queue) == [str(asset.pk)]

    asset_fetch(asset_id=str(asset.pk))
    asset_fetch(asset_id=str(asset.pk))  # a duplicate of the message finds it done

    asset.refresh_from_db()
    assert (asset.status, asset.fetch_attempts, Handler.photo_gets) == ("ready", 1, 1)
    assert photos.asset_fetches_sweep(now=later + timedelta(hours=1)) == {"resent": 0, "failed": 0}


@pytest.mark.django_db(transaction=True)
def test_a_second_message_for_a_photo_being_fetched_fetches_nothing(server):
    """Two workers get the photo's message (a redelivery, the sweep's resend): the second finds the first's
    live claim and leaves; the URL is fetched once."""
    asset = asset_create_from_url(owner=UserFactory.create(), url=f"{server}/slow.jpg")

    def first_worker() -> None:
        try:
            asset_fetch(asset_id=str(asset.pk))
        finally:
            connection.close()

    worker = threading.Thread(target=first_worker)
    worker.start()
    assert Handler.slow_requested.wait(10), "the first worker's fetch reached the server"
    asset_fetch(asset_id=str(asset.pk))  # while the first worker is still downloading
    Handler.slow_release.set()
    worker.join(10)

    asset.refresh_from_db()
    assert (asset.status, asset.fetch_attempts, Handler.photo_gets) == ("ready", 1, 1)


def test_a_fetch_whose_worker_died_is_sent_again_after_its_lease_and_fails_after_three_claims(
    api, server, fetch_queue, django_capture_on_commit_callbacks
):
    owner = UserFactory.create()
    asset = asset_create_from_url(owner=owner, url=f"{server}/photo.jpg")
    now = timezone.now()
    sent_long_ago = now - photos.FETCH_CLAIM_LEASE - timedelta(seconds=5)
    # A worker claimed it and died mid-fetch (its message was acknowledged on receipt): a live claim is left
    # alone,
    Asset.objects.filter(pk=asset.pk).update(
        fetch_sent_at=sent_long_ago, fetch_claimed_at=now - timedelta(seconds=10), fetch_attempts=1
    )
    assert photos.asset_fetches_sweep(now=now) == {"resent": 0, "failed": 0}
    # one past its lease is sent again.
    Asset.objects.filter(pk=asset.pk).update(fetch_claimed_at=sent_long_ago)
    assert photos.asset_fetches_sweep(now=now) == {"resent": 1, "failed": 0}
    assert fetches_queued(fetch_queue) == [str(asset.pk)]

    # Three claims that each died: the photo fails for the customer to see, rather than staying pending.
    Asset.objects.filter(pk=asset.pk).update(fetch_sent_at=sent_long_ago, fetch_attempts=3)
    assert photos.asset_fetches_sweep(now=now) == {"resent": 0, "failed": 1}
    asset_fetch(asset_id=str(asset.pk))  # a message still on its way changes nothing
    assert Handler.photo_gets == 0

    api.force_authenticate(owner)
    body = api.get(f"/api/v1/assets/{asset.pk}").json()
    assert (body["status"], body["failure"]["code"]) == ("failed", "url_fetch_failed")


def test_a_fetch_claim_outlives_the_task_that_holds_it():
    # Shorter, and a slow but live fetch would be claimed again and downloaded twice.
    time_limit = worker_tasks.asset_fetch.time_limit
    assert time_limit is not None and photos.FETCH_CLAIM_LEASE.total_seconds() > time_limit


def test_the_fetch_sweep_runs_on_beat_every_interval(settings):
    from lab.celery import app

    entry = app.conf.beat_schedule["asset-fetches-sweep"]
    assert (entry["task"], entry["schedule"]) == (
        "intake.asset_fetches_sweep",
        float(settings.ASSET_FETCH_SWEEP_SECONDS),
    )
