"""The Idempotency-Key header, read one way everywhere: 1-200 printable characters once stripped.

POST orders requires one, POST assets and POST webhook-endpoints take one if sent, the order throttles look.
"""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.request import Request

from api.errors import ApiError
from lab.lib.errors import DomainError

HEADER = "Idempotency-Key"
MAX_LENGTH = 200


def _sent(request: HttpRequest | Request) -> str:
    """The header as sent, stripped; empty when none is."""
    return request.headers.get(HEADER, "").strip()


def _usable(key: str) -> bool:
    # Printable only: a NUL byte must not reach the database (PostgreSQL refuses it in a text column).
    return 0 < len(key) <= MAX_LENGTH and key.isprintable()


def idempotency_key_look(request: HttpRequest | Request) -> str | None:
    """The key as the views take it, or None (none sent, or one they refuse): raises nothing, for the
    throttles, which run before the view and leave the refusal to it."""
    key = _sent(request)
    return key if _usable(key) else None


def idempotency_key_required(request: HttpRequest | Request) -> str:
    """The key of a write that must carry one (POST orders); none, an empty one or an unusable one is 400
    `idempotency_key_required`."""
    key = _sent(request)
    if not _usable(key):
        raise DomainError(
            ApiError.IDEMPOTENCY_KEY_REQUIRED,
            "Send an Idempotency-Key header (1-200 printable characters).",
        )
    return key


def idempotency_key_optional(request: HttpRequest | Request) -> str | None:
    """The key of a write that may carry one (POST assets, POST webhook-endpoints), or None when none (or an
    empty one) is sent. One sent but unusable is 400 `idempotency_key_required`, not ignored: ignored, its
    retry would make a second photo or endpoint."""
    key = _sent(request)
    if not key:
        return None
    if not _usable(key):
        raise DomainError(
            ApiError.IDEMPOTENCY_KEY_REQUIRED,
            "An Idempotency-Key has 1-200 printable characters.",
        )
    return key
