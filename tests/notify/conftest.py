"""Notification test helpers: orders moved through the real state machine, and a real webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from django.db import transaction
from django.utils import timezone

from lab.accounts.models import User
from lab.catalog.models import Product
from lab.orders.models import Order, OrderEvent, OrderItem
from lab.orders.transitions import order_locked, order_transition
from tests.factories import ProductFactory, UserFactory, asset_for

ADDRESS = {
    "name": "Ada Quill",
    "line1": "1 Lens Lane",
    "city": "Exposure",
    "postal_code": "12345",
    "country": "US",
}


def new_customer(**fields: Any) -> User:
    return cast(User, UserFactory(**fields))


def order_for(customer: User | None, *, guest_email: str = "", copies: int = 3) -> Order:
    """An order awaiting payment with one item of `copies` 4x6 prints and its "created" timeline entry."""
    product = cast(Product, ProductFactory())
    subtotal = product.price_minor * copies
    order = Order.objects.create(
        customer=customer,
        guest_email=guest_email,
        shipping_address=ADDRESS,
        shipping_method=Order.ShippingMethod.STANDARD,
        subtotal_minor=subtotal,
        shipping_minor=499,
        total_minor=subtotal + 499,
        currency="usd",
        promised_by=timezone.now() + timedelta(days=3),
    )
    OrderItem.objects.create(
        order=order,
        position=1,
        product=product,
        asset=asset_for(customer, width=600, height=400),
        copies=copies,
        sizing=OrderItem.Sizing.FILL,
        unit_price_minor=product.price_minor,
        line_total_minor=subtotal,
    )
    OrderEvent.objects.create(order=order, kind="created", to_status=order.status, actor=customer)
    return order


def move(order: Order, *statuses: str, **fields: Any) -> Order:
    """Walk the order through `statuses` with the real transition service, setting `fields` on the way."""
    for status in statuses:
        with transaction.atomic():
            locked = order_locked(order_id=order.pk)
            for name, value in fields.items():
                setattr(locked, name, value)
            order_transition(order=locked, to_status=status, extra_fields=tuple(fields))
    order.refresh_from_db()
    return order


TO_PACKED = ("paid", "in_production", "ready_to_pack", "packed")


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A customer's webhook endpoint: a real HTTP server on loopback that answers `answer_status`."""

    url: str = ""
    answer_status: int = 200
    requests: list[ReceivedRequest] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.requests.append(
                ReceivedRequest(
                    path=self.path, headers=dict(self.headers.items()), body=self.rfile.read(length)
                )
            )
            self.send_response(state.answer_status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/lab"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def local_webhooks(settings) -> None:
    """Let webhooks reach the loopback receiver over plain http, as a lab's own test setup would."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_ALLOW_HTTP = True


@pytest.fixture(autouse=True)
def _locmem_mail(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.LAB_NAME = "Harbour Print Lab"
    settings.LAB_CONTACT = "help@harbour.example"
    settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.WEBHOOK_ALLOW_HTTP = False
    # These tests never log in with a password; a fast hasher keeps UserFactory from dominating the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
