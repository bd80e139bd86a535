"""Guest orders' access tokens: derived from the idempotency key (a replay returns the same token),
stored only as a hash."""

from __future__ import annotations

import base64
import hashlib
import json
import logging

from django.utils.crypto import salted_hmac

logger = logging.getLogger(__name__)


def guest_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def guest_token_derive(*, scope: str, idempotency_key: str, ref: str) -> str:
    """A guest's order token: HMAC-SHA256 under settings.SECRET_KEY of (scope, Idempotency-Key, order ref).

    Deterministic, so a retry whose first answer was lost gets the same working token back; only its SHA-256
    is stored, as for any token. A replay already requires the same scope (the guest's e-mail), key and
    byte-identical body (photo UUIDs, birth date, address), and already answers with the order itself, so
    handing back the token gives away nothing new. Rotating SECRET_KEY leaves issued tokens valid (the hash
    is stored) but replays of older orders then answer `guest_token: null`.
    """
    message = json.dumps([scope, idempotency_key, ref], separators=(",", ":"))
    digest = salted_hmac("lab.orders.guest_token", message, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
