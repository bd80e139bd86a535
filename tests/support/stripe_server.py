"""localstripe on loopback: the Stripe API for the test run, plus helpers to sign webhook payloads."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import stripe

from tests.support.processes import Service, free_port, port_open, wait_for


class LocalStripe:
    def __init__(self, *, log_dir: Path) -> None:
        self.port = free_port()
        binary = Path(sys.executable).parent / "localstripe"
        self.service = Service(
            [str(binary), "--port", str(self.port), "--from-scratch"], log=log_dir / "localstripe.log"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalStripe:
        self.service.start()
        wait_for(lambda: port_open(self.port), timeout=90, what="localstripe")
        return self

    def stop(self) -> None:
        self.service.stop()


def signed_event(
    *,
    event_type: str,
    data_object: dict[str, object],
    secret: str,
    event_id: str,
    timestamp: int | None = None,
) -> tuple[bytes, str]:
    """A Stripe event body and its real `Stripe-Signature` header (v1 HMAC-SHA256)."""
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "data": {"object": data_object},
        }
    ).encode()
    stamp = timestamp if timestamp is not None else int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{stamp}.{payload.decode()}", secret)
    return payload, f"t={stamp},v1={signature}"


def card_payment_method(client: stripe.StripeClient) -> str:
    """A PaymentMethod for Stripe's always-successful test card, as the customer's browser makes it."""
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "314"},
        }
    )
    return str(method.id)
