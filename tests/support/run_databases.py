"""The run's test databases on PostgreSQL: migrated once per run, not once per xdist worker.

The first worker to take the run's advisory lock migrates its own test database as pytest-django always did,
then copies it into the run's template (`CREATE DATABASE … TEMPLATE`, a file copy); every other worker makes
its database from that template. Each of the 104 migrations replays Django's model state, ~10 s of CPU per
database on this box; three workers on two cores paid it three times at the start of every run. The test
controller names the template (one per run, `pytest_configure_node`) and drops it at the end; a template a
cut-short run left is dropped by the next run that makes one.

`schema_dump` writes what the migrations made (the pristine test database, `pg_dump -Fc`) for the private
PostgreSQL clusters the fault tests start and restart: restored in under a second where `migrate` took ~10 s
of CPU in a fresh process, and the same schema, triggers and seed rows (`PrivatePostgres.create_database`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.creation import TEST_DATABASE_PREFIX
from psycopg import sql

from tests.support.pg_dump_restore import database_dump

WORKER_INPUT_KEY = "lab_test_database_template"
TEMPLATE_INFIX = "_template_"

# What pytest-django's teardown takes: (connection, the name to restore, whether to drop the test database).
DatabaseConfig = list[tuple[BaseDatabaseWrapper, str, bool]]


def template_name(connection: BaseDatabaseWrapper) -> str:
    """A new run's template: the test database's name (before xdist's suffix) and a token of the run."""
    base = _test_database_name(connection)
    return f"{base}{TEMPLATE_INFIX}{uuid.uuid4().hex[:8]}"[:63]


def worker_database_from_template(
    connection: BaseDatabaseWrapper, template: str, migrate: Any
) -> DatabaseConfig:
    """This worker's test database, made from the run's `template`; `migrate()` (pytest-django's set-up,
    which migrates the test database and returns its config) runs only in the worker that makes it."""
    test_name = _test_database_name(connection)
    old_name = str(connection.settings_dict["NAME"])
    with _maintenance(connection) as maintenance, _run_lock(maintenance, template):
        if _exists(maintenance, template):
            maintenance.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(test_name)))
            maintenance.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(test_name), sql.Identifier(template)
                )
            )
            # What Django's create_test_db leaves behind (the migrate and the cache table came with the copy).
            connection.close()
            settings.DATABASES[connection.alias]["NAME"] = test_name
            connection.settings_dict["NAME"] = test_name
            connection.ensure_connection()
            return [(connection, old_name, True)]
        config: DatabaseConfig = migrate()
        _stale_templates_drop(maintenance, template)
        connection.close()  # a database being copied has no other session
        maintenance.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(template), sql.Identifier(test_name)
            )
        )
        return config


def template_drop(connection: BaseDatabaseWrapper, template: str) -> None:
    with _maintenance(connection) as maintenance:
        maintenance.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(template)))


def schema_dump(path: Path) -> Path:
    """`pg_dump -Fc` of the test database as the migrations left it: call it before any test writes."""
    return database_dump(path)


def _test_database_name(connection: BaseDatabaseWrapper) -> str:
    """The name Django's create_test_db gives it (TEST NAME, pytest-django's xdist suffix included)."""
    return str(
        connection.settings_dict["TEST"]["NAME"] or TEST_DATABASE_PREFIX + connection.settings_dict["NAME"]
    )


@contextmanager
def _maintenance(connection: BaseDatabaseWrapper) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the server's `postgres` database as the test role, outside any transaction."""
    settings_dict = connection.settings_dict
    with psycopg.connect(
        dbname="postgres",
        host=settings_dict.get("HOST") or None,
        port=settings_dict.get("PORT") or None,
        user=settings_dict.get("USER") or None,
        password=settings_dict.get("PASSWORD") or None,
        autocommit=True,
    ) as maintenance:
        yield maintenance


@contextmanager
def _run_lock(maintenance: psycopg.Connection[Any], template: str) -> Iterator[None]:
    """The run's workers one at a time: the first makes the template, the others wait and copy it."""
    maintenance.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [template])
    try:
        yield
    finally:
        maintenance.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [template])


def _exists(maintenance: psycopg.Connection[Any], name: str) -> bool:
    return maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _stale_templates_drop(maintenance: psycopg.Connection[Any], template: str) -> None:
    """Templates of the same test database that runs cut short left (the controller drops its own)."""
    prefix = template[: template.index(TEMPLATE_INFIX) + len(TEMPLATE_INFIX)]
    stale = maintenance.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s) AND datname <> %s", [prefix, template]
    ).fetchall()
    for (name,) in stale:
        # One another run is copying right now is that run's to drop.
        with contextlib.suppress(psycopg.errors.ObjectInUse):
            maintenance.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
