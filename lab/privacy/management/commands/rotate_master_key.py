"""`manage.py rotate_master_key`: re-wrap every live photo data key under the current (first) master key.

Every process wraps new photos' keys under the first key of the LAB_MASTER_KEY it started with, so the
operator puts the new key first ("new:...,old:...") on every host, restarts every web and worker process, runs
this, and drops the old key only when a run says it may: one that re-wrapped none and left none under an
old key.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from lab.privacy import crypto
from lab.privacy.models import DataKey
from lab.privacy.vault import master_key_rotate

# A run that re-wrapped some keys cannot tell whether a process not yet restarted made them after an earlier
# run, nor whether one will make more: a run after the restarts that finds none shows none did since the last.
# Before, a run said the old key could go while such a process kept wrapping under it; once dropped, its
# photos no longer decrypted (prints failed, owners got 410).
_RESTART_THEN_AGAIN = (
    "restart every web and worker process on every host that was started before the new key was put first,"
    " then run this again; the old keys may go only after a run that re-wraps none"
)


class Command(BaseCommand):
    help = (
        "Re-wrap every live data key under the first master key of LAB_MASTER_KEY; photos are untouched."
        " Run it after restarting every process with the new key first, until a run re-wraps none."
    )

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
                f"re-wrapped {rewrapped} data keys, but {remaining} still use an old master key: a process"
                f" still holding it wrapped them during this run. Keep the old keys; {_RESTART_THEN_AGAIN}"
            )
        if rewrapped:
            self.stdout.write(
                f"re-wrapped {rewrapped} data keys under master key {current.key_id!r}. Keep the old master"
                " keys in LAB_MASTER_KEY: a process still holding one wraps new photos' keys under it;"
                f" {_RESTART_THEN_AGAIN}"
            )
            return
        self.stdout.write(
            f"re-wrapped 0 data keys under master key {current.key_id!r}; no live data key uses another"
            " master key, so if every web and worker process on every host was restarted after the new key"
            " was put first, the old ones can be removed from LAB_MASTER_KEY"
        )
