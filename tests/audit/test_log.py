"""The audit log in the database: append-only on PostgreSQL, linear under concurrent writers, verified,
checkpointed, exported and verified offline with only the pinned public key."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction

from lab.audit.canonical import GENESIS_HASH
from lab.audit.configured import public_key
from lab.audit.database_verify import audit_verify_database
from lab.audit.export import audit_export
from lab.audit.keys import public_key_b64
from lab.audit.models import AuditCheckpoint, AuditRecord
from lab.audit.signer import checkpoint_write
from tests.builders import audit_write

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditrecord SET rule = 'x' WHERE seq = 1",
        "DELETE FROM audit_auditrecord WHERE seq = 1",
        "UPDATE audit_auditcheckpoint SET seq = 99",
    ],
)
def test_postgresql_refuses_changes_to_the_log(statement):
    audit_write(2)
    checkpoint_write()

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)

    assert AuditRecord.objects.count() == 2


@pytest.mark.parametrize("table", ["audit_auditrecord", "audit_auditcheckpoint", "audit_audithead"])
def test_postgresql_refuses_truncate_whatever_is_set(table):
    audit_write(1)

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        # The setting that once let the test suite truncate opens nothing any more.
        cursor.execute("SET LOCAL lab.allow_audit_truncate = 'on'")
        cursor.execute(f"TRUNCATE {table} CASCADE")

    assert AuditRecord.objects.count() == 1


def tamper(sql: str) -> None:
    """An attacker with database-owner rights: switch the triggers off, edit, switch them on."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE audit_auditrecord DISABLE TRIGGER USER")
        cursor.execute(sql)
        cursor.execute("ALTER TABLE audit_auditrecord ENABLE TRIGGER USER")


@pytest.mark.parametrize(
    ("sql", "kind", "seq"),
    [
        ("UPDATE audit_auditrecord SET justification = 'nothing to see' WHERE seq = 4", "hash_mismatch", 4),
        ("UPDATE audit_auditrecord SET actor_id = NULL WHERE seq = 7", "hash_mismatch", 7),
        ("DELETE FROM audit_auditrecord WHERE seq = 5", "seq_gap", 5),
        ("DELETE FROM audit_auditrecord WHERE seq >= 9", "truncated_after_checkpoint", 9),
    ],
    ids=["field-changed", "field-nulled", "record-deleted", "tail-truncated"],
)
def test_audit_verify_names_the_first_broken_record(sql, kind, seq):
    audit_write(10)
    checkpoint_write()
    assert audit_verify_database().problem is None

    tamper(sql)

    problem = audit_verify_database().problem
    assert problem is not None
    assert (problem.kind, problem.seq) == (kind, seq)
    with pytest.raises(CommandError, match=f"TAMPERED: {kind} at seq {seq}"):
        call_command("audit_verify")


def test_checkpoint_is_written_even_when_nothing_happened():
    checkpoint_write()
    checkpoint_write()

    assert list(AuditCheckpoint.objects.values_list("seq", "head_hash")) == [
        (0, GENESIS_HASH),
        (0, GENESIS_HASH),
    ]
    assert audit_verify_database().problem is None


def test_export_verifies_offline_with_only_the_public_key(tmp_path):
    audit_write(5)
    path = tmp_path / "audit.jsonl"

    audit_export(path=path, actor_id="auditor-1", actor_role="auditor")
    key = tmp_path / "public.key"
    key.write_text(public_key_b64(public_key()))
    good = subprocess.run(
        [sys.executable, "-m", "lab.audit.verify", str(path), "--public-key", str(key)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("asset-2", "asset-X")
    path.write_text("\n".join(lines) + "\n")
    bad = subprocess.run(
        [sys.executable, "-m", "lab.audit.verify", str(path), "--public-key", str(key)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )

    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("OK: 6 records (seq 1..6)")
    assert AuditRecord.objects.latest("seq").action == "audit.export"
    assert bad.returncode == 1
    assert bad.stdout.startswith("TAMPERED: hash_mismatch at seq 3, line 3")


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_in_separate_processes_keep_the_chain_linear():
    env = {**os.environ, "DATABASE_URL": _database_url()}
    script = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'lab.settings'); django.setup()\n"
        "from tests.builders import audit_write\naudit_write(25)\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env) for _ in range(4)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0, 0]

    # Every record once, each lane's positions without a gap. Not seq without a gap: nextval is not
    # transactional, and a writer that took a seq before the first record of an empty log rewound the
    # sequence (lanes._FIRST_SEQ_SQL) takes another, leaving that one unused (seen under load: 1, 3, 4, …).
    seqs = list(AuditRecord.objects.values_list("seq", flat=True))
    assert len(seqs) == len(set(seqs)) == 100 and seqs[0] == 1
    by_lane: dict[int, list[int | None]] = {}
    for lane, position in AuditRecord.objects.order_by("seq").values_list("lane", "lane_seq"):
        by_lane.setdefault(lane, []).append(position)
    assert all(positions == list(range(1, len(positions) + 1)) for positions in by_lane.values())
    assert audit_verify_database().problem is None


def _database_url() -> str:
    from tests.support.celery_worker import database_url

    return database_url(connection.settings_dict)


@pytest.mark.django_db(transaction=True)
def test_two_signers_store_their_checkpoints_in_the_witness_order(monkeypatch):
    # given signer A (the schedule) about to store its checkpoint, when a record is appended and signer B
    # (an export, another connection) signs a later checkpoint
    audit_write(2)
    store = AuditCheckpoint.objects.create
    other: list[threading.Thread] = []
    failures: list[BaseException] = []
    b_waited: list[bool] = []

    def sign_elsewhere():
        try:
            checkpoint_write(reason="export")
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)
        finally:
            connections.close_all()

    def store_after_another_signer(**fields):
        if not other:
            audit_write(1)
            other.append(threading.Thread(target=sign_elsewhere))
            other[0].start()
            # B either stores its checkpoint first (the rows out of order) or waits for A to store its own
            other[0].join(timeout=3)
            b_waited.append(other[0].is_alive())
        return store(**fields)

    monkeypatch.setattr(AuditCheckpoint.objects, "create", store_after_another_signer)
    # when A signs, and B then finishes
    checkpoint_write()
    other[0].join(timeout=30)
    # then the log verifies: the rows are in the witness's order, B having waited for A to store its own
    assert (failures, other[0].is_alive()) == ([], False)
    assert audit_verify_database().problem is None
    assert list(AuditCheckpoint.objects.order_by("pk").values_list("seq", "reason")) == [
        (2, "schedule"),
        (3, "export"),
    ]
    assert b_waited == [True]
