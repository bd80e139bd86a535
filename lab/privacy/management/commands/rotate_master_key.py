"""`manage.py rotate_master_key`: re-wrap every live photo data key under the current (first) master key.

The operator puts the new key first in LAB_MASTER_KEY ("new:...,old:..."), runs this, then drops the old one.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from lab.privacy import crypto
from lab.privacy.models import DataKey
from lab.privacy.vault import master_key_rotate


class Command(BaseCommand):
    help = "Re-wrap every live data key under the first master key of LAB_MASTER_KEY; photos are untouched."

    def handle(self, *args: Any, **options: Any) -> None:
        current = crypto.current_master_key()
        try:
            rewrapped = master_key_rotate()
        except crypto.DecryptionFailed as error:
            raise CommandError(
                f"stopped: {error}. Keep every old master key in LAB_MASTER_KEY until the rotation completes."
            ) from error
        remaining = (
            DataKey.objects.filter(destroyed_at__isnull=True).exclude(master_key_id=current.key_id).count()
        )
        if remaining:
            raise CommandError(
                f"re-wrapped {rewrapped} data keys, but {remaining} still use an old master key"
            )
        self.stdout.write(
            f"re-wrapped {rewrapped} data keys under master key {current.key_id!r}; "
            "no live data key uses another master key, so the old ones can be removed from LAB_MASTER_KEY"
        )
