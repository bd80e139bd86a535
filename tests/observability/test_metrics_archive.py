"""A scrape and the fold of an exited process's metric files into the archives never overlap: a scrape reads
the directory under a lock the fold takes alone (lab.lib.metrics_archive). Before, a scrape that listed the
directory before a fold and opened the dead file after it failed, and one that read both the new archive and
the dead file counted that process twice. A Celery pool child's exit folds its files as a web worker's
does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from celery.signals import worker_process_shutdown
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from lab.lib.metrics import process_registry
from lab.lib.metrics_archive import archive_dead_process
from workers.observability import metrics_process_gone


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


def _folds_counted() -> float:
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
    # The collector lists the directory, then reads the files it listed (merge): a scrape is held between the
    # two, the dead process's file among those listed.
    entered, release = threading.Event(), threading.Event()
    files_read = MultiProcessCollector.merge

    def merge_held(files: list[str], accumulate: bool = True) -> object:
        if not entered.is_set():
            entered.set()
            release.wait(timeout=30)
        return files_read(files, accumulate)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(MultiProcessCollector, "merge", staticmethod(merge_held))
    scraped: dict[str, object] = {}

    def scrape() -> None:
        try:
            scraped["total"] = _folds_counted()
        except Exception as error:  # the failure the lock prevents, asserted below
            scraped["error"] = error

    scrape_thread = threading.Thread(target=scrape)
    fold_thread = threading.Thread(target=archive_dead_process, args=(pid, str(tmp_path)))

    # given a scrape that has listed the directory, when the process's files are folded meanwhile
    scrape_thread.start()
    try:
        assert entered.wait(timeout=30)
        fold_thread.start()
        fold_thread.join(timeout=0.5)
        fold_waited, dead_kept = fold_thread.is_alive(), dead.exists()
    finally:
        release.set()
        scrape_thread.join(timeout=30)
        if fold_thread.ident is not None:
            fold_thread.join(timeout=30)

    # then the fold waited for the scrape, which counted the process once, from the file it listed
    assert (fold_waited, dead_kept) == (True, True)
    assert scraped == {"total": 3.0}
    # and once the fold is done the process is counted once, from the archive
    assert not fold_thread.is_alive() and not scrape_thread.is_alive()
    assert sorted(path.name for path in tmp_path.glob("*.db")) == ["counter_archive.db"]
    assert _folds_counted() == 3.0


def test_a_celery_pool_child_s_exit_folds_its_counter_file_into_the_archive(tmp_path, monkeypatch):
    # given a pool child's counter file (the signal runs in the exiting child: this process plays it)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    child = MmapedDict(str(tmp_path / f"counter_{os.getpid()}.db"))
    try:
        child.write_value(mmap_key("printlab_test_folds", "printlab_test_folds_total", [], [], "f"), 3.0, 0.0)
    finally:
        child.close()

    # when Celery's prefork pool reports the child's exit
    answered = worker_process_shutdown.send(sender="celery@test", pid=os.getpid(), exitcode=0)

    # then its file is folded into the archive, which counts it
    assert [receiver for receiver, _ in answered] == [metrics_process_gone]
    assert sorted(path.name for path in tmp_path.glob("*.db")) == ["counter_archive.db"]
    assert _folds_counted() == 3.0
