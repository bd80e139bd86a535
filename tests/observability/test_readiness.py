"""/readyz in process: the storage and (on a print host) CUPS checks fail by name and pass when they can."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from tests.support.cups import PrivateCups
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


def statuses(body: dict[str, dict[str, dict[str, str]]]) -> dict[str, str]:
    return {name: check["status"] for name, check in body["checks"].items()}


def test_storage_that_is_not_writable_makes_readyz_503_naming_storage(settings, tmp_path: Path):
    blocker = tmp_path / "a-file-not-a-directory"
    blocker.write_text("")
    settings.MEDIA_ROOT = blocker / "storage"

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert statuses(response.json()) == {"database": "ok", "broker": "ok", "storage": "failed"}


def test_a_print_host_whose_cups_does_not_answer_is_not_ready(settings):
    settings.PRINT_HOST = "east"
    settings.CUPS_SERVER = f"127.0.0.1:{free_port()}"

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert statuses(response.json())["cups"] == "failed"
    assert response.json()["checks"]["cups"]["error"] == "ConnectionRefusedError"


def test_a_print_host_with_its_cups_running_is_ready(settings):
    settings.PRINT_HOST = "east"
    with PrivateCups() as cups:
        settings.CUPS_SERVER = cups.server

        response = Client().get("/readyz")

    assert response.status_code == 200, response.json()
    assert statuses(response.json()) == {"database": "ok", "broker": "ok", "storage": "ok", "cups": "ok"}


def test_a_host_without_print_host_does_not_check_cups(settings):
    settings.PRINT_HOST = ""
    settings.CUPS_SERVER = f"127.0.0.1:{free_port()}"

    response = Client().get("/readyz")

    assert response.status_code == 200
    assert "cups" not in response.json()["checks"]
