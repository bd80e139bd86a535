"""A database restored from a backup, as far as the audit log sees it, inside the test's transaction: pg_dump
sees committed rows only (the drill, tests/deploy/test_restore_drill.py, commits them and restores a real
dump: tests/support/pg_dump_restore.py), so a backup notes what the dump held of the audit tables (the records
up to a seq, the checkpoint rows up to a pk, every lane's head, the record sequence's value) and the restore
puts the tables back to it as the PostgreSQL superuser does (triggers off): later records and checkpoint rows
deleted, the heads and the sequence set back. Nothing outside the database (the witness log) goes back."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from lab.audit.models import AuditCheckpoint, AuditHead, AuditRecord


@dataclass(frozen=True)
class AuditBackup:
    last_seq: int
    last_checkpoint_pk: int
    heads: tuple[tuple[int, int, str], ...]  # (lane, position, hash) of every head row
    sequence: int


def audit_backup() -> AuditBackup:
    """What a dump taken now holds of the audit tables."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM audit_auditrecord_seq")
        row = cursor.fetchone()
    assert row is not None
    return AuditBackup(
        last_seq=max(AuditRecord.objects.values_list("seq", flat=True), default=0),
        last_checkpoint_pk=max(AuditCheckpoint.objects.values_list("pk", flat=True), default=0),
        heads=tuple(AuditHead.objects.order_by("id").values_list("id", "seq", "hash")),
        sequence=int(row[0]),
    )


def audit_restore_from(backup: AuditBackup) -> None:
    """The audit tables as restoring that dump leaves them (the rest of the database is not the audit log's
    concern here)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM audit_reviewitem WHERE record_id > %s", [backup.last_seq])
        cursor.execute("DELETE FROM audit_auditrecord WHERE seq > %s", [backup.last_seq])
        cursor.execute("DELETE FROM audit_auditcheckpoint WHERE id > %s", [backup.last_checkpoint_pk])
        cursor.execute(
            "DELETE FROM audit_audithead WHERE NOT (id = ANY(%s))", [[head[0] for head in backup.heads]]
        )
        for lane, position, head_hash in backup.heads:
            cursor.execute(
                "UPDATE audit_audithead SET seq = %s, hash = %s WHERE id = %s", [position, head_hash, lane]
            )
        cursor.execute("SELECT setval('audit_auditrecord_seq', %s)", [backup.sequence])
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


_AUDIT_TABLES = ("audit_auditrecord", "audit_auditcheckpoint", "audit_audithead")


def audit_dump(name: str) -> None:
    """A dump of the audit tables as they are now, kept under `name` (tables in the test's database, gone with
    its transaction): unlike audit_backup, restoring it brings back rows deleted since, as restoring an
    older backup after a newer one does."""
    with connection.cursor() as cursor:
        for table in _AUDIT_TABLES:
            cursor.execute(f"CREATE TABLE {name}_{table} AS SELECT * FROM {table}")
        cursor.execute(f"CREATE TABLE {name}_sequence AS SELECT last_value FROM audit_auditrecord_seq")


def audit_load(name: str) -> None:
    """The audit tables as restoring the dump `name` leaves them (every row of them replaced, the record
    sequence set back; the review items, which point at records, emptied)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM audit_reviewitem")
        for table in _AUDIT_TABLES:
            cursor.execute(f"DELETE FROM {table}")
            cursor.execute(f"INSERT INTO {table} SELECT * FROM {name}_{table}")
        cursor.execute(f"SELECT setval('audit_auditrecord_seq', (SELECT last_value FROM {name}_sequence))")
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")
