"""A checkpoint beat missed is made up a tick later, and the gap one missed checkpoint leaves never hides a
later tampering: beat sends audit.checkpoint every quarter interval, the task signs only when the witness's
last checkpoint is due for its next (on the database's clock), and both verifiers name a problem of the log's
integrity before one of the signer's liveness (coverage_gap, stale_witness)."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from lab.audit.canonical import utc_timestamp
from lab.audit.checkpoints import Checkpoint, checkpoint_lanes, sign_checkpoint
from lab.audit.configured import signing_key, witness_sink
from lab.audit.models import AuditCheckpoint, AuditRecord
from lab.audit.signer import AuditChainBroken, checkpoint_write
from lab.audit.witness import FileWitness
from lab.audit.witness_check import parse_timestamp
from tests.builders import audit_write
from tests.support.audit_insiders import as_superuser
from tests.support.audit_verifiers import audit_verify_says, export_for_auditors, offline_verifier, witness_at
from tests.support.clock import host_clock_off
from workers.tasks import audit_checkpoint

pytestmark = pytest.mark.django_db
HOUR = 3600


def _one_send_lost(tmp_path: Path) -> Path:
    """20 records and the witness one lost hourly send leaves: seq 10 signed two intervals and a second
    before seq 20, signed now."""
    audit_write(20)
    hashes = dict(AuditRecord.objects.values_list("seq", "hash"))
    witness = tmp_path / "witness.jsonl"
    witness_at(witness, [(10, hashes[10], timedelta(hours=2, seconds=1)), (20, hashes[20], timedelta(0))])
    return witness


def _witnessed() -> list[Checkpoint]:
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    return sink.read_all()[0]


# --- the verifiers: integrity before liveness ----------------------------------------------------------


def test_audit_verify_names_a_deletion_after_a_coverage_gap_not_the_gap(tmp_path: Path, settings) -> None:
    # given the gap one lost checkpoint left, and a DBA deleting seq 14 inside it
    settings.AUDIT_CHECKPOINT_SECONDS = HOUR
    witness = _one_send_lost(tmp_path)
    as_superuser("DELETE FROM audit_auditrecord WHERE seq = 14")
    # when audit_verify checks the log against the witness
    said = audit_verify_says("--witness", str(witness))
    # then the deletion is named (before: "coverage_gap at seq 11", for good, whatever came later)
    assert said.startswith("TAMPERED: seq_gap at seq 14:"), said


def test_the_offline_verifier_names_a_deletion_after_a_coverage_gap_not_the_gap(
    tmp_path: Path, settings
) -> None:
    # given the same gap and deletion, then the lab's export
    settings.AUDIT_CHECKPOINT_SECONDS = HOUR
    witness = _one_send_lost(tmp_path)
    as_superuser("DELETE FROM audit_auditrecord WHERE seq = 14")
    export = export_for_auditors(tmp_path)
    # when the auditor verifies it with the record key, the witness and the lab's interval
    completed = offline_verifier(export, witness, interval=True)
    # then the deletion is named
    assert completed.stderr == ""
    assert completed.stdout.startswith("TAMPERED: seq_gap at seq 14,"), completed.stdout


def test_a_coverage_gap_alone_is_still_named(tmp_path: Path, settings) -> None:
    # given the gap one lost checkpoint left, and nothing else wrong
    settings.AUDIT_CHECKPOINT_SECONDS = HOUR
    witness = _one_send_lost(tmp_path)
    # when verified / then the unwitnessed window is named, as before
    said = audit_verify_says("--witness", str(witness))
    assert said.startswith("TAMPERED: coverage_gap at seq 11:"), said
    assert "seqs 11..20 were written in an unwitnessed window" in said


# --- the scheduled signer: a tick at a time ------------------------------------------------------------


def test_the_scheduled_task_signs_the_first_checkpoint_and_then_none_until_one_is_due(settings) -> None:
    # given a lab whose witness holds no checkpoint
    settings.AUDIT_CHECKPOINT_SECONDS = HOUR
    audit_write(3)
    # when beat's task runs / then it signs
    audit_checkpoint()
    assert AuditCheckpoint.objects.count() == 1
    # when it runs again a tick later, records written since / then it signs nothing (before: every send
    # signed, sent once an interval)
    audit_write(2)
    audit_checkpoint()
    assert AuditCheckpoint.objects.count() == 1
    assert [checkpoint.seq for checkpoint in _witnessed()] == [3]
    # and a caller that signs now (an export, a command) still does
    checkpoint_write(reason="export")
    assert [checkpoint.seq for checkpoint in _witnessed()] == [3, 5]


def test_the_scheduled_task_signs_once_the_last_checkpoint_is_an_interval_less_half_a_tick_old(
    settings,
) -> None:
    # given a checkpoint just signed, with an interval of 2 s (a tick of 0.5 s: due after 1.75 s)
    settings.AUDIT_CHECKPOINT_SECONDS = 2
    audit_write(3)
    first = checkpoint_write()
    # when beat's task runs right after it, and again a second later / then it signs nothing
    audit_checkpoint()
    time.sleep(1.0)
    audit_checkpoint()
    assert AuditCheckpoint.objects.count() == 1
    # when it runs once the checkpoint is more than an interval less half a tick old / then it signs one
    time.sleep(0.8)
    audit_checkpoint()
    rows = list(AuditCheckpoint.objects.order_by("pk"))
    assert len(rows) == 2 and rows[1].reason == "schedule"
    waited = parse_timestamp(rows[1].signed_at) - parse_timestamp(first.signed_at)
    assert waited >= timedelta(seconds=1.75)


def test_the_scheduled_task_judges_due_on_the_database_s_clock(settings, monkeypatch) -> None:
    # given a checkpoint just signed
    settings.AUDIT_CHECKPOINT_SECONDS = HOUR
    audit_write(3)
    checkpoint_write()
    # when beat's task runs on a worker whose clock is two hours ahead / then it signs nothing
    with host_clock_off(timedelta(hours=2), monkeypatch):
        audit_checkpoint()
    assert AuditCheckpoint.objects.count() == 1


# --- beat and the worker -------------------------------------------------------------------------------


def test_beat_sends_the_checkpoint_task_every_quarter_interval() -> None:
    from lab.celery import app

    entry = app.conf.beat_schedule["audit-checkpoint"]
    assert entry["task"] == "audit.checkpoint"
    assert entry["schedule"] == django_settings.AUDIT_CHECKPOINT_SECONDS / 4


def test_the_checkpoint_task_outlasts_a_lane_held_until_the_idle_in_transaction_cut() -> None:
    # settling waits for a lane a frozen writer holds until the database cuts it off; killed before, the run
    # signed nothing
    cut = django_settings.DATABASE_IDLE_IN_TRANSACTION_SECONDS
    assert audit_checkpoint.soft_time_limit is not None and audit_checkpoint.soft_time_limit > cut + 30
    assert (
        audit_checkpoint.time_limit is not None
        and audit_checkpoint.time_limit > audit_checkpoint.soft_time_limit
    )


# --- a witness line the scheduled signer must not believe ------------------------------------------------


def _append_to_witness(checkpoint: Checkpoint) -> None:
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    with sink.path.open("a") as witness:
        witness.write(checkpoint.to_line() + "\n")


@pytest.mark.parametrize(
    "forged_at", ["2999-01-01T00:00:00.000000Z", "2026-13-45T99:99:99.000000Z"], ids=["ahead", "no-date"]
)
def test_a_forged_witness_line_dated_ahead_or_with_no_date_does_not_quiet_the_scheduled_signer(
    settings, mailoutbox, forged_at
) -> None:
    # given a checkpoint signed, then a line appended to the witness that copies it with another date (so its
    # signature no longer holds): what anyone who may only append to the witness can write
    settings.AUDIT_CHECKPOINT_SECONDS = HOUR
    settings.AUDIT_ALERT_EMAILS = ["auditors@lab.example"]
    audit_write(3)
    signed = checkpoint_write()
    last = witness_sink().last()
    assert last is not None and last.seq == signed.seq
    _append_to_witness(dataclasses.replace(last, signed_at=forged_at))

    # when beat's task runs / then it refuses and alerts (before: it read the forged date as the last
    # checkpoint's and signed nothing, every tick, without a word; or crashed on a date that is no date)
    with pytest.raises(AuditChainBroken, match="bad_checkpoint_signature"):
        audit_checkpoint()
    assert len(mailoutbox) == 1 and "bad_checkpoint_signature" in mailoutbox[0].subject


def test_a_checkpoint_signed_ahead_of_the_database_s_clock_is_due_and_the_signer_says_it_cannot_go_on(
    settings, mailoutbox
) -> None:
    # given the witness's last checkpoint signed by the lab's key an hour ahead of the database's clock now
    # (the database's clock stepped back: a failover to a host whose clock is behind)
    settings.AUDIT_CHECKPOINT_SECONDS = HOUR
    settings.AUDIT_ALERT_EMAILS = ["auditors@lab.example"]
    audit_write(3)
    checkpoint_write()
    last = witness_sink().last()
    assert last is not None
    ahead = utc_timestamp(timezone.now() + timedelta(hours=1))
    _append_to_witness(
        sign_checkpoint(
            private_key=signing_key(),
            key_id=last.key_id,
            seq=last.seq,
            head_hash=last.head_hash,
            signed_at=ahead,
            lanes=checkpoint_lanes(last),
            is_settled=True,
        )
    )

    # when beat's task runs / then it tries to sign, and the witness refuses a checkpoint older than its
    # last, which alerts (before: the task took the checkpoint for fresh and signed nothing, silently, until
    # the database's clock caught up)
    with pytest.raises(AuditChainBroken, match="witness_unwritable"):
        audit_checkpoint()
    assert len(mailoutbox) == 1
