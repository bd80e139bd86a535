"""Place and pay a demo order against a running lab (./scripts/run), then follow it to ready_to_pack.

Usage: .venv/bin/python scripts/demo_order.py [BASE_URL]. Uses the demo's localstripe for the card payment,
as a customer's browser would with Stripe.js: the card never reaches the lab.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import urllib.request
import uuid

import stripe
from PIL import Image

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
STRIPE_API = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:8420")


def call(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> dict:
    request = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main() -> None:
    email = f"demo-{uuid.uuid4().hex[:8]}@example.org"
    address = {
        "name": "Demo Customer",
        "line1": "1 Demo Street",
        "city": "Demo",
        "postal_code": "12345",
        "country": "US",
    }
    account = call(
        "POST",
        "/api/v1/accounts",
        json.dumps(
            {
                "email": email,
                "password": "a demo password 123",
                "full_name": "Demo Customer",
                "address": address,
                "birth_date": "1990-01-01",
                "privacy_policy_version": "1.0",
            }
        ).encode(),
        {"Content-Type": "application/json"},
    )
    auth = {"Authorization": f"Token {account['token']}"}
    photo = io.BytesIO()
    Image.new("RGB", (3000, 2000), (180, 90, 30)).save(photo, "JPEG")
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="demo.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    asset = call(
        "POST", "/api/v1/assets", body, {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    order = call(
        "POST",
        "/api/v1/orders",
        json.dumps(
            {
                "items": [{"sku": "PRINT-4X6-GLOSSY", "asset": asset["id"], "copies": 2, "sizing": "fill"}],
                "shipping_method": "standard",
                "shipping_address": address,
            }
        ).encode(),
        {**auth, "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
    )
    print("order", order["ref"], order["status"], order["total_minor"], order["currency"])
    client = stripe.StripeClient("sk_test_demo", base_addresses={"api": STRIPE_API})
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    intent = order["payment"]["payment_intent"]
    client.v1.payment_intents.update(intent, params={"payment_method": method.id})
    print("payment", client.v1.payment_intents.confirm(intent).status)
    status = ""
    for _ in range(120):
        status = call("GET", f"/api/v1/orders/{order['ref']}", headers=auth)["status"]
        if status == "ready_to_pack":
            break
        time.sleep(1)
    print("status", status)


if __name__ == "__main__":
    main()
