"""A Celery worker stops, pool and all, when its main process gets SIGTERM: how `./scripts/run`'s cleanup
and the reference deployment's units (`KillMode=mixed`) stop it, here on the embedded defaults (kombu's
filesystem broker, SQLite), several times over.

Found running `./scripts/run` as a newcomer would, then measured by hand: SIGTERM sent to the worker's whole
process group (what systemd's default `KillMode=control-group` does, and `kill -- -PGID`) reaches the pool's
children too, and about one stop in ten the main process then hung in billiard's pool teardown
(`_help_stuff_finish`, waiting for the task queue's lock that a killed child held: a faulthandler dump of the
hung process) until something sent SIGKILL. SIGTERM to the main process alone stopped it every time (14 of
14 by hand), as did a terminal's Ctrl-C (SIGINT to the group, 10 of 10). So the worker units say
`KillMode=mixed` (tests/deploy) and this test holds the main-process stop to a bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.celery_worker import wait_until
from tests.support.embedded import embedded_env

pytestmark = pytest.mark.e2e

PROJECT_DIR = Path(__file__).resolve().parents[2]
STOPS = 3
# A warm shutdown with no task running takes ~6 s on the filesystem broker (its polling); a hang never ends.
STOP_SECONDS = 30


def test_the_embedded_worker_stops_with_its_pool_on_sigterm_to_its_main_process(tmp_path: Path):
    env = embedded_env(tmp_path)
    for stop in range(STOPS):
        _start_then_stop(env=env, log=tmp_path / f"worker-{stop}.log", stop=stop + 1)


def _start_then_stop(*, env: dict[str, str], log: Path, stop: int) -> None:
    # given the worker as scripts/run starts it, on the embedded defaults, ready
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "-Q",
        "default,raster,print,webhooks,fetch,audit",
    ]
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [*command, "-c", "2", "--loglevel", "INFO"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: "ready." in log.read_text(errors="replace"),
            timeout=90,
            interval=0.2,
            what=lambda: f"the worker ready\n{log.read_text(errors='replace')[-3000:]}",
        )
        # the embedded broker (kombu's filesystem transport, through lab/lib/broker.py), not Redis
        assert "lab.lib.broker:FilesystemTransport://" in log.read_text(errors="replace")

        # when its main process gets SIGTERM
        worker.send_signal(signal.SIGTERM)

        # then it exits, and its pool's children with it: nothing is left in its process group
        try:
            worker.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"stop {stop}: still running {STOP_SECONDS} s after SIGTERM\n{tail}")
        wait_until(lambda: not _group_alive(worker.pid), timeout=10, what="the pool gone")
    finally:
        if _group_alive(worker.pid):
            os.killpg(worker.pid, signal.SIGKILL)
        if worker.poll() is None:
            worker.wait(timeout=15)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
