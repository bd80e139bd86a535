"""Data keys: one AES-256 key per photo, stored only wrapped by a master key.

Destroying a DataKey (wiping `wrapped_key`) makes every blob encrypted under it unreadable: crypto-shredding.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class DataKey(models.Model):
    wrapped_key = models.BinaryField(null=True)
    master_key_id = models.CharField(max_length=32)
    # On the database's clock: the retention sweep judges a key left by an unfinished upload by its age on
    # that clock (orphan_keys_destroy), so a key must not be dated by the clock of the web host that made it.
    created_at = models.DateTimeField(db_default=Now())
    destroyed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"datakey:{self.pk}"

    @property
    def is_destroyed(self) -> bool:
        return self.destroyed_at is not None
