"""A loopback HTTP proxy in front of localstripe, for what localstripe does not do as Stripe does.

StripeProxy forwards each request as it came (the lab's real SDK, over real HTTP); a subclass may answer a
request itself as Stripe would refuse it (`refusal`) or change localstripe's JSON answer (`rewrite`).
RefundStatusProxy answers refunds in the status a test sets: localstripe makes every refund `succeeded` at
once, Stripe's are often `pending` first, and may fail or be cancelled later.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import threading
from typing import Any, Self
from urllib.parse import urlsplit

# Headers that describe one hop, not the message: never forwarded.
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


class StripeProxy:
    """Forwards to `upstream`, answering what `refusal` refuses with a 400 and the rest as `rewrite` makes
    localstripe's answer."""

    def __init__(self, *, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def refusal(self, method: str, path: str, body: bytes) -> dict[str, Any] | None:
        """Stripe's error body for a request it would refuse (answered 400 without forwarding), else None."""
        return None

    def rewrite(self, answer: Any) -> Any:
        """localstripe's JSON answer as Stripe would give it."""
        return answer

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        finally:
            connection.close()
        self.forwarded(method, path, headers, status)
        try:
            answer = json.loads(raw)
        except ValueError:
            return status, raw
        return status, json.dumps(self.rewrite(answer)).encode()

    def forwarded(self, method: str, path: str, headers: dict[str, str], status: int) -> None:
        """Called for each request localstripe answered."""

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                refused = proxy.refusal(self.command, self.path, body)
                if refused is not None:
                    status, answer = 400, json.dumps(refused).encode()
                else:
                    headers = {
                        name: value for name, value in self.headers.items() if name.lower() not in HOP_HEADERS
                    }
                    status, answer = proxy._forward(self.command, self.path, headers, body)
                # A client that gave up waiting (the lab's Stripe timeout, under load) hung up: its retry is
                # what the test watches, not this answer (socketserver printed a traceback for it).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            do_GET = do_POST = do_DELETE = _relay

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's own assertions say what went through

        return Handler


class RefundStatusProxy(StripeProxy):
    """A refund named in `statuses` is answered in that status, any other refund in `default_status` when one
    is set (as localstripe made it otherwise)."""

    def __init__(self, *, upstream: str) -> None:
        super().__init__(upstream=upstream)
        self.statuses: dict[str, str] = {}
        self.default_status: str | None = None
        # (path, Idempotency-Key) of every refund created through the proxy, in order.
        self.refunds_created: list[tuple[str, str]] = []

    def rewrite(self, answer: Any) -> Any:
        """The answer with each refund in it (alone, or in a list) given the status the test set."""
        if isinstance(answer, dict) and answer.get("object") == "list":
            answer["data"] = [self.rewrite(item) for item in answer.get("data") or []]
        elif isinstance(answer, dict) and answer.get("object") == "refund":
            status = self.statuses.get(str(answer.get("id")), self.default_status)
            if status is not None:
                answer["status"] = status
        return answer

    def forwarded(self, method: str, path: str, headers: dict[str, str], status: int) -> None:
        if method == "POST" and path.split("?")[0] == "/v1/refunds" and status == 200:
            key = next((value for name, value in headers.items() if name.lower() == "idempotency-key"), "")
            self.refunds_created.append((path, key))


class IntentStatusProxy(StripeProxy):
    """Every PaymentIntent answered in `status` (localstripe's card intents are never `processing` nor
    `requires_capture`: a bank debit on its way, a card payment authorised and not captured yet)."""

    def __init__(self, *, upstream: str, status: str) -> None:
        super().__init__(upstream=upstream)
        self.status = status

    def rewrite(self, answer: Any) -> Any:
        if isinstance(answer, dict) and answer.get("object") == "payment_intent":
            answer["status"] = self.status
        return answer
