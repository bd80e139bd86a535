"""Auditor-console tests: people in each role. Records are stamped at chosen times by `attempt` and `denied`
(tests/builders/audit.py, with time-machine)."""

from __future__ import annotations

import pytest

from lab.accounts.models import User
from tests.builders import person


@pytest.fixture
def auditor() -> User:
    return person("auditor", email="auditor@lab.example")


@pytest.fixture
def technician() -> User:
    return person("technician", email="tech@lab.example")


@pytest.fixture
def packer() -> User:
    return person("packer", email="packer@lab.example")
