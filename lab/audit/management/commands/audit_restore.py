"""`manage.py audit_restore [--staff EMAIL]`: after the database was restored from a backup (every web, worker
and beat process stopped), move the audit record sequence past every seq the witness named and sign a restore
marker: the witnessed checkpoint the chain continues from, the one it supersedes and the seqs lost
(lab/audit/restoring.py). Safe to run twice; exit 1, signing nothing, when the log does not verify up to the
restore point, the database holds no witnessed checkpoint, or it holds records written after a witnessed
checkpoint whose records it lacks (a deletion, not a restore). When the marker's e-mail to the auditors fails,
the restore stands (exit 0: the marker is witnessed and stored, and running it again signs nothing more) and
stderr says so loudly, with the marker's line to send them: their copy of the witness lacks it until then,
and their verifier says witness_incomplete."""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.accounts.models import User
from lab.accounts.roles import is_staff_member
from lab.audit.restoring import RestoreOutcome, RestoreRefused, audit_restore


class Command(BaseCommand):
    help = "After a database restore: sign the audit log's restore marker, naming the seqs lost."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--staff",
            metavar="EMAIL",
            help="the staff account running the restore (recorded in the marker); default: the OS user",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        by = _staff(options["staff"]) if options.get("staff") else _os_user()
        try:
            outcome = audit_restore(by=by)
        except RestoreRefused as refused:
            raise CommandError(f"audit restore refused, nothing signed: {refused}") from refused
        self.stdout.write(_summary(outcome))
        if outcome.mail_failed is not None and outcome.marker is not None:
            self.stderr.write(
                "WARNING: the restore marker is signed, witnessed and stored, but its e-mail to the auditors"
                f" (AUDIT_WITNESS_EMAILS) failed ({outcome.mail_failed}): their copy of the witness lacks it,"
                " and their verifier answers witness_incomplete until they add this line to it; send it to"
                f" them another way:\n{outcome.marker.to_line()}"
            )


def _staff(email: str) -> str:
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None or not user.is_active or not (user.is_staff or is_staff_member(user)):
        raise CommandError(f"{email!r} is not an active staff account")
    return f"staff:{user.public_id}"


def _os_user() -> str:
    try:
        return f"os:{getpass.getuser()}"
    except (OSError, KeyError):  # no name for this uid (a container's)
        return f"os:uid-{os.getuid()}"


def _summary(outcome: RestoreOutcome) -> str:
    point = outcome.restore_point
    before, after = outcome.sequence
    moved = f"; the record sequence moved from {before} to {after}" if before != after else ""
    then = (
        f"; then checkpoint seq {outcome.checkpoint.seq} signed at {outcome.checkpoint.signed_at}"
        if outcome.checkpoint is not None
        else ""
    )
    marker = outcome.marker
    if marker is None or marker.restore is None:
        finished = (
            "the restore marker was already witnessed" if point.restore is not None else "nothing to do"
        )
        return (
            f"{finished}: the database holds the witness's last line (seq {point.seq} signed at"
            f" {point.signed_at}) in full{moved}{then}"
        )
    mark = marker.restore
    return (
        f"restore marker signed at {marker.signed_at} by {mark.by} and witnessed: the chain continues from"
        f" the checkpoint of seq {mark.from_seq} signed at {mark.from_signed_at};"
        f" seqs {mark.lost_from}..{mark.lost_to} lost (the checkpoint of seq {mark.superseded_seq} signed at"
        f" {mark.superseded_signed_at} superseded){moved}; new records take seqs after {after}{then}"
    )
