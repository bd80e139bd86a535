"""End to end over real HTTP: register, upload, quote, order, pay with a test card at localstripe,
receive localstripe's own signed webhook, order paid; then no card number or personal data anywhere."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from lab.catalog.demo import catalog_seed_demo
from lab.orders.models import Order, StripeEvent
from tests.support.http import call, multipart
from tests.support.images import jpeg_bytes
from tests.support.stripe_server import LocalStripe

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e(stack="web")]

CARD = "4242424242424242"
BROWSER = f"""
import sys, stripe
client = stripe.StripeClient(sys.argv[2], base_addresses={{"api": sys.argv[1]}})
method = client.v1.payment_methods.create(
    params={{"type": "card",
            "card": {{"number": "{CARD}", "exp_month": 12, "exp_year": 2031, "cvc": "314"}}}})
client.v1.payment_intents.update(sys.argv[3], params={{"payment_method": method.id}})
print(client.v1.payment_intents.confirm(sys.argv[3]).status)
"""
NAME, EMAIL, STREET = "Marguerite Exposure", "marguerite.e2e@example.org", "77 Darkroom Street"


@pytest.fixture
def localstripe(settings, artifacts_dir: Path) -> Iterator[LocalStripe]:
    """A localstripe of this test's own: the webhook it registers (localstripe cannot remove one) must not
    outlive the test and post the session's later PaymentIntents to the live server's database."""
    server = LocalStripe(log_dir=artifacts_dir / "localstripe-webhooks").start()
    settings.STRIPE_API_BASE = server.url  # the live server asks it for the PaymentIntent
    yield server
    server.stop()


def test_register_upload_quote_order_pay_webhook_paid(live_server, localstripe, caplog):
    caplog.set_level(logging.DEBUG)
    catalog_seed_demo()
    base = live_server.url
    hook = urllib.request.Request(
        f"{localstripe.url}/_config/webhooks/e2e-{uuid.uuid4().hex[:8]}",
        data=f"url={base}/api/v1/webhooks/stripe&secret={settings.STRIPE_WEBHOOK_SECRET}".encode(),
        method="POST",
    )
    urllib.request.urlopen(hook, timeout=10).close()
    json_headers = {"Content-Type": "application/json"}

    status, account = call(
        base,
        "POST",
        "/api/v1/accounts",
        json.dumps(
            {
                "email": EMAIL,
                "password": "a long e2e secret 99",
                "full_name": NAME,
                "address": {
                    "name": NAME,
                    "line1": STREET,
                    "city": "Fixer",
                    "postal_code": "55555",
                    "country": "US",
                },
                "birth_date": "1979-09-09",
                "privacy_policy_version": "1.0",
            }
        ).encode(),
        json_headers,
    )
    assert status == 201, account
    auth = {"Authorization": f"Token {account['token']}"}

    body, content_type = multipart("file", f"{NAME} holiday.jpg", jpeg_bytes(3000, 2000))
    status, asset = call(base, "POST", "/api/v1/assets", body, {**auth, "Content-Type": content_type})
    assert (status, asset["status"]) == (201, "ready")

    basket = {
        "items": [{"sku": "PRINT-4X6-GLOSSY", "asset": asset["id"], "copies": 2, "sizing": "fill"}],
        "shipping_method": "standard",
    }
    status, quote = call(
        base, "POST", "/api/v1/quotes", json.dumps(basket).encode(), {**auth, **json_headers}
    )
    assert (status, quote["total_minor"]) == (200, 2 * 35 + 499)

    order_request = {
        **basket,
        "shipping_address": {
            "name": NAME,
            "line1": STREET,
            "city": "Fixer",
            "postal_code": "55555",
            "country": "US",
        },
    }
    status, order = call(
        base,
        "POST",
        "/api/v1/orders",
        json.dumps(order_request).encode(),
        {**auth, **json_headers, "Idempotency-Key": "e2e-1"},
    )
    assert (status, order["status"], order["total_minor"]) == (201, "awaiting_payment", quote["total_minor"])

    # The customer's browser (Stripe.js) talks to Stripe directly, in its own process: the card never
    # reaches the lab, and the lab's logs captured below are the lab's alone.
    browser = subprocess.run(
        [
            sys.executable,
            "-c",
            BROWSER,
            localstripe.url,
            settings.STRIPE_SECRET_KEY,
            order["payment"]["payment_intent"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert browser.stdout.strip() == "succeeded", browser.stderr

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, current = call(base, "GET", f"/api/v1/orders/{order['ref']}", headers=auth)
        if current["status"] == "paid":
            break
        time.sleep(0.2)
    assert current["status"] == "paid"
    assert current["payment"]["status"] == "succeeded"
    assert [e["to_status"] for e in current["timeline"]] == ["awaiting_payment", "paid"]
    assert Order.objects.get(ref=order["ref"]).status == "paid"
    # localstripe's own signed event arrived over HTTP and was applied once.
    assert list(StripeEvent.objects.values_list("event_type", "outcome")) == [
        ("payment_intent.succeeded", "paid")
    ]

    log_text = "\n".join(record.getMessage() for record in caplog.records)
    assert "to=paid" in log_text
    for secret in (CARD, NAME, EMAIL, STREET, "holiday.jpg"):
        assert secret not in log_text, secret
    # The card's last four digits as a value of their own, not inside an id (a photo's uuid once held "4242").
    assert not re.search(r"(?<![0-9A-Za-z_-])4242(?![0-9A-Za-z_-])", log_text), log_text
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            assert CARD not in repr(cursor.fetchall()), table
