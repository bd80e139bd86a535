"""Folds an exited process's prometheus_client multiprocess files into one archive file per type, so that the
directory holds the live processes' files and a few archives, not a file per process that ever ran.

prometheus_client (0.26, requirements.txt) writes `counter_<pid>.db`, `histogram_<pid>.db`,
`summary_<pid>.db` and `gauge_<mode>_<pid>.db` into PROMETHEUS_MULTIPROC_DIR; its `mark_process_dead` removes
only the live gauges' files (prometheus/client_python#568), so under gunicorn's --max-requests every recycled
worker left two files that every scrape read again, until the unit stopped. Counters, histograms (each bucket
holds its own count in these files, not the cumulative one; `_sum` likewise) and summaries add up across
processes, which is all a scrape does with them: their values are added into `<type>_archive.db`, in
prometheus_client's own file format (MmapedDict), which MultiProcessCollector reads as any other file (it
takes the type from the name before the first `_`). Gauges other than the live ones are left as they are
(the lab records none in these files; an `all` gauge shows each process by its pid, which an archive would
lose).

The gunicorn master calls this from gunicorn.conf.py's child_exit: no Django here, only prometheus_client.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

ADDITIVE_TYPES = ("counter", "histogram", "summary")
ARCHIVE_PID = "archive"
LOCK_NAME = "archive.lock"  # not *.db: MultiProcessCollector reads every *.db file of the directory


@contextlib.contextmanager
def _locked(directory: Path, *, shared: bool = False) -> Iterator[None]:
    """A merge holds the directory alone (the master may reap several workers in a row); scrapes share it,
    so that none reads the directory while a dead process's files are being folded into the archives."""
    with open(directory / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def archive_read_lock(directory: str) -> contextlib.AbstractContextManager[None]:
    """Held by a scrape while it reads the directory's files (lab.lib.metrics): a merge waits for it, and it
    for a merge."""
    return _locked(Path(directory), shared=True)


def _values(path: Path) -> dict[str, tuple[float, float]]:
    return {
        key: (value, timestamp)
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(path))
    }


def _fold(dead: Path, archive: Path) -> None:
    totals = _values(archive) if archive.exists() else {}
    for key, (value, timestamp) in _values(dead).items():
        total, latest = totals.get(key, (0.0, 0.0))
        totals[key] = (total + value, max(latest, timestamp))
    # Written whole to a name no scrape reads, then renamed over the archive: a scrape opens the old archive
    # or the new one, never one half-added.
    staging = archive.with_name(archive.name + ".new")
    staging.unlink(missing_ok=True)  # MmapedDict appends to a file it finds
    written = MmapedDict(str(staging))
    try:
        for key, (value, timestamp) in totals.items():
            written.write_value(key, value, timestamp)
    finally:
        written.close()
    os.replace(staging, archive)
    # Under the lock scrapes share (archive_read_lock): without it a scrape that listed the directory before
    # this and opened the dead file after it failed (prometheus_client forgives a missing file for live gauges
    # only), and one that read both the new archive and the dead file counted that worker twice.
    dead.unlink()


def archive_dead_process(pid: int, directory: str) -> None:
    """Mark `pid` dead (its live gauges go) and fold its additive files into the archives, removing them."""
    multiprocess.mark_process_dead(pid, directory)
    path = Path(directory)
    with _locked(path):
        for typ in ADDITIVE_TYPES:
            dead = path / f"{typ}_{pid}.db"
            if dead.exists():
                _fold(dead, path / f"{typ}_{ARCHIVE_PID}.db")
