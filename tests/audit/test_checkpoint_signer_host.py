"""Only the signer's worker signs beat's checkpoints (LAB_AUDIT_SIGNER, false in every unit but
printlab-audit): a checkpoint task that reaches any other worker (a forged send to `default`, whose hosts
hold a read-only witness) signs nothing and tells nobody, so it can raise no false alarm."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.core import mail

from lab.audit.models import AuditCheckpoint
from tests.builders import audit_write
from workers.tasks import audit_checkpoint

pytestmark = pytest.mark.django_db
SIGNER_SETTING = "Environment=LAB_AUDIT_SIGNER="


def test_a_worker_that_is_not_the_signer_signs_no_checkpoint_and_mails_nobody(
    settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given a worker that is not the signer, with auditors to mail and records to sign
    settings.LAB_AUDIT_SIGNER = False
    settings.AUDIT_WITNESS_EMAILS = ["auditor@lab.example"]
    settings.AUDIT_ALERT_EMAILS = ["auditor@lab.example"]
    audit_write(3)
    witness = tmp_path / "audit-witness" / "checkpoints.jsonl"

    # when beat's checkpoint task reaches it
    with caplog.at_level(logging.INFO, logger="workers.tasks"):
        audit_checkpoint()

    # then nothing is signed, witnessed or mailed, and the log says why
    assert AuditCheckpoint.objects.count() == 0
    assert not witness.exists() or witness.read_text() == ""
    assert mail.outbox == []
    assert "audit checkpoint not signed: this worker is not the signer" in caplog.text


def test_a_worker_that_is_not_the_signer_raises_no_alarm_over_a_witness_it_cannot_write(
    settings, tmp_path: Path
) -> None:
    # given a worker that is not the signer whose witness cannot be written (a file where its folder
    # should be: refused even to root), and auditors to alert
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings.AUDIT_WITNESS = (blocker / "checkpoints.jsonl").as_uri()
    settings.LAB_AUDIT_SIGNER = False
    settings.AUDIT_ALERT_EMAILS = ["auditor@lab.example"]
    audit_write(3)

    # when a forged checkpoint task reaches it
    audit_checkpoint()

    # then no "checkpoint refused" alarm goes out
    assert mail.outbox == []
    assert AuditCheckpoint.objects.count() == 0


def test_the_signer_still_signs_and_mails_its_checkpoint(settings) -> None:
    # given the signer (the default: the embedded lab's one worker)
    assert settings.LAB_AUDIT_SIGNER is True
    settings.AUDIT_WITNESS_EMAILS = ["auditor@lab.example"]
    audit_write(3)

    audit_checkpoint()

    assert AuditCheckpoint.objects.count() == 1
    assert [message.to for message in mail.outbox] == [["auditor@lab.example"]]


def test_in_the_reference_deployment_only_the_audit_worker_is_the_signer() -> None:
    units = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
    signer = {
        path.name: [line for line in path.read_text().splitlines() if line.startswith(SIGNER_SETTING)]
        for path in sorted(units.glob("*.service"))
    }
    not_signer = ["Environment=LAB_AUDIT_SIGNER=false"]

    assert signer.pop("printlab-audit.service") == ["Environment=LAB_AUDIT_SIGNER=true"]
    assert len(signer) >= 9
    assert {name: lines for name, lines in signer.items() if lines != not_signer} == {}
