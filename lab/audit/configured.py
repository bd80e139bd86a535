"""The audit log's secrets as this lab's settings configure them: the checkpoint signing key (its public key,
key id and the key ring a rotation leaves), the record key, and the witness sink checkpoints are appended to.
"""

from __future__ import annotations

from functools import cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from lab.audit.keys import KeyRing, key_id_of, load_private_key, load_public_key, load_record_key
from lab.audit.witness import WitnessSink, witness_from_url


@cache
def _signing_key(raw: str) -> Ed25519PrivateKey:
    return load_private_key(raw)


def signing_key() -> Ed25519PrivateKey:
    return _signing_key(settings.AUDIT_SIGNING_KEY)


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def key_id() -> str:
    return key_id_of(public_key())


@cache
def _retired_public_keys(texts: tuple[str, ...]) -> tuple[Ed25519PublicKey, ...]:
    return tuple(load_public_key(text) for text in texts)


def key_ring(current: Ed25519PublicKey | None = None) -> KeyRing:
    """The keys checkpoints are checked with: the signer's own (or the pinned one, `current`) and those
    AUDIT_RETIRED_PUBLIC_KEYS names, so that the checkpoints a rotated key signed still verify, each with
    the key its key_id names."""
    return KeyRing(current or public_key(), _retired_public_keys(tuple(settings.AUDIT_RETIRED_PUBLIC_KEYS)))


@cache
def _record_key(raw: str) -> bytes:
    return load_record_key(raw)


def record_key() -> bytes:
    return _record_key(settings.AUDIT_RECORD_KEY)


def witness_sink() -> WitnessSink:
    return witness_from_url(settings.AUDIT_WITNESS)
