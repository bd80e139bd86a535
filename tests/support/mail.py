"""A mail backend for tests: like Django's locmem backend, but the mail server refuses some recipients."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
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
