"""Test harness: run one callable in several threads at once, each with its own database connection (closed
when it ends), and wait for all of them."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def at_once(target: Callable[[], None], *, times: int = 2, timeout: float = 30) -> None:
    def run() -> None:
        try:
            target()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
