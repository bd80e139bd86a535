"""Test harness: a private `redis-server` on a free loopback port in a temporary directory, which a test may
stop, SIGKILL and restart on the same port. Stops only the process it started, by PID.

By default it keeps nothing on disk (no RDB snapshot, no append-only file), like a Redis configured as a
cache: a restart loses every queued message. That is the fault the broker tests provoke; `appendonly=True`
gives a Redis that fsyncs every write and so keeps its data even through SIGKILL.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support.processes import free_port, freeze, thaw

DEBIAN_PACKAGE = "redis-server"


class RedisHarnessError(RuntimeError):
    """The private Redis could not be started or stopped."""


class PrivateRedis:
    """`with PrivateRedis() as redis_server: redis_server.url(db=3)`; `restart()` keeps port and directory."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        executable: str = "redis-server",
        startup_timeout: float = 15.0,
        keep_directory: bool = False,
    ) -> None:
        self.appendonly = appendonly
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.keep_directory = keep_directory
        self.directory: Path | None = None
        self.port = 0
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RedisHarnessError("the private Redis is not running")
        return self._process.pid

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_file(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "redis.log"

    def url(self, db: int = 0) -> str:
        assert self.port, "start() first"
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        """Start the server; the first start picks the port and directory, later starts reuse them."""
        if self.is_running:
            raise RedisHarnessError("the private Redis is already running")
        program = shutil.which(self.executable)
        if program is None:
            raise RedisHarnessError(f"{self.executable} not found on PATH: apt-get install {DEBIAN_PACKAGE}")
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="printlab-redis-"))
            self.port = free_port()
        self.starts += 1
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [program, *self._arguments()],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_ready()
        return self

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown) or, with `kill`, SIGKILL the server we started, and wait for it."""
        process = self._process
        if process is None:
            return
        self.resume()  # a stopped process would only act on the SIGTERM once continued
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        self._process = None

    def restart(self, *, kill: bool = False) -> PrivateRedis:
        self.stop(kill=kill)
        return self.start()

    def pause(self) -> None:
        """Stalled: a Redis stuck in a slow command, swapping, or frozen by its host (processes.freeze)."""
        freeze(self._process)

    def resume(self) -> None:
        thaw(self._process)

    def close(self) -> None:
        """Stop the server and remove its directory (unless `keep_directory`)."""
        self.stop()
        if self.directory is not None and not self.keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def log_tail(self, characters: int = 2000) -> str:
        if self.directory is None or not self.log_file.exists():
            return ""
        return self.log_file.read_bytes()[-characters:].decode(errors="replace")

    def _arguments(self) -> list[str]:
        assert self.directory is not None
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        )
        return [
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            # No save points: a clean shutdown writes no snapshot either, so nothing survives a restart.
            "--save",
            "",
            *persistence,
            "--protected-mode",
            "yes",
            "--loglevel",
            "notice",
        ]

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RedisHarnessError(f"redis-server exited with {code}:\n{self.log_tail()}")
            if _answers_ping(self.port):
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise RedisHarnessError(
            f"redis-server did not answer PING within {self.startup_timeout:g} s:\n{self.log_tail()}"
        )


def _answers_ping(port: int) -> bool:
    """True once the server answers PONG (while it loads its data set it answers -LOADING instead)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False
