"""`manage.py audit_verify`: recompute the chain and checkpoints; exit 1 naming the first broken record."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.audit import chain
from lab.audit.services import audit_verify_database


class Command(BaseCommand):
    help = "Verify the audit log's hash chain and signed checkpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--public-key", help="pinned public key (PEM or base64); default: the configured key"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pinned = chain.load_public_key(options["public_key"]) if options.get("public_key") else None
        result = audit_verify_database(pinned_public_key=pinned)
        if result.problem is not None:
            raise CommandError(
                f"TAMPERED: {result.problem.kind} at seq {result.problem.seq}: {result.problem.message}"
            )
        self.stdout.write(
            f"OK: {result.count} records, head seq {result.head_seq}, {result.checkpoints} checkpoints"
        )
