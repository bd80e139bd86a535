"""A scrape and the fold of an exited process's metric files into the archives never overlap: a scrape reads
the directory under a lock the fold takes alone (lab.lib.metrics_archive). Before, a scrape that listed the
directory before a fold and opened the dead file after it failed, and one that read both the new archive and
the dead file counted that process twice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from lab.lib.metrics import process_registry
from lab.lib.metrics_archive import archive_dead_process, archive_read_lock


def _recorded_by_an_exited_process(directory: Path) -> int:
    recorded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\n"
            "from prometheus_client import Counter\n"
            "Counter('printlab_test_folds', 'f').inc(3)\n"
            "print(os.getpid())\n",
        ],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(recorded.stdout)


def _folds_counted(directory: Path) -> float:
    return sum(
        sample.value
        for metric in process_registry().collect()
        for sample in metric.samples
        if sample.name == "printlab_test_folds_total"
    )


def test_a_fold_waits_for_the_scrape_reading_the_directory_and_the_scrape_counts_the_process_once(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    pid = _recorded_by_an_exited_process(tmp_path)
    dead = tmp_path / f"counter_{pid}.db"
    assert _folds_counted(tmp_path) == 3.0

    # given a scrape reading the directory, when the process's files are folded meanwhile
    fold = threading.Thread(target=archive_dead_process, args=(pid, str(tmp_path)))
    with archive_read_lock(str(tmp_path)):
        fold.start()
        fold.join(timeout=0.5)
        # then the fold waits: the scrape still finds the dead process's file, and no archive yet
        assert fold.is_alive() and dead.exists()
        assert not (tmp_path / "counter_archive.db").exists()
    fold.join(timeout=30)

    # and once it is done the process is counted once, from the archive
    assert not fold.is_alive() and not dead.exists()
    assert _folds_counted(tmp_path) == 3.0
