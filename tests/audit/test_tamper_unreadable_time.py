"""A record's time set by the superuser to one PostgreSQL holds but no Python datetime can (infinity, a BC
date, year 10000 or later): `audit_verify`, the signer and the export name the record by its seq instead of
dying on a DataError that names none (the signer used to raise it without alerting anyone, and the export
left a truncated records file and no checkpoints file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.core.management.base import CommandError

from lab.audit.configured import public_key, witness_sink
from lab.audit.export import audit_export
from lab.audit.keys import public_key_b64
from lab.audit.models import AuditCheckpoint
from lab.audit.signer import AuditChainBroken, checkpoint_write
from lab.audit.witness import FileWitness
from tests.builders import audit_write
from tests.support.audit_insiders import as_superuser

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
UNREADABLE_TIMES = ["infinity", "-infinity", "0044-03-15 12:00:00+00 BC", "10000-01-01 00:00:00+00"]


@pytest.fixture
def lab_log(settings) -> FileWitness:
    """20 records, the first 10 witnessed (seq 10), so the signer walks seqs 11..20; alerts go out."""
    settings.AUDIT_ALERT_EMAILS = ["auditors@printlab.example"]
    settings.LAB_NAME = "Print Lab"
    audit_write(10)
    checkpoint_write()
    audit_write(10)
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    return sink


def set_time(seq: int, value: str) -> None:
    as_superuser("UPDATE audit_auditrecord SET occurred_at = %s::timestamptz WHERE seq = %s", value, seq)


@pytest.mark.parametrize("value", UNREADABLE_TIMES)
@pytest.mark.parametrize("seq", [5, 15], ids=["witnessed", "after-the-witness"])
def test_audit_verify_names_the_record_whose_time_cannot_be_read(lab_log: FileWitness, value: str, seq: int):
    # given one record's time set to a value no datetime holds
    set_time(seq, value)
    # when the lab verifies its log
    with pytest.raises(CommandError) as failed:
        call_command("audit_verify", "--witness", str(lab_log.path))
    # then that record is named by its seq
    assert str(failed.value).startswith(f"TAMPERED: bad_time at seq {seq}: "), str(failed.value)
    assert value.split(" ")[0] in str(failed.value)


def test_the_signer_alerts_and_signs_nothing_over_a_record_whose_time_cannot_be_read(
    lab_log: FileWitness, mailoutbox: list[EmailMessage]
):
    # given record 15's time set to infinity
    set_time(15, "infinity")
    # when beat wants a checkpoint
    with pytest.raises(AuditChainBroken, match="bad_time at seq 15"):
        checkpoint_write()
    # then nothing was signed and the auditors were told which record
    assert [checkpoint.seq for checkpoint in lab_log.read_all()[0]] == [10]
    assert AuditCheckpoint.objects.count() == 1
    assert [message.subject for message in mailoutbox] == [
        "[Print Lab] audit checkpoint refused: bad_time at seq 15"
    ]


def test_the_export_writes_both_files_as_found_and_names_the_record(
    lab_log: FileWitness, tmp_path: Path, mailoutbox: list[EmailMessage]
):
    # given record 15's time set to a BC date
    set_time(15, "0044-03-15 12:00:00+00 BC")
    path = tmp_path / "audit.jsonl"
    # when an auditor exports
    outcome = audit_export(path=path, actor_id="auditor-1", actor_role="auditor")
    # then the export holds every record (record 15 with its time as the database spells it) and every
    # checkpoint, the problem is named, and the auditors were told
    assert outcome.problem is not None
    assert (outcome.problem.kind, outcome.problem.seq, outcome.records, outcome.checkpoints) == (
        "bad_time",
        15,
        20,
        1,
    )
    lines = path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 21))
    assert json.loads(lines[14])["occurred_at"] == "0044-03-15 12:00:00+00 BC"
    checkpoints = path.with_suffix(".checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in checkpoints] == [10]
    assert [message.subject for message in mailoutbox] == [
        "[Print Lab] audit checkpoint refused: bad_time at seq 15"
    ]
    # and the offline verifier names the record too (its hash no longer covers its time)
    said = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.audit.verify",
            str(path),
            "--public-key",
            public_key_b64(public_key()),
            "--record-key",
            settings.AUDIT_RECORD_KEY,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    ).stdout
    assert said.startswith("TAMPERED: hash_mismatch at seq 15, line 15 of"), said


def test_the_export_command_names_the_record_and_writes_both_files(lab_log: FileWitness, tmp_path: Path):
    # given record 15's time set to year 10000
    set_time(15, "10000-01-01 00:00:00+00")
    path = tmp_path / "audit.jsonl"
    # when the operator exports
    with pytest.raises(CommandError, match=r"did NOT sign it: TAMPERED: bad_time at seq 15: "):
        call_command("audit_export", str(path))
    # then both files are there, whole
    assert len(path.read_text().splitlines()) == 20
    assert len(path.with_suffix(".checkpoints.jsonl").read_text().splitlines()) == 1
