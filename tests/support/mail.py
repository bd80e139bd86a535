"""A mail backend for tests: like Django's locmem backend, but the mail server refuses some recipients."""

from __future__ import annotations

import smtplib
import socketserver
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.core.mail.backends.locmem import EmailBackend
from django.core.mail.message import EmailMessage

REFUSED_DOMAIN = "@refused.example"


class RefusingEmailBackend(EmailBackend):
    """Refuses (SMTP 550, as smtplib raises it) every message to an address at REFUSED_DOMAIN."""

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        for message in messages:
            refused: dict[str, Any] = {
                address: (550, b"mailbox unavailable")
                for address in message.recipients()
                if address.endswith(REFUSED_DOMAIN)
            }
            if refused:
                raise smtplib.SMTPRecipientsRefused(refused)
        return int(super().send_messages(messages))


class StalledServerEmailBackend(EmailBackend):
    """Every send fails as a mail server that never answers fails it after EMAIL_TIMEOUT (here at once);
    `attempts` counts the sends tried, across instances."""

    attempts = 0

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        StalledServerEmailBackend.attempts += 1
        raise TimeoutError("timed out")


class WorkerDiesWhileSending(Exception):
    """What a test raises where a worker process would be killed."""


class DyingEmailBackend(EmailBackend):
    """The worker dies while the message is on its way: nothing after the send runs."""

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        raise WorkerDiesWhileSending


@dataclass
class SmtpSink:
    """A real SMTP server on the loopback (see `smtp_sink`): it refuses every recipient at REFUSED_DOMAIN with
    550, quoting the address as real servers do, and keeps the messages it accepted."""

    host: str
    port: int
    received: list[tuple[list[str], bytes]] = field(default_factory=list)  # (recipients, data)


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: _SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())
        self.wfile.flush()

    def handle(self) -> None:
        recipients: list[str] = []
        self.reply("220 sink.example ESMTP")
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink.example")
            elif verb == "MAIL":
                recipients = []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                address = command.partition(":")[2].strip().strip("<>")
                if address.endswith(REFUSED_DOMAIN):
                    self.reply(f"550 5.1.1 <{address}>: Recipient address rejected: User unknown")
                else:
                    recipients.append(address)
                    self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.server.sink.received.append((recipients, data))
                self.reply("250 2.0.0 Ok: queued")
            elif verb == "RSET":
                recipients = []
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    sink: SmtpSink


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on 127.0.0.1 (a free port) for the duration: point Django's SMTP backend at
    `sink.host`, `sink.port`."""
    with _SmtpServer(("127.0.0.1", 0), _SmtpHandler) as server:
        server.sink = SmtpSink(host="127.0.0.1", port=server.server_address[1])
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.sink
        finally:
            server.shutdown()
            thread.join()


class SlowEmailBackend(EmailBackend):
    """A mail server that takes `delay` seconds over each message; `connections` counts the sessions opened
    (each send_messages call is one, as the SMTP backend opens one for a call made unopened) and `messages`
    the messages delivered, across instances. Tests assert the counts, never the time."""

    delay = 0.05
    connections = 0
    messages = 0

    @classmethod
    def reset(cls) -> None:
        cls.connections = 0
        cls.messages = 0

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        SlowEmailBackend.connections += 1
        for _ in messages:
            time.sleep(self.delay)
            SlowEmailBackend.messages += 1
        return int(super().send_messages(messages))
