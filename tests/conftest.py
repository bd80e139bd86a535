"""Shared fixtures: per-test settings, API clients, and localstripe, started on first use by the tests that
ask for it (`stripe_api`) and kept for the rest of the session.

The test command runs the suite in three pytest-xdist workers (`-n 3 --dist loadgroup`). Every test that
starts lab processes (the `e2e` marker) is in one of two groups, each run by one worker, first and in order:
`services`, the stacks with Celery workers or cupsd (the fault tests: restarts, kills, counted prints), and
`services-web`, web servers and Chromium, no Celery or cupsd, nothing stopped under them (`e2e(stack="web")`);
the other tests go to whichever worker is free, a module at a time. So no two Celery or CUPS stacks ever run
at once. Each worker has its own test database (pytest-django), its own Redis database as the broker (a task
one worker's tests publish is never consumed by another's Celery worker) and its own localstripe.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from tests.support.run_databases import (
    WORKER_INPUT_KEY,
    schema_dump,
    template_drop,
    template_name,
    worker_database_from_template,
)
from tests.support.stripe_server import LocalStripe

# pytest-playwright's fixtures with the Debian Chromium, one Playwright per browser module.
pytest_plugins = ["tests.support.browser", "tests.support.resolver"]

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"
SERVICES = "services"
SERVICES_WEB = "services-web"
TEMPLATE_KEY = pytest.StashKey[str]()
SCHEMA_KEY = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # The test databases are made by this conftest's django_db_setup, which keeps none and always migrates.
    for option, flag in (("reuse_db", "--reuse-db"), ("nomigrations", "--no-migrations")):
        if config.getoption(option, default=False):
            raise pytest.UsageError(f"{flag} is not supported here: each run makes its test databases afresh")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        _broker_of_worker(int(worker.removeprefix("gw")))


def _broker_of_worker(index: int) -> None:
    """xdist worker N publishes to the test command's Redis database minus 2N (the database after each is
    the broker's cache: lab.settings), and tells the processes its tests start (they read the setting)."""
    from lab.celery import app

    parts = urlsplit(str(django_settings.CELERY_BROKER_URL))
    if parts.scheme not in ("redis", "rediss") or index == 0:
        return
    database = int(parts.path.strip("/") or "0") - 2 * index
    if database < 0:
        raise pytest.UsageError(f"no Redis database left for xdist worker {index}: use fewer workers")
    url = parts._replace(path=f"/{database}").geturl()
    django_settings.CELERY_BROKER_URL = url
    os.environ["CELERY_BROKER_URL"] = url  # Celery's broker_url prefers the environment's
    app.conf.update(broker_url=url)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The groups the test command's xdist workers run (see the module's docstring); without xdist the
    markers do nothing, and the order only puts the service tests first.

    First among the hooks: xdist's own (loadgroup) reads the markers in this same hook and appends the group
    to each test's id, so a marker added after it would be ignored. That id change is also why pytest is
    pinned below 9.2 (requirements-dev.txt): pytest 9.2 keeps node ids elsewhere, xdist 3.8's change is
    lost, and the e2e tests ran on both workers at once, each fault module's private stack built twice and
    the two competing for 2 cores (pytest-xdist issue 1386). `tests/config/test_xdist_groups.py` pins it."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    items.sort(key=lambda item: not item.get_closest_marker("e2e"))


def _group(item: pytest.Item) -> str:
    """The xdist group of a test: its e2e stack's (the module docstring), else its module."""
    e2e = item.get_closest_marker("e2e")
    if e2e is None:
        return item.nodeid.split("::", 1)[0]
    return SERVICES if e2e.kwargs.get("stack") != "web" else SERVICES_WEB


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's controller names the run's template database for every worker (tests/support/run_databases)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        template = node.config.stash.setdefault(TEMPLATE_KEY, template_name(connection))
        node.workerinput[WORKER_INPUT_KEY] = template


