"""The audit log's keys: the record (HMAC) key, the Ed25519 checkpoint keys, their key ids and fingerprints,
and the key ring a rotation leaves. Pure Python (stdlib + cryptography), no Django.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def load_record_key(text: str) -> bytes:
    """The record (HMAC) key from its base64 text; at least 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as error:
        raise ValueError("the record key is not base64") from error
    if len(raw) < 32:
        raise ValueError(f"the record key must be at least 32 bytes, this one is {len(raw)}")
    return raw


def load_private_key(pem_or_b64: str) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from PKCS#8 PEM or from base64 of its 32 raw bytes."""
    text = pem_or_b64.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM private key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_key_bytes(text))


def load_public_key(pem_or_b64: str) -> Ed25519PublicKey:
    """Read an Ed25519 public key from SubjectPublicKeyInfo PEM or from base64 of its 32 raw bytes."""
    text = pem_or_b64.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM public key is not an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_key_bytes(text))


def _raw_key_bytes(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise ValueError("the key is neither PEM nor base64") from error
    if len(raw) != 32:
        raise ValueError(f"a raw Ed25519 key is 32 bytes, this one is {len(raw)}")
    return raw


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """The public key as base64 of its 32 raw bytes: what the verifier's --public-key accepts."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """sha256 hex of the 32 raw public key bytes: the short value an auditor pins and compares."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


KEY_ID_LENGTH = 16


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key_id the lab's signer names its key by in every checkpoint: its fingerprint's first 16 digits."""
    return public_key_fingerprint(public_key)[:KEY_ID_LENGTH]


@dataclass(frozen=True)
class KeyRing:
    """The public keys checkpoints are checked with: the current one and those retired by a rotation (the
    database and every export keep the checkpoints an old key signed, and the witness log of its time).

    Each checkpoint is checked with the key its key_id names, and with that key only; a key_id that names
    none of the retired keys is checked with the current key (a checkpoint signed by any other key, however
    it names itself, is refused). A retired key must be one that did not leak: whoever holds it can sign
    checkpoints these keys accept (the witness's pinned hashes still stand against a rewrite)."""

    current: Ed25519PublicKey
    retired: tuple[Ed25519PublicKey, ...] = ()

    def key_for(self, key_id: str) -> Ed25519PublicKey:
        for key in self.retired:
            if key_id_of(key) == key_id:
                return key
        return self.current


# One pinned key, or a key ring (a rotation's retired keys with the current one).
PublicKeys = Ed25519PublicKey | KeyRing


def checkpoint_key(public_keys: PublicKeys, key_id: str) -> Ed25519PublicKey:
    """The key a checkpoint naming key_id is checked with."""
    return public_keys.key_for(key_id) if isinstance(public_keys, KeyRing) else public_keys
