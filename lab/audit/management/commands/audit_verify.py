"""`manage.py audit_verify`: recompute every lane's chain, every record's mac and the checkpoints, and check
the chains against the witness log; exit 1 naming the first broken seq (and its lane) or the missing range. A
restore the log went through (a restore marker, `manage.py audit_restore`) is reported, with the seqs lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.audit.database_verify import audit_verify_database
from lab.audit.keys import load_public_key


class Command(BaseCommand):
    help = "Verify the audit log's hash chain, record macs, signed checkpoints and the witness log."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--public-key", help="pinned public key (PEM or base64); default: the configured key"
        )
        parser.add_argument(
            "--witness",
            type=Path,
            help="a witness log to check against (e.g. the auditors' copy); default: AUDIT_WITNESS",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pinned = load_public_key(options["public_key"]) if options.get("public_key") else None
        result = audit_verify_database(pinned_public_key=pinned, witness_path=options.get("witness"))
        if result.problem is not None:
            raise CommandError(
                f"TAMPERED: {result.problem.kind} {result.problem.place}: {result.problem.message}"
            )
        restored = "".join(f"; {restore.note()}" for restore in result.restores)
        self.stdout.write(
            f"OK: {result.count} records in {result.lanes} lane(s), head seq {result.head_seq},"
            f" {result.checkpoints} checkpoints, {result.witnessed} witnessed{restored}"
        )
