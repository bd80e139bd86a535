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
TAG_BYTES = 16  # AES-GCM's authentication tag, at the end of every ciphertext
DATA_KEY_BYTES = 32
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


def _sealed_open(*, key: bytes, sealed: bytes, aad: bytes, what: str) -> bytes:
    """Decrypt nonce + ciphertext + tag. Anything that is not that (too short for a nonce and a tag: a file
    cut short, a column overwritten) is DecryptionFailed, as bytes that do not authenticate are: the cipher
    raised ValueError for a nonce under 8 bytes, which no caller handled (a blob cut short after its magic
    stopped every retention sweep at that photo, and the photo gate answered 500)."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed(f"{what} is too short to be one")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag as error:
        raise DecryptionFailed(f"{what} does not authenticate") from error


def unwrap_data_key(*, wrapped: bytes, master: MasterKey, binding: bytes) -> bytes:
    data_key = _sealed_open(key=master.key, sealed=wrapped, aad=binding, what="wrapped data key")
    if len(data_key) != DATA_KEY_BYTES:  # authenticates, so only a master key's holder could have made it
        raise DecryptionFailed("wrapped data key is not a data key")
    return data_key


def encrypt_blob(*, data_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return BLOB_MAGIC + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def decrypt_blob(*, data_key: bytes, blob: bytes, aad: bytes) -> bytes:
    if not blob.startswith(BLOB_MAGIC):
        raise DecryptionFailed("not an encrypted blob")
    if len(data_key) != DATA_KEY_BYTES:
        raise DecryptionFailed("not a data key")
    return _sealed_open(key=data_key, sealed=blob[len(BLOB_MAGIC) :], aad=aad, what="blob")
