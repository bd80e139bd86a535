"""A disk that refuses writes, made by the kernel: this process may not grow a file past a size.

RLIMIT_FSIZE makes write() past the limit fail with EFBIG (SIGXFSZ ignored, as a server ignores it), the way a
full disk fails it with ENOSPC: the code under test sees a real OSError from a real write, midway through a
file. Only this process is limited (PostgreSQL, Redis and the rest write as before); files already larger
than the limit may still be read and shrunk.
"""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def files_capped_at(size_bytes: int) -> Iterator[None]:
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
