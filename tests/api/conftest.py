"""Fixtures of the API tests that price, proof and print photos: the demo catalogue, and a signed-in
customer on the test's API client."""

from __future__ import annotations

import pytest

from lab.accounts.models import User
from lab.catalog.demo import catalog_seed_demo
from tests.builders import UserFactory


@pytest.fixture
def demo_catalog() -> None:
    catalog_seed_demo()


@pytest.fixture
def customer(api) -> User:
    user = UserFactory.create()
    api.force_authenticate(user)
    return user
