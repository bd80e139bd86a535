"""No personal data in any log line: a whole order, from registration to shipment, then export, the retention
sweep and erasure, logged at DEBUG — the customer's name, e-mail, address lines and photo file name never
appear."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from lab.customer_data.retention import retention_sweep
from lab.customer_data.retention_rules import RULE_NEVER_ORDERED, RULE_SHIPPED
from lab.notify.services import notify_order_created, notify_order_status_changed
from lab.orders.models import Order
from tests.builders import (
    PERSON,
    PERSON_PASSWORD,
    minilab,
    pack_and_ship,
    pay,
    place_order,
    print_order,
    register,
    upload,
)
from tests.support.stripe_proxy import IntentStatusProxy
from tests.support.web_server import PROJECT_DIR

pytestmark = pytest.mark.django_db
EXIF_IMAGE_DESCRIPTION, EXIF_ARTIST = 0x010E, 0x013B


def test_a_full_order_run_logs_no_personal_data(
    api, caplog, django_capture_on_commit_callbacks, mailoutbox, settings, stripe_api
):
    caplog.set_level(logging.DEBUG)
    # Also the third-party loggers settings keep at WARNING: what they would say at DEBUG must be clean too.
    for name in ("django.db.backends", "stripe", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)

    register(api)
    asset_id = upload(api)
    order = place_order(api, asset_id=asset_id, key="logs-1")
    notify_order_created(order_id=order.pk)
    pay(order, event_id="evt_logs_1")
    minilab()
    print_order(order)
    pack_and_ship(order)
    for status in ("paid", "in_production", "ready_to_pack", "packed", "shipped"):
        notify_order_status_changed(order_id=order.pk, status=status)
    assert api.get("/api/v1/me/export").status_code == 200
    # The retention sweep 40 days on: the shipped order's photo and a photo never ordered purged, and an
    # unpaid order left, its intent `processing` at Stripe (its money on its way).
    upload(api)
    unpaid = place_order(api, asset_id=upload(api), key="logs-2")
    proxy = IntentStatusProxy(upstream=stripe_api.url, status="processing").start()
    settings.STRIPE_API_BASE = proxy.url
    try:
        with django_capture_on_commit_callbacks(execute=True):
            swept = retention_sweep(now=timezone.now() + timedelta(days=40))
    finally:
        proxy.stop()
        settings.STRIPE_API_BASE = stripe_api.url
    assert (swept["orders_expired"], swept[RULE_SHIPPED], swept[RULE_NEVER_ORDERED]) == (0, 1, 1)
    assert Order.objects.get(pk=unpaid.pk).status == "awaiting_payment"
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json").status_code == 200

    assert Order.objects.get(pk=order.pk).status == "shipped"
    # received, paid, shipped, and the erasure's privacy receipt (sent to the address read before the wipe)
    assert [message.to for message in mailoutbox] == [[PERSON.email]] * 4
    logged = "\n".join(
        [caplog.text]
        + [f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in caplog.records]
    ).lower()
    assert len(caplog.records) > 40
    assert [needle for needle in PERSON.needles if needle in logged] == []
    assert order.ref.lower() in logged  # ids are what log lines carry


def _jpeg_signed_by(person_name: str, address_line: str) -> bytes:
    """A photo whose EXIF says who took it and where (Artist, ImageDescription), as a camera owner sets it."""
    image = Image.new("RGB", (1800, 1200), (200, 120, 40))
    exif = Image.Exif()
    exif[EXIF_ARTIST] = person_name
    exif[EXIF_IMAGE_DESCRIPTION] = address_line
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def test_an_upload_logged_at_debug_leaves_the_photo_s_exif_text_out(api, caplog):
    # given the lab logging at DEBUG (LOG_LEVEL=DEBUG), and a photo whose EXIF names its owner and address
    caplog.set_level(logging.DEBUG)
    register(api)
    photo = SimpleUploadedFile(
        PERSON.photo_name, _jpeg_signed_by(PERSON.full_name, PERSON.line1), content_type="image/jpeg"
    )

    # when it is uploaded (intake reads and rewrites its EXIF)
    response = api.post("/api/v1/assets", {"file": photo}, format="multipart")

    # then neither the name nor the address line is in any log line (Pillow's TIFF reader logs tag values)
    assert (response.status_code, response.json()["status"]) == (201, "ready")
    logged = caplog.text.lower()
    assert [text for text in (PERSON.full_name.lower(), PERSON.line1.lower()) if text in logged] == []


def test_pillow_logs_at_warning_even_when_the_lab_logs_at_debug():
    # given the settings module read with LOG_LEVEL=DEBUG
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging, logging.config, lab.settings as s; logging.config.dictConfig(s.LOGGING);"
            " print(logging.getLogger('PIL').getEffectiveLevel(), logging.getLogger().level)",
        ],
        cwd=PROJECT_DIR,
        env={**os.environ, "LOG_LEVEL": "DEBUG"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # then the root logs at DEBUG, and Pillow (its TIFF tag values are the photo's EXIF text) at WARNING
    assert completed.returncode == 0, completed.stderr
    pil_level, root_level = (int(level) for level in completed.stdout.split())
    assert (root_level, pil_level >= logging.WARNING) == (logging.DEBUG, True)
