"""A checkpoint row the app's database role inserts with junk for its lanes (it may insert checkpoints, and
cannot delete one): the row's lanes were parsed unguarded, so audit_verify, every audit_export and every
privacy receipt crashed on it for good. Now the row is named "malformed" by the verifier, the export still
writes both files (without that row), signs nothing and names it, and a receipt is anchored to no
checkpoint rather than never issued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.core.management.base import CommandError

from lab.audit.configured import key_id
from lab.audit.export import audit_export
from lab.audit.models import AuditCheckpoint
from lab.audit.signer import checkpoint_write
from lab.customer_data.receipts import _latest_checkpoint
from tests.builders import audit_write
from tests.support.audit_insiders import as_app_role

pytestmark = pytest.mark.django_db
JUNK = {"not JSON": "not json", "nested brackets": "[" * 100000, "JSON, not lanes": "[[1]]"}


@pytest.fixture
def lab_log(settings) -> None:
    """30 records, a checkpoint signed and witnessed after every 10 (seqs 10, 20, 30); alerts go out."""
    settings.AUDIT_ALERT_EMAILS = ["auditors@printlab.example"]
    settings.LAB_NAME = "Print Lab"
    for _ in range(3):
        audit_write(10)
        checkpoint_write()


def insert_junk_row(lanes: str) -> int:
    """What the app's role may do: INSERT a checkpoint row, here of seq 5 with junk for lanes."""
    with as_app_role():
        row = AuditCheckpoint.objects.create(
            seq=5,
            head_hash="0" * 64,
            signed_at="2026-01-01T00:00:00.000000Z",
            key_id=key_id(),
            signature="AAAA",
            reason="schedule",
            lanes=lanes,
        )
    return row.pk


@pytest.mark.parametrize("junk", JUNK)
def test_audit_verify_names_a_checkpoint_row_with_junk_lanes(lab_log: None, junk: str):
    # given the junk row
    pk = insert_junk_row(JUNK[junk])
    # when the lab verifies, then the row is named
    with pytest.raises(CommandError) as failed:
        call_command("audit_verify")
    assert str(failed.value).startswith(
        f"TAMPERED: malformed at seq 5: checkpoint row {pk} (seq 5, signed at '2026-01-01T00:00:00.000000Z'):"
        " its lanes are not a checkpoint's ("
    ), str(failed.value)


@pytest.mark.parametrize("junk", JUNK)
def test_the_export_writes_both_files_and_names_the_row(
    lab_log: None, tmp_path: Path, mailoutbox: list[EmailMessage], junk: str
):
    # given the junk row
    pk = insert_junk_row(JUNK[junk])
    path = tmp_path / "audit.jsonl"
    # when an auditor exports
    outcome = audit_export(path=path, actor_id="auditor-1", actor_role="auditor")
    # then both files hold what could be read, nothing was signed, the row is named and the auditors told
    assert outcome.problem is not None
    assert (outcome.problem.kind, outcome.problem.seq, outcome.records, outcome.checkpoints) == (
        "malformed",
        5,
        30,
        3,
    )
    assert f"checkpoint row {pk} " in outcome.problem.message
    assert len(path.read_text().splitlines()) == 30
    checkpoints = path.with_suffix(".checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in checkpoints] == [10, 20, 30]
    assert AuditCheckpoint.objects.count() == 4
    assert [message.subject for message in mailoutbox] == [
        "[Print Lab] audit checkpoint refused: malformed at seq 5"
    ]


def test_a_receipt_is_anchored_to_no_checkpoint_rather_than_never_issued(lab_log: None):
    # given the junk row, the newest
    insert_junk_row("not json")
    # when a receipt's anchor is read, then there is none
    assert _latest_checkpoint(key_id=key_id()) is None
