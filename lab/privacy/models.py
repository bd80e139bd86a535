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


class BlobDeletion(models.Model):
    """A file of a committed purge still to be deleted from the vault: written in the purge's own transaction,
    deleted right after the file (after the commit). A process killed between the two (a deploy's restart, a
    COMMIT whose answer was lost, when no after-commit hook runs) leaves the row, and the retention sweep
    deletes the file: no row names it any more, and a raster still decrypts under its photo's live key.

    No personal data: the vault's name (a uuid's hex), what the file is, and whose (ids) for the log."""

    class Kind(models.TextChoices):
        PHOTO = "photo"
        RASTER = "raster"

    name = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    of = models.CharField(max_length=64)  # whose file, for the log: "asset=<id>", "job=<id>"
    # On the database's clock, like DataKey.created_at; the sweep leaves a young row to its purge's hooks.
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=["photo", "raster"]), name="privacy_blobdeletion_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"blobdeletion:{self.pk}"
