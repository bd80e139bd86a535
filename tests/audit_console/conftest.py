"""Auditor-console tests: a settable clock for the audit chain and people in each role."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.accounts.models import User
from lab.audit import records
from tests.audit_console.builders import Clock, person


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    chain_clock = Clock()
    monkeypatch.setattr(records, "timezone", SimpleNamespace(now=chain_clock.now))
    return chain_clock


@pytest.fixture
def auditor() -> User:
    return person("auditor", email="auditor@lab.example")


@pytest.fixture
def technician() -> User:
    return person("technician", email="tech@lab.example")


@pytest.fixture
def packer() -> User:
    return person("packer", email="packer@lab.example")
