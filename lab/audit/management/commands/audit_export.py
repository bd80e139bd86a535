"""`manage.py audit_export PATH`: write the chain as JSONL plus its signed checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from lab.audit import chain
from lab.audit.services import audit_export, public_key
from lab.audit.verify import checkpoints_path


class Command(BaseCommand):
    help = "Export the audit chain (JSONL) and checkpoints for offline verification."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        audit_export(path=path, actor_id=None, actor_role="operator")
        fingerprint = chain.public_key_fingerprint(public_key())
        self.stdout.write(
            f"wrote {path} and {checkpoints_path(path)}; verify with the public key {fingerprint}"
        )
