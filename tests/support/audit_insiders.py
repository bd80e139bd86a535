"""The audit log's insiders as the threat model names them (README, "Threat model of the audit log"): the
PostgreSQL superuser, who switches triggers off, and the app's own database role, which owns no table. Plain
SQL on the tables, so no app code runs and nothing is sealed or recorded on their behalf."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import connection, transaction

from lab.audit.canonical import EXPORT_FIELDS_LANED

APP_ROLE = "printlab_audit_test_app"
SqlValue = str | int | datetime | None


def as_superuser(sql: str, *params: SqlValue) -> None:
    """One statement with every trigger off (replication mode, for this transaction only)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def app_role_create() -> str:
    """A login-less role like the one the app runs as in production: not a superuser, owns nothing, granted
    every data privilege on every table (more than the app needs, TRUNCATE included)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DO $$ BEGIN CREATE ROLE {APP_ROLE} NOSUPERUSER NOLOGIN;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}"
        )
        cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    return APP_ROLE


@contextmanager
def as_app_role() -> Iterator[None]:
    """What runs inside is done as the app's role, in a savepoint (or transaction) of its own. A statement
    refused inside rolls that back, and with it the SET LOCAL: the role ends either way."""
    role = app_role_create()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {role}")
        yield
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


def record_insert_sql(record: dict[str, object]) -> tuple[str, list[SqlValue]]:
    """An INSERT of a record as anyone who may insert can send it: every stored column; a record from before
    lanes is stored as migration audit/0006 left them, lane 1 with no lane_seq."""
    stored = {"lane": 1, "lane_seq": None, **record}
    values: list[SqlValue] = []
    for name in EXPORT_FIELDS_LANED:
        value = stored[name]
        assert value is None or isinstance(value, str | int), f"not a record field's value: {value!r}"
        values.append(value)
    placeholders = ", ".join(["%s"] * len(values))
    return (
        f"INSERT INTO audit_auditrecord ({', '.join(EXPORT_FIELDS_LANED)}) VALUES ({placeholders})",
        values,
    )
