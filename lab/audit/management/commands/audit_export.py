"""`manage.py audit_export PATH`: write the chain as JSONL plus every signed checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.audit.configured import public_key
from lab.audit.export import audit_export
from lab.audit.export_format import checkpoints_path
from lab.audit.keys import public_key_fingerprint


class Command(BaseCommand):
    help = "Export the audit chain (JSONL) and checkpoints for offline verification."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        outcome = audit_export(path=path, actor_id=None, actor_role="operator")
        fingerprint = public_key_fingerprint(public_key())
        written = (
            f"wrote {outcome.records} records to {path} and {outcome.checkpoints} checkpoints to"
            f" {checkpoints_path(path)}"
        )
        if outcome.problem is not None:
            raise CommandError(
                f"{written}, but did NOT sign it: TAMPERED: {outcome.problem.kind} {outcome.problem.place}:"
                f" {outcome.problem.message}"
            )
        self.stdout.write(
            f"{written}; verify with the public key {fingerprint}"
            f" and the witness log {settings.AUDIT_WITNESS}"
        )
