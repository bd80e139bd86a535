"""The test command's own databases (tests/support/run_databases.py): a template a run cut short left behind
is dropped by the next run that makes one, and nothing else is: not the new run's own, not another test
database's, not one another run is copying right now. Each case names its databases with a token of its own,
so the runs going on beside it (other xdist workers, another checkout's run) are never touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from tests.support import run_databases
from tests.support.run_databases import TEMPLATE_INFIX


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Databases a case makes, dropped at its end whatever it did."""
    assert connection.vendor == "postgresql"  # the suite runs on PostgreSQL: never skipped
    made: list[str] = []
    yield made
    with run_databases._maintenance(connection) as maintenance:
        for name in made:
            maintenance.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def databases_named(prefix: str) -> set[str]:
    with run_databases._maintenance(connection) as maintenance:
        rows = maintenance.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix]
        ).fetchall()
    return {name for (name,) in rows}


def made(names: list[str], *wanted: str) -> None:
    with run_databases._maintenance(connection) as maintenance:
        for name in wanted:
            names.append(name)
            maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def test_a_template_a_cut_short_run_left_is_dropped_by_the_next_and_nothing_else(names: list[str]) -> None:
    # given the templates of two cut-short runs of one test database, another test database's template,
    # and the test database itself (no template infix)
    base = f"test_probe_{uuid.uuid4().hex[:8]}"
    current = f"{base}{TEMPLATE_INFIX}now00000"
    stale = [f"{base}{TEMPLATE_INFIX}old{n:05d}" for n in range(2)]
    other_base = f"test_probe_{uuid.uuid4().hex[:8]}{TEMPLATE_INFIX}other000"
    made(names, current, *stale, other_base, base)

    # when a new run, having made `current`, drops the stale ones
    with run_databases._maintenance(connection) as maintenance:
        run_databases._stale_templates_drop(maintenance, current)

    # then the cut-short runs' templates are gone, and the new run's, the other database's template and the
    # test database are kept
    assert databases_named(base) == {base, current}
    assert databases_named(other_base) == {other_base}


def test_a_template_another_run_is_copying_is_left_to_that_run(names: list[str]) -> None:
    # given an older template a session is connected to (another run copying it into a worker's database)
    base = f"test_probe_{uuid.uuid4().hex[:8]}"
    current = f"{base}{TEMPLATE_INFIX}now00000"
    in_use = f"{base}{TEMPLATE_INFIX}busy0000"
    made(names, current, in_use)
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=in_use,
        host=settings.get("HOST") or None,
        port=settings.get("PORT") or None,
        user=settings.get("USER") or None,
        password=settings.get("PASSWORD") or None,
    ):
        # when the new run drops stale templates
        with run_databases._maintenance(connection) as maintenance:
            run_databases._stale_templates_drop(maintenance, current)

        # then the busy one is kept (its run drops it), with no error for the run that tried
        assert databases_named(base) == {current, in_use}
