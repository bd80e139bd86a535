"""Seals: HMACs under a key the database never holds (Django's SECRET_KEY, salted per use), of the facts a row
must not have changed behind the lab's back: an account's roles and password, a token's owner, a printer's
destination, a photo's owner and file, an order's shipping address.

A database administrator can write any row, but cannot make its seal: the code that checks one refuses a row
whose seal does not match what it holds. A seal is made under SECRET_KEY and accepted under it or one of
SECRET_KEY_FALLBACKS, so a key rotation that keeps the old key as a fallback keeps every seal valid.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac


def seal_of(salt: str, message: str, *, secret: str | None = None) -> str:
    return salted_hmac(salt, message, secret=secret, algorithm="sha256").hexdigest()


def seal_holds(stored: str, salt: str, message: str) -> bool:
    """Whether `stored` is the seal of `message`, under SECRET_KEY or one of its fallbacks."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return bool(stored) and any(
        constant_time_compare(stored, seal_of(salt, message, secret=secret)) for secret in secrets
    )


def resealing(
    update_fields: Iterable[str] | None, sealed: Collection[str], seal_field: str
) -> tuple[bool, set[str] | None]:
    """For a model's save(update_fields=…): whether the save writes a sealed field (a full save does), and the
    update_fields to save with the seal's own field added."""
    if update_fields is None:
        return True, None
    fields = set(update_fields)
    if not fields & set(sealed):
        return False, fields
    return True, {*fields, seal_field}


def stored_row_sealed(instance: Any, holds: Callable[[Any], bool]) -> bool:
    """Whether an existing row, as it is stored now, still carries its seal (a new one: True). A save that
    writes sealed fields seals the whole row again, so the lab's next legitimate write (a printer sync, a
    photo stored) would otherwise make a change written beside it in the database alone its own."""
    if instance._state.adding:
        return True
    stored = type(instance)._base_manager.filter(pk=instance.pk).first()
    return stored is None or holds(stored)
