"""The witness and the erasure log are append-only JSONL, fsync'd (lab/lib/append_only.write_whole): the
witness file on each checkpoint, and an erasure's line before its owed row is deleted."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import transaction

from lab.audit.signer import checkpoint_write
from lab.customer_data.erasure_log import KIND_ACCOUNT, erasure_log_owed
from lab.customer_data.models import ErasureLogPending
from tests.builders import audit_write
from tests.support.audit_verifiers import witness_path

pytestmark = pytest.mark.django_db


@pytest.fixture
def fsynced(monkeypatch) -> list[tuple[str, int]]:
    """Each fsync, with the path of what it synced and how many erasure rows were still owed then. The real
    calls are made."""
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), ErasureLogPending.objects.count()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_a_witnessed_checkpoint_is_fsynced_to_the_witness_file(fsynced):
    # given records to sign
    audit_write(2)
    # when the signer writes a checkpoint
    checkpoint_write()
    # then the witness file itself was fsynced
    assert str(witness_path().resolve()) in [path for path, _ in fsynced], fsynced


def test_an_erasure_log_line_is_fsynced_before_its_owed_row_is_deleted(
    fsynced, settings, tmp_path: Path, django_capture_on_commit_callbacks
):
    # given this test's own erasure log
    log = tmp_path / "erasure-log" / "erasures.log"
    settings.LAB_ERASURE_LOG = str(log)
    # when an erasure commits and its entry is written after the commit
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        erasure_log_owed(
            kind=KIND_ACCOUNT, subject="00000000-0000-4000-8000-000000000001", erased_at=datetime.now(UTC)
        )
    # then the log file was fsynced while its row was still owed, and the row is gone after
    assert (str(log.resolve()), 1) in fsynced, fsynced
    assert not ErasureLogPending.objects.exists()
    assert log.read_bytes().count(b"\n") == 1
