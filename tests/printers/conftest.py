"""Fixtures for printer backend tests: one private CUPS per test session, small real JPEGs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cups import PrivateCups
from tests.support.images import jpeg_bytes

PHOTO_MEDIA = ["na_index-4x6_4x6in", "na_5x7_5x7in", "na_govt-letter_8x10in"]


@pytest.fixture(scope="session")
def private_cups() -> Iterator[PrivateCups]:
    with PrivateCups() as cups_server:
        yield cups_server


@pytest.fixture
def small_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Kept outside tmp_path, which tests use as the hot folder itself.
    path = tmp_path_factory.mktemp("source") / "photo.jpg"
    path.write_bytes(jpeg_bytes(60, 40))
    return path


@pytest.fixture
def restartable_cups() -> Iterator[PrivateCups]:
    # Restart tests get their own cupsd: a restart leaves state (stale printer reasons, requeued jobs)
    # that would leak into the session server's other tests.
    with PrivateCups() as cups_server:
        yield cups_server
