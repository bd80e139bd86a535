"""One damaged witness line (a torn append, bytes written by someone else) used to stop the signer without a
word (the witness's reader raised before the signer could alert), made the export write no file at all, and
a short write was never checked, so the next checkpoint was joined onto the torn line. Now the signer alerts
and signs nothing, the export writes both files and names the witness line, and an append writes a whole
line or reports the witness torn: a torn tail is reported, never extended."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.core.management.base import CommandError

from lab.audit.configured import witness_sink
from lab.audit.export import audit_export
from lab.audit.models import AuditCheckpoint
from lab.audit.signer import AuditChainBroken, checkpoint_write
from lab.audit.witness import FileWitness
from tests.builders import audit_write

pytestmark = pytest.mark.django_db
TORN = b'{"seq":'


@pytest.fixture
def lab_log(settings) -> FileWitness:
    """30 records, a checkpoint signed and witnessed after every 10 (seqs 10, 20, 30); alerts go out."""
    settings.AUDIT_ALERT_EMAILS = ["auditors@printlab.example"]
    settings.LAB_NAME = "Print Lab"
    for _ in range(3):
        audit_write(10)
        checkpoint_write()
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    return sink


def tear(sink: FileWitness) -> bytes:
    """`printf '{"seq":' >> checkpoints.jsonl`; returns the witness as it then is."""
    with sink.path.open("ab") as witness_file:
        witness_file.write(TORN)
    return sink.path.read_bytes()


def test_a_torn_witness_line_makes_the_signer_alert_and_sign_nothing(
    lab_log: FileWitness, mailoutbox: list[EmailMessage]
):
    # given a torn fourth line in the witness
    damaged = tear(lab_log)
    audit_write(2)
    # when beat wants a checkpoint
    with pytest.raises(AuditChainBroken, match="witness_unreadable at line 4"):
        checkpoint_write()
    # then nothing was signed, the torn line was not extended, and the auditors were told where
    assert lab_log.path.read_bytes() == damaged
    assert AuditCheckpoint.objects.count() == 3
    assert [message.subject for message in mailoutbox] == [
        "[Print Lab] audit checkpoint refused: witness_unreadable at line 4"
    ]
    assert str(lab_log.path) in mailoutbox[0].body


def test_a_witness_line_of_nested_brackets_makes_the_signer_alert_and_sign_nothing(
    lab_log: FileWitness, mailoutbox: list[EmailMessage]
):
    # given a fourth witness line of 100000 opening brackets (json gives up on it with RecursionError, which
    # stopped the signer before its alert)
    with lab_log.path.open("ab") as witness_file:
        witness_file.write(b"[" * 100000 + b"\n")
    damaged = lab_log.path.read_bytes()
    audit_write(2)
    # when beat wants a checkpoint
    with pytest.raises(AuditChainBroken, match="witness_unreadable at line 4"):
        checkpoint_write()
    # then nothing was signed, the auditors were told where, and audit_verify names the line
    assert lab_log.path.read_bytes() == damaged
    assert AuditCheckpoint.objects.count() == 3
    assert [message.subject for message in mailoutbox] == [
        "[Print Lab] audit checkpoint refused: witness_unreadable at line 4"
    ]
    with pytest.raises(CommandError, match=r"^TAMPERED: malformed at line 4: in the witness file://"):
        call_command("audit_verify")


def test_the_export_writes_both_files_and_names_the_witness_line(
    lab_log: FileWitness, tmp_path: Path, mailoutbox: list[EmailMessage]
):
    # given a torn witness line
    tear(lab_log)
    path = tmp_path / "audit.jsonl"
    # when an auditor exports
    outcome = audit_export(path=path, actor_id="auditor-1", actor_role="auditor")
    # then both files hold everything the database has, the witness line is named, and the auditors told
    assert outcome.problem is not None
    assert (outcome.problem.kind, outcome.problem.line, outcome.records, outcome.checkpoints) == (
        "witness_unreadable",
        4,
        30,
        3,
    )
    assert str(lab_log.path) in outcome.problem.message
    assert len(path.read_text().splitlines()) == 30
    checkpoints = path.with_suffix(".checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in checkpoints] == [10, 20, 30]
    assert len(mailoutbox) == 1


def test_the_export_command_names_the_witness_line(lab_log: FileWitness, tmp_path: Path):
    # given a torn witness line
    tear(lab_log)
    path = tmp_path / "audit.jsonl"
    # when the operator exports, then it fails loudly naming the witness and its line, both files written
    with pytest.raises(
        CommandError, match=r"did NOT sign it: TAMPERED: witness_unreadable at line 4: "
    ) as failed:
        call_command("audit_export", str(path))
    assert str(lab_log.path) in str(failed.value)
    assert len(path.read_text().splitlines()) == 30
    assert len(path.with_suffix(".checkpoints.jsonl").read_text().splitlines()) == 3


def test_audit_verify_names_the_torn_witness_line(lab_log: FileWitness):
    # given a torn witness line, when the lab verifies, then the line is named
    tear(lab_log)
    with pytest.raises(CommandError, match=r"^TAMPERED: malformed at line 4: in the witness file://"):
        call_command("audit_verify")


def test_a_short_write_is_reported_and_never_extended(
    lab_log: FileWitness, monkeypatch: pytest.MonkeyPatch, mailoutbox: list[EmailMessage]
):
    # given a disk that takes 20 bytes of the next checkpoint's line and then is full
    real_write = os.write
    calls = []

    def full_disk(descriptor: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(descriptor, bytes(data)[:20])
        raise OSError(errno.ENOSPC, "No space left on device")

    audit_write(2)
    before = lab_log.path.read_bytes()
    monkeypatch.setattr("lab.audit.witness.os.write", full_disk)
    # when the signer signs
    with pytest.raises(AuditChainBroken, match="witness_unwritable at line 4"):
        checkpoint_write()
    # then the checkpoint is not stored as if witnessed, and the auditors were told
    torn = lab_log.path.read_bytes()
    assert torn.startswith(before) and len(torn) == len(before) + 20
    assert AuditCheckpoint.objects.count() == 3
    assert len(mailoutbox) == 1
    # and once the disk has room again, the next checkpoint is not joined onto the torn line
    monkeypatch.setattr("lab.audit.witness.os.write", real_write)
    with pytest.raises(AuditChainBroken, match="witness_unreadable at line 4"):
        checkpoint_write()
    assert lab_log.path.read_bytes() == torn
    assert AuditCheckpoint.objects.count() == 3


def test_a_last_line_without_its_newline_is_not_joined_onto(lab_log: FileWitness):
    # given a witness whose last line is whole but lost its newline
    unterminated = lab_log.path.read_bytes().removesuffix(b"\n")
    lab_log.path.write_bytes(unterminated)
    audit_write(2)
    # when the signer signs, then it refuses, and the witness is as it was
    with pytest.raises(AuditChainBroken, match="witness_unreadable at line 3"):
        checkpoint_write()
    assert lab_log.path.read_bytes() == unterminated
    assert AuditCheckpoint.objects.count() == 3


def test_a_witness_folder_the_process_cannot_write_makes_the_signer_alert_and_the_export_still_write(
    lab_log: FileWitness, settings, tmp_path: Path, mailoutbox: list[EmailMessage]
):
    # given a witness whose folder cannot be made (as under a systemd sandbox that does not list it writable;
    # a regular file stands in for the read-only mount, since the suite may run as root)
    blocked = tmp_path / "read-only-mount"
    blocked.write_bytes(b"")
    settings.AUDIT_WITNESS = (blocked / "audit-witness" / "checkpoints.jsonl").as_uri()
    audit_write(2)
    # when beat wants a checkpoint, then nothing is signed and the auditors are told why, naming the witness
    with pytest.raises(AuditChainBroken, match=r"witness_unwritable .*its lock file cannot be made"):
        checkpoint_write()
    assert AuditCheckpoint.objects.count() == 3
    assert [message.subject for message in mailoutbox] == [
        "[Print Lab] audit checkpoint refused: witness_unwritable (no seq)"
    ]
    assert str(blocked) in mailoutbox[0].body
    # and an export still writes both files and reports the problem (it raised a bare OSError: a 500)
    path = tmp_path / "audit.jsonl"
    outcome = audit_export(path=path, actor_id="auditor-1", actor_role="auditor")
    assert outcome.problem is not None and outcome.problem.kind == "witness_unwritable"
    assert (outcome.records, outcome.checkpoints) == (32, 3)
    assert len(path.read_text().splitlines()) == 32
