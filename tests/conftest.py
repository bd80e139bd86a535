"""Shared fixtures: per-test settings, API clients, and localstripe, started on first use by the tests that
ask for it (`stripe_api`) and kept for the rest of the session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from tests.support.stripe_server import LocalStripe

# pytest-playwright's fixtures with the Debian Chromium, one Playwright per browser module.
pytest_plugins = ["tests.support.browser"]

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """Django's flush between transactional tests truncates every table, and the audit tables refuse TRUNCATE
    for everyone. The test database's owner is a superuser, so the flush runs with triggers off
    (session_replication_role = replica, a superuser-only setting), scoped to the flush's own transaction.

    This is the power the audit design assumes a database superuser has (see the README's threat model):
    the app's own role cannot set it, and what a superuser does with it is caught by record macs and the
    witness log, not by the database.
    """
    from django.db import connection

    if connection.vendor == "postgresql":
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


# The Stripe API of a test that did not ask for localstripe: nothing listens on port 9 here, so such a test
# fails at once with a connection error instead of reaching Stripe's real API.
STRIPE_UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(scope="session")
def localstripe(artifacts_dir: Path) -> Iterator[LocalStripe]:
    """The Stripe API on loopback, started by the first test that needs it (a few seconds), then shared."""
    server = LocalStripe(log_dir=artifacts_dir).start()
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
    settings.STRIPE_API_BASE = STRIPE_UNREACHABLE
    settings.STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "sk_test_printlab")
    settings.STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_printlab_test")
    settings.REST_FRAMEWORK = {
        **django_settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "10000/min"},
    }


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
