"""The scale bench's customers, over HTTP like real ones: they register, upload their photos (12 MP JPEGs,
decoded, GPS-stripped and encrypted at rest by intake), then order 4x6 prints at a fixed arrival rate and pay
each order with a `payment_intent.succeeded` event signed as Stripe signs it, posted to the lab's webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from bench.intake.run import ADDRESS, PASSWORD, http_call, json_call, multipart

SKU = "PRINT-4X6-LUSTRE"


@dataclass
class Customer:
    token: str
    asset_ids: list[str] = field(default_factory=list)


def customer_register(*, port: int, index: int) -> Customer:
    account = json_call(
        port=port,
        path="/api/v1/accounts",
        expect=201,
        body={
            "email": f"scale-{index}-{uuid.uuid4().hex[:8]}@example.org",
            "password": PASSWORD,
            "full_name": "Ada Quill",
            "address": ADDRESS,
            "birth_date": "1985-02-03",
            "privacy_policy_version": "1.0",
        },
    )
    return Customer(token=str(account["token"]))


def photo_upload(*, port: int, token: str, photo: bytes) -> str:
    body, content_type = multipart(data=photo, filename="IMG_0001.jpg")
    payload = http_call(
        port=port,
        method="POST",
        path="/api/v1/assets",
        body=body,
        headers={"Content-Type": content_type, "Authorization": f"Token {token}"},
        expect=201,
    )
    asset = json.loads(payload)
    if asset.get("status") not in (None, "ready") or not asset.get("gps_stripped"):
        raise RuntimeError(f"upload not stored as a ready, GPS-stripped photo: {asset}")
    return str(asset["id"])


def signed_event(*, secret: str, intent_id: str, amount: int) -> tuple[bytes, str]:
    """A `payment_intent.succeeded` event and its `Stripe-Signature` header (v1: HMAC-SHA256 of "t.body")."""
    event = {
        "id": f"evt_bench_{uuid.uuid4().hex}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": "usd",
                "status": "succeeded",
            }
        },
    }
    body = json.dumps(event).encode()
    stamp = int(time.time())
    signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={stamp},v1={signature}"


def order_place_and_pay(*, port: int, customer: Customer, asset_ids: list[str], webhook_secret: str) -> None:
    created = json_call(
        port=port,
        path="/api/v1/orders",
        token=customer.token,
        expect=201,
        extra={"Idempotency-Key": str(uuid.uuid4())},
        body={
            "items": [{"sku": SKU, "asset": asset, "copies": 1, "sizing": "fill"} for asset in asset_ids],
            "shipping_method": "standard",
            "shipping_address": ADDRESS,
        },
    )
    payment = created["payment"]
    assert isinstance(payment, dict)
    total = created["total_minor"]
    assert isinstance(total, int)
    body, signature = signed_event(
        secret=webhook_secret, intent_id=str(payment["payment_intent"]), amount=total
    )
    answer = http_call(
        port=port,
        method="POST",
        path="/api/v1/webhooks/stripe",
        body=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        expect=200,
    )
    if json.loads(answer).get("outcome") != "paid":
        raise RuntimeError(f"the payment event did not pay order {created['ref']}: {answer[:300]!r}")


@dataclass
class Feed:
    """Orders placed at fixed times (order n at start + n / orders_per_s) by a few client threads."""

    port: int
    customers: list[Customer]
    orders: int
    prints_per_order: int
    orders_per_s: float
    webhook_secret: str
    fresh_photos: list[bytes] | None = None  # upload each order's photos first (--fresh-uploads)
    started_at: float = 0.0
    placed: int = 0
    latest_lag_s: float = 0.0
    max_lag_s: float = 0.0
    request_seconds: list[float] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def prints_placed(self) -> int:
        return self.placed * self.prints_per_order

    @property
    def finished(self) -> bool:
        return self.placed >= self.orders or bool(self.failures)

    def start(self, *, threads: int) -> None:
        self.started_at = time.time()
        for _ in range(threads):
            threading.Thread(target=self._client, daemon=True).start()

    def _client(self) -> None:
        while not self.failures:
            with self._lock:
                index, self._next = self._next, self._next + 1
            if index >= self.orders:
                return
            due = self.started_at + index / self.orders_per_s
            time.sleep(max(0.0, due - time.time()))
            began = time.time()
            try:
                self._one(index)
            except Exception as error:
                self.failures.append(error)
                return
            with self._lock:
                self.placed += 1
                self.latest_lag_s = began - due
                self.max_lag_s = max(self.max_lag_s, began - due)
                self.request_seconds.append(time.time() - began)

    def _one(self, index: int) -> None:
        customer = self.customers[index % len(self.customers)]
        if self.fresh_photos:
            assets = [
                photo_upload(
                    port=self.port,
                    token=customer.token,
                    photo=self.fresh_photos[(index + item) % len(self.fresh_photos)],
                )
                for item in range(self.prints_per_order)
            ]
        else:
            pool = customer.asset_ids
            assets = [pool[(index + item) % len(pool)] for item in range(self.prints_per_order)]
        order_place_and_pay(
            port=self.port, customer=customer, asset_ids=assets, webhook_secret=self.webhook_secret
        )
