"""Appending whole lines to an append-only file, durably: the audit witness (lab/audit/witness.py) and the
erasure log (lab/customer_data/erasure_log.py). No Django: the offline verifier imports the witness."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def write_whole(descriptor: int, data: bytes, *, what: str) -> None:
    """Write all of `data` to `descriptor` (opened O_APPEND), however few bytes each write takes, then fsync
    it; OSError (EIO naming `what`) when a write takes none."""
    written = 0
    while written < len(data):
        count = os.write(descriptor, data[written:])
        if count == 0:
            raise OSError(errno.EIO, f"{what} took no byte of the line")
        written += count
    os.fsync(descriptor)


def directory_sync(directory: Path) -> None:
    """fsync `directory`: the entry of a file just created in it survives a crash too."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
