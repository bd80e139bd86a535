"""Notification test fixtures: a real webhook receiver on loopback, mail kept in memory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


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
    # Run once, in the server's thread, when a POST has been read and before it is answered: what another
    # worker does while that POST is in flight. Taken off first, so POSTs made inside it are answered plainly.
    while_answering: Callable[[], None] | None = None


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
            meanwhile, state.while_answering = state.while_answering, None
            if meanwhile is not None:
                meanwhile()
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
