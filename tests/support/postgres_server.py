"""Test harness: a throw-away PostgreSQL cluster (initdb in a temporary directory) on a free loopback port,
which a test may stop (fast or immediate) and restart on the same port and data. Stops only its postmaster.

PostgreSQL refuses to run as root, so when the tests run as root (as here and in CI) initdb and the server
run as the `postgres` OS user (Popen's user/group: the PID we hold is the postmaster itself, so stopping by
PID works as pg_ctl does: SIGTERM smart, SIGINT fast, SIGQUIT immediate). Authentication is `trust` for
loopback and the private socket of this cluster only; nothing else can reach it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal, TypedDict

import psycopg
from psycopg import sql

from tests.support.processes import free_port, freeze, thaw

DEBIAN_PACKAGE = "postgresql"
SERVER_USER = "postgres"  # the OS user the server runs as when we are root; also the superuser role
StopMode = Literal["smart", "fast", "immediate"]
STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}


class RunAs(TypedDict, total=False):
    """The Popen/run arguments that start a program as the server's OS user."""

    user: int
    group: int
    extra_groups: list[int]
    env: dict[str, str]
    cwd: str


class PostgresHarnessError(RuntimeError):
    """The private PostgreSQL could not be created, started or stopped."""


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb (Debian keeps it off PATH), else PATH's."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


class PrivatePostgres:
    """`with PrivatePostgres() as pg: pg.create_database("lab"); pg.url("lab")`."""

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        startup_timeout: float = 30.0,
        keep_directory: bool = False,
    ) -> None:
        self.bin_dir = bin_dir if bin_dir is not None else postgres_bin_dir()
        self.startup_timeout = startup_timeout
        self.keep_directory = keep_directory
        self.directory: Path | None = None
        self.port = 0
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivatePostgres:
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
            raise PostgresHarnessError("the private PostgreSQL is not running")
        return self._process.pid

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def data_dir(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "socket"

    @property
    def log_file(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        assert self.port, "start() first"
        return f"postgres://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """The same as url() in libpq's form, for psycopg.connect()."""
        return f"host=127.0.0.1 port={self.port} user={SERVER_USER} dbname={dbname} connect_timeout=5"

    def start(self) -> PrivatePostgres:
        """The first start creates the cluster (initdb) and picks the port; later starts reuse both."""
        if self.is_running:
            raise PostgresHarnessError("the private PostgreSQL is already running")
        initdb, postgres = self._programs()
        if self.directory is None:
            self._create_cluster(initdb)
        self.starts += 1
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(postgres),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.socket_dir}",
                    # A throw-away cluster: no fsync (a restart still keeps every commit; an OS crash is
                    # not what these tests simulate).
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._run_as(),
            )
        self._wait_until_ready()
        return self

    def stop(self, mode: StopMode = "fast") -> None:
        """Signal our postmaster as `pg_ctl stop -m mode` would, and wait until it has exited."""
        process = self._process
        if process is None:
            return
        self.resume()  # stopped processes would act on the signal only once continued
        if mode not in STOP_SIGNALS:
            raise ValueError(f"unknown stop mode {mode!r}: use one of {', '.join(STOP_SIGNALS)}")
        if process.poll() is None:
            process.send_signal(STOP_SIGNALS[mode])
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        self._process = None

    def restart(self, mode: StopMode = "fast") -> PrivatePostgres:
        self.stop(mode)
        return self.start()

    def pause(self) -> None:
        """The postmaster and every backend (its process group) stalled (processes.freeze)."""
        freeze(self._process)

    def resume(self) -> None:
        thaw(self._process)

    def close(self) -> None:
        """Stop the server and remove the cluster (unless `keep_directory`)."""
        self.stop("fast")
        if self.directory is not None and not self.keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def create_database(self, name: str, *, schema: Path | None = None) -> str:
        """Create database `name` owned by the superuser, with what the `pg_dump -Fc` file `schema` holds
        (the `migrated_schema` fixture: what `migrate` makes); returns its URL."""
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if schema is not None:
            assert self.bin_dir is not None
            restored = subprocess.run(
                [
                    str(self.bin_dir / "pg_restore"),
                    "--no-owner",
                    "--exit-on-error",
                    "--single-transaction",
                    f"--dbname={self.url(name)}",
                    str(schema),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if restored.returncode != 0:
                raise PostgresHarnessError(f"pg_restore of {schema} failed: {restored.stderr[-3000:]}")
        return self.url(name)

    def log_tail(self, characters: int = 3000) -> str:
        if self.directory is None or not self.log_file.exists():
            return ""
        return self.log_file.read_bytes()[-characters:].decode(errors="replace")

    def _programs(self) -> tuple[Path, Path]:
        hint = f"apt-get install {DEBIAN_PACKAGE} (initdb and postgres live in /usr/lib/postgresql/*/bin)"
        if self.bin_dir is None:
            raise PostgresHarnessError(f"PostgreSQL server programs not found: {hint}")
        initdb, postgres = self.bin_dir / "initdb", self.bin_dir / "postgres"
        missing = [str(path) for path in (initdb, postgres) if not os.access(path, os.X_OK)]
        if missing:
            raise PostgresHarnessError(f"missing {', '.join(missing)}: {hint}")
        return initdb, postgres

    def _create_cluster(self, initdb: Path) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="printlab-postgres-"))
        self.socket_dir.mkdir()
        self.log_file.touch()
        self._give_to_server_user(self.directory, self.socket_dir, self.log_file)
        completed = subprocess.run(
            [
                str(initdb),
                "-D",
                str(self.data_dir),
                "-U",
                SERVER_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._run_as(),
        )
        if completed.returncode != 0:
            output = (completed.stdout + completed.stderr)[-3000:]
            self.close()
            raise PostgresHarnessError(f"initdb failed with {completed.returncode}:\n{output}")
        # Only this cluster's socket and loopback, trusted; initdb's --auth=trust already says the same,
        # written out so no default of a future initdb can widen it.
        (self.data_dir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        self.port = free_port()

    def _run_as(self) -> RunAs:
        """Popen arguments that drop root to the postgres user; nothing when we are not root."""
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError as error:
            raise PostgresHarnessError(
                f"running as root and there is no {SERVER_USER!r} OS user to run PostgreSQL as: "
                f"apt-get install {DEBIAN_PACKAGE} creates it"
            ) from error
        return {
            "user": entry.pw_uid,
            "group": entry.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": entry.pw_dir, "USER": SERVER_USER, "LOGNAME": SERVER_USER},
            "cwd": str(self.directory),
        }

    def _give_to_server_user(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        entry = pwd.getpwnam(SERVER_USER)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise PostgresHarnessError(f"postgres exited with {code}:\n{self.log_tail()}")
            if self._accepts_connections():
                return
            time.sleep(0.1)
        self.stop("immediate")
        raise PostgresHarnessError(
            f"postgres did not accept connections within {self.startup_timeout:g} s:\n{self.log_tail()}"
        )

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.conninfo(), connect_timeout=2) as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True
