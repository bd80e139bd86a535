"""Envelope encryption for photos at rest: AES-256-GCM data keys wrapped by a master key.

Master keys come from settings.LAB_MASTER_KEYS ("id:base64" entries, the first one current) and never
touch the database; data keys are stored only wrapped, bound to their row id as associated data.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

NONCE_BYTES = 12
BLOB_MAGIC = b"PLB1"


class KeyDestroyed(Exception):
    """The data key was destroyed (purge): the bytes can never be read again."""


class DecryptionFailed(Exception):
    """Ciphertext or key material does not authenticate."""


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    key: bytes


@cache
def _master_keys(raw: tuple[str, ...]) -> tuple[MasterKey, ...]:
    keys = []
    for entry in raw:
        key_id, _, encoded = entry.partition(":")
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if len(key) != 32 or not key_id:
            raise ValueError("LAB_MASTER_KEY entries must be 'id:base64(32 bytes)'")
        keys.append(MasterKey(key_id=key_id, key=key))
    return tuple(keys)


def master_keys() -> tuple[MasterKey, ...]:
    return _master_keys(tuple(settings.LAB_MASTER_KEYS))


def current_master_key() -> MasterKey:
    return master_keys()[0]


def master_key_by_id(key_id: str) -> MasterKey:
    for key in master_keys():
        if key.key_id == key_id:
            return key
    raise DecryptionFailed(f"master key {key_id!r} is not configured")


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_data_key(*, data_key: bytes, master: MasterKey, binding: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master.key).encrypt(nonce, data_key, binding)


def unwrap_data_key(*, wrapped: bytes, master: MasterKey, binding: bytes) -> bytes:
    try:
        return AESGCM(master.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], binding)
    except InvalidTag as error:
        raise DecryptionFailed("data key does not unwrap") from error


def encrypt_blob(*, data_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return BLOB_MAGIC + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def decrypt_blob(*, data_key: bytes, blob: bytes, aad: bytes) -> bytes:
    if not blob.startswith(BLOB_MAGIC):
        raise DecryptionFailed("not an encrypted blob")
    body = blob[len(BLOB_MAGIC) :]
    try:
        return AESGCM(data_key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], aad)
    except InvalidTag as error:
        raise DecryptionFailed("blob does not authenticate") from error
