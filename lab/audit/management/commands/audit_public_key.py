"""`manage.py audit_public_key`: print the public key auditors pin, and its fingerprint."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from lab.audit.configured import public_key
from lab.audit.keys import public_key_b64, public_key_fingerprint


class Command(BaseCommand):
    help = "Print the audit checkpoint public key (base64) and its SHA-256 fingerprint."

    def handle(self, *args: Any, **options: Any) -> None:
        key = public_key()
        self.stdout.write(f"{public_key_b64(key)}\nfingerprint {public_key_fingerprint(key)}")
