"""A name whose lookup never answers, for the tests of the web side's URL checks (a photo's URL, a webhook's):
the `hanging_resolver` fixture (a plugin of tests/conftest.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

HANGING_HOST = "hangs.example.net"
LOOKUP_HANG_SECONDS = 30  # the lookup that never answers; the tests' check timeout is 1 s: far from both


@pytest.fixture
def hanging_resolver(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[list[str]]:
    """A resolver that does not answer for HANGING_HOST (a public address after LOOKUP_HANG_SECONDS, so that
    code without a deadline ends too), with URL_CHECK_TIMEOUT_SECONDS at 1; other hosts resolve as usual.
    Yields the lookups of HANGING_HOST asked for; the hung ones are released at teardown."""
    settings.URL_CHECK_TIMEOUT_SECONDS = 1
    resolve = socket.getaddrinfo
    release = threading.Event()
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != HANGING_HOST:
            return list(resolve(host, port, *args, **kwargs))
        asked.append(host)
        release.wait(LOOKUP_HANG_SECONDS)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("8.8.8.8", port))]

    monkeypatch.setattr("lab.lib.safe_http.socket.getaddrinfo", getaddrinfo)
    yield asked
    release.set()