def pytest_sessionfinish(session: pytest.Session) -> None:
    template = session.config.stash.get(TEMPLATE_KEY, None)
    if template is not None and not hasattr(session.config, "workerinput"):
        from django.db import connection

        template_drop(connection, template)


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_modify_db_settings: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """pytest-django's test database set-up, but on PostgreSQL under xdist each worker's database is a copy of
    the run's template, migrated once (tests/support/run_databases.py); and the migrated schema dumped for
    the private clusters' databases (`migrated_schema`).

    Django's flush between transactional tests truncates every table, and the audit tables refuse TRUNCATE
    for everyone. The test database's owner is a superuser, so the flush runs with triggers off
    (session_replication_role = replica, a superuser-only setting), scoped to the flush's own transaction.

    This is the power the audit design assumes a database superuser has (see the README's threat model):
    the app's own role cannot set it, and what a superuser does with it is caught by record macs and the
    witness log, not by the database.
    """
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    verbosity = request.config.option.verbose

    def migrate() -> Any:
        # The one database (DATABASES), its rows never serialized (no test asks for serialized_rollback).
        return setup_databases(verbosity=verbosity, interactive=False, serialized_aliases=set())

    template = getattr(request.config, "workerinput", {}).get(WORKER_INPUT_KEY)
    with django_db_blocker.unblock():
        if template is not None and connection.vendor == "postgresql":
            config = worker_database_from_template(connection, template, migrate)
        else:
            config = migrate()
        if connection.vendor == "postgresql":
            _flush_with_triggers_off()
            request.config.stash[SCHEMA_KEY] = schema_dump(tmp_path_factory.mktemp("schema") / "lab.dump")

    yield

    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=verbosity)


def _flush_with_triggers_off() -> None:
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush

    def sql_flush_with_triggers_off(self, style, tables, **options):
        statements = original(self, style, tables, **options)
        if not statements:
            return statements
        return [
            "SET LOCAL session_replication_role = replica",
            *statements,
            "SET LOCAL session_replication_role = DEFAULT",
        ]

    DatabaseOperations.sql_flush = sql_flush_with_triggers_off  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def migrated_schema(request: pytest.FixtureRequest, django_db_setup: None) -> Path:
    """The test database as the migrations made it (`pg_dump -Fc`): a private cluster's database restored
    from it (`PrivatePostgres.create_database(name, schema=...)`) is what `migrate` makes, in a second."""
    dump = request.config.stash.get(SCHEMA_KEY, None)
    if dump is None:
        pytest.fail("the migrated schema is dumped on PostgreSQL only (DATABASE_URL)")
    return dump


# The Stripe API of a test that did not ask for localstripe: nothing listens on port 9 here, so such a test
# fails at once with a connection error instead of reaching Stripe's real API.
STRIPE_UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(scope="session")
def localstripe(artifacts_dir: Path) -> Iterator[LocalStripe]:
    """The Stripe API on loopback, started by the first test that needs it (a few seconds), then shared."""
    server = LocalStripe(log_dir=artifacts_dir / os.environ.get("PYTEST_XDIST_WORKER", "")).start()
    yield server
    server.stop()


@pytest.fixture
def stripe_api(settings, localstripe: LocalStripe) -> LocalStripe:
    """This test's app talks to the session's localstripe (payment intents, refunds, cancels)."""
    settings.STRIPE_API_BASE = localstripe.url
    return localstripe


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path: Path) -> None:
    """Every test gets its own blob store; Stripe answers only in tests that ask for `stripe_api`."""
    settings.MEDIA_ROOT = tmp_path / "storage"
    settings.HOTFOLDER_ROOT = tmp_path / "spool"
    # Each test's audit checkpoints go to its own witness log, as each test has its own chain.
    settings.AUDIT_WITNESS = (tmp_path / "audit-witness" / "checkpoints.jsonl").as_uri()
    # And its erasures to its own erasure log (not the shared var/ one every test's erasures appended to).
    settings.LAB_ERASURE_LOG = str(tmp_path / "erasures.log")
    settings.STRIPE_API_BASE = STRIPE_UNREACHABLE
    settings.STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "sk_test_printlab")
    settings.STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_printlab_test")
    settings.REST_FRAMEWORK = {
        **django_settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "10000/min", "sign_in": "10000/min"},
    }


@pytest.fixture(autouse=True)
def _broker_sends_again() -> None:
    """A test that failed the broker leaves this process quiet for a few seconds (lab.lib.tasks): not the next
    test's sends."""
    from lab.lib.tasks import broker_failures_forget

    broker_failures_forget()


@pytest.fixture(autouse=True)
def _fresh_cache_namespace(settings) -> None:
    """Throttle and sign-in counts live in the shared cache (Redis when the broker is Redis): each test counts
    under its own key prefix, so earlier tests, earlier runs and parallel workers never meet (and no test
    flushes a database another one is using)."""
    settings.CACHES = {
        "default": {**django_settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


@pytest.fixture
def api() -> APIClient:
    return APIClient()
