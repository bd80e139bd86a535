"""Guest orders' access tokens: derived from the idempotency key (a replay returns the same token),
stored only as a seal binding the token's hash to its order (lab/lib/seals.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging

from django.utils.crypto import salted_hmac

from lab.lib.seals import seal_holds, seal_of

logger = logging.getLogger(__name__)
# Migration orders/0015 copies it: it sealed the hashes stored before.
GUEST_TOKEN_SEAL_SALT = "lab.orders.guest_token.seal"


def guest_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def guest_token_seal(*, order_id: int, ref: str, token: str) -> str:
    """What an order stores of its guest token (`Order.guest_token_hash`): a seal of the order's row (its key
    and ref) and the token's SHA-256. A database administrator can store the SHA-256 of a token of their own,
    or copy another order's value, or move an order's ref and value onto another row, but cannot make the
    seal: each authenticates nobody."""
    return seal_of(GUEST_TOKEN_SEAL_SALT, f"order:{order_id}|{ref}|{guest_token_hash(token)}")


def guest_token_holds(*, order_id: int, ref: str, stored: str, token: str) -> bool:
    """Whether `token` is the one the lab issued for the order (constant time; SECRET_KEY or a fallback)."""
    return seal_holds(stored, GUEST_TOKEN_SEAL_SALT, f"order:{order_id}|{ref}|{guest_token_hash(token)}")


def guest_token_derive(*, scope: str, idempotency_key: str, ref: str) -> str:
    """A guest's order token: HMAC-SHA256 under settings.SECRET_KEY of (scope, Idempotency-Key, order ref).

    Deterministic, so a retry whose first answer was lost gets the same working token back; only a seal of
    its SHA-256 is stored (guest_token_seal). A replay already requires the same scope (the guest's e-mail),
    key and byte-identical body (photo UUIDs, birth date, address), and already answers with the order
    itself, so handing back the token gives away nothing new. Rotating SECRET_KEY leaves issued tokens valid
    only while the old key is in SECRET_KEY_FALLBACKS (the seal is checked under either), and replays of
    older orders then answer `guest_token: null`.
    """
    message = json.dumps([scope, idempotency_key, ref], separators=(",", ":"))
    digest = salted_hmac("lab.orders.guest_token", message, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
