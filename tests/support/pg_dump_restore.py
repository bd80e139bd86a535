"""A real backup of the test's own PostgreSQL database and a real restore of it: `pg_dump -Fc` to a file, then
`pg_restore --clean` of that file over the database in one transaction, as an operator restores one (every
table dropped and made again, sequences set back). Nothing outside the database goes back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from django.db import connection, connections

from tests.support.postgres_server import postgres_bin_dir

TIMEOUT_SECONDS = 120


def database_dump(path: Path) -> Path:
    """`pg_dump -Fc` of the database Django is connected to (the pytest-django test database), into `path`:
    what it holds committed now (a transactional test's rows)."""
    _run("pg_dump", "--format=custom", f"--file={path}")
    return path


def database_restore(dump: Path) -> None:
    """`pg_restore` of `dump` over the database Django is connected to: every object of the dump dropped and
    made again, its rows and sequence values loaded, in one transaction. Django's connections are closed
    first (a session holding a lock on a table would keep its DROP waiting), and open again on next use."""
    connections.close_all()
    _run("pg_restore", "--clean", "--if-exists", "--single-transaction", "--no-owner", str(dump))


def _run(program: str, *arguments: str) -> None:
    settings_dict = connection.settings_dict
    command = [_program(program), "--no-password", f"--dbname={settings_dict['NAME']}"]
    if settings_dict.get("HOST"):
        command.append(f"--host={settings_dict['HOST']}")
    if settings_dict.get("PORT"):
        command.append(f"--port={settings_dict['PORT']}")
    if settings_dict.get("USER"):
        command.append(f"--username={settings_dict['USER']}")
    env = dict(os.environ)
    if settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = str(settings_dict["PASSWORD"])
    done = subprocess.run(
        [*command, *arguments], env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
    )
    assert done.returncode == 0, f"{program} failed ({done.returncode}): {done.stderr}"


def _program(name: str) -> str:
    """Debian's binary beside the newest server's (off PATH), else PATH's (Debian's wrapper)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is not None and (bin_dir / name).exists():
        return str(bin_dir / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql-client")
    return found
