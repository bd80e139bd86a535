"""Shared fixtures: real services for the session (localstripe), API clients, factories' helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from tests.support.stripe_server import LocalStripe

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    """Let Django's between-test flush truncate the append-only audit tables of the throw-away test database.

    UPDATE and DELETE stay refused; production databases never carry this setting.
    """
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                name = connection.settings_dict["NAME"]
                cursor.execute(f"ALTER DATABASE \"{name}\" SET lab.allow_audit_truncate = 'on'")
                cursor.execute("SET lab.allow_audit_truncate = 'on'")


@pytest.fixture(scope="session")
def localstripe(artifacts_dir: Path) -> Iterator[LocalStripe]:
    server = LocalStripe(log_dir=artifacts_dir).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path: Path, localstripe: LocalStripe) -> None:  # type: ignore[no-untyped-def]
    """Every test gets its own blob store and the session's localstripe as its Stripe API."""
    settings.MEDIA_ROOT = tmp_path / "storage"
    settings.HOTFOLDER_ROOT = tmp_path / "spool"
    settings.STRIPE_API_BASE = localstripe.url
    settings.STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "sk_test_printlab")
    settings.STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_printlab_test")
    settings.REST_FRAMEWORK = {
        **django_settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "10000/min", "registration": "10000/min"},
    }


@pytest.fixture
def api() -> APIClient:
    return APIClient()
