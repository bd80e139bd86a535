"""Data keys: one AES-256 key per photo, stored only wrapped by a master key.

Destroying a DataKey (wiping `wrapped_key`) makes every blob encrypted under it unreadable: crypto-shredding.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class DataKey(models.Model):
    wrapped_key = models.BinaryField(null=True)
    master_key_id = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"datakey:{self.pk}"

    @property
    def is_destroyed(self) -> bool:
        return self.destroyed_at is not None
