"""deploy/printlab-manage, run for real by bash: a management command gets the units' credentials (as
NAME_FILE, in a private copy removed afterwards) and the env file; `runuser` is the one stand-in."""

from __future__ import annotations

import getpass
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "deploy" / "printlab-manage"

# Runs the command as the user asked for (here: the one running the tests), and logs how it was called.
RUNUSER_STANDIN = """#!/bin/sh
[ "$1 $2 $3" = "-u $PRINTLAB_USER --" ] || { echo "runuser: unexpected $*" >&2; exit 99; }
shift 3
printf '%s\\n' "$*" >> "$FAKE_RUNUSER_LOG"
exec "$@"
"""

# What manage.py sees: its arguments, its directory, every *_FILE variable with its file, and the env file's.
FAKE_MANAGE = """import json, os, stat, sys
files = {}
for name, path in sorted(os.environ.items()):
    if name.endswith("_FILE"):
        info = os.stat(path)
        with open(path) as handle:
            content = handle.read()
        files[name] = {"path": path, "readable": os.access(path, os.R_OK), "content": content,
                       "mode": oct(stat.S_IMODE(info.st_mode)), "owner": info.st_uid}
directory = os.path.dirname(next(iter(files.values()))["path"]) if files else ""
print(json.dumps({
    "args": sys.argv[1:],
    "cwd": os.getcwd(),
    "files": files,
    "directory_mode": oct(stat.S_IMODE(os.stat(directory).st_mode)) if directory else "",
    "env": {name: os.environ.get(name) for name in ("LAB_NAME", "DEBUG", "LAB_CURRENCY")},
}))
sys.exit(int(os.environ.get("FAKE_MANAGE_STATUS", "0")))
"""

CREDENTIALS = {
    "secret_key": "secret-key-value\n",
    "database_url": "postgres://printlab_app:pw@db.lab.internal:5432/printlab",
    "lab_master_key": "k1:AAAA",
    "metrics_token": "metrics-token-value",
}

ENV_FILE = """# the example's style: comments, and a quoted value with a space
DEBUG=false
LAB_NAME="Print Lab"
LAB_CURRENCY=usd
"""


def deployment(tmp_path: Path) -> dict[str, str]:
    """A configuration directory, an install directory with a fake manage.py, and `runuser` on PATH."""
    etc = tmp_path / "etc"
    (etc / "credentials").mkdir(parents=True)
    for name, content in CREDENTIALS.items():
        (etc / "credentials" / name).write_text(content)
        (etc / "credentials" / name).chmod(0o400)
    (etc / "printlab.env").write_text(ENV_FILE)
    home = tmp_path / "home"
    (home / ".venv" / "bin").mkdir(parents=True)
    (home / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (home / "manage.py").write_text(FAKE_MANAGE)
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "runuser").write_text(RUNUSER_STANDIN)
    (bin_folder / "runuser").chmod(0o755)
    run = tmp_path / "run"
    run.mkdir()
    environment = {name: value for name, value in os.environ.items() if not name.endswith("_FILE")}
    return {
        **environment,
        "PATH": f"{bin_folder}:{os.environ['PATH']}",
        "PRINTLAB_ETC": str(etc),
        "PRINTLAB_HOME": str(home),
        "PRINTLAB_USER": getpass.getuser(),
        "TMPDIR": str(run),
        "FAKE_RUNUSER_LOG": str(tmp_path / "runuser.log"),
    }


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(WRAPPER), *args],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_command_gets_every_credential_as_name_file_and_the_environment_file_and_the_copies_go(
    tmp_path: Path,
) -> None:
    # given: the credentials and the environment file of a host
    env = deployment(tmp_path)

    # when
    result = manage(env, "staff_account_create", "you@lab.example", "--role", "admin", "--name", "A B")

    # then: run as the app user, in the install directory, with the arguments as given
    assert (result.returncode, result.stderr) == (0, "")
    seen = json.loads(result.stdout)
    assert seen["args"] == ["staff_account_create", "you@lab.example", "--role", "admin", "--name", "A B"]
    assert seen["cwd"] == env["PRINTLAB_HOME"]
    assert (tmp_path / "runuser.log").read_text() == (
        ".venv/bin/python manage.py staff_account_create you@lab.example --role admin --name A B\n"
    )
    # every credential as NAME_FILE (the units' names), a private copy: 0400 files in a 0500 directory of the
    # app user, outside the root-only credentials directory
    files = seen["files"]
    assert {name: (file["readable"], file["content"]) for name, file in files.items()} == {
        f"{name.upper()}_FILE": (True, content) for name, content in CREDENTIALS.items()
    }
    directories = {Path(file["path"]).parent for file in files.values()}
    (directory,) = directories
    assert directory.parent == tmp_path / "run"
    assert {Path(file["path"]).name for file in files.values()} == set(CREDENTIALS)
    assert {(file["mode"], file["owner"]) for file in files.values()} == {("0o400", os.getuid())}
    assert seen["directory_mode"] == "0o500"
    # the environment file as systemd reads it (the quotes stripped)
    assert seen["env"] == {"LAB_NAME": "Print Lab", "DEBUG": "false", "LAB_CURRENCY": "usd"}
    # and the copies are gone
    assert not directory.exists()
    assert list((tmp_path / "run").iterdir()) == []


def test_a_failing_command_passes_its_status_through_and_the_copies_go_all_the_same(tmp_path: Path) -> None:
    # given
    env = {**deployment(tmp_path), "FAKE_MANAGE_STATUS": "3"}

    # when
    result = manage(env, "check", "--database", "default")

    # then
    assert result.returncode == 3, result.stderr
    seen = json.loads(result.stdout)
    assert seen["args"] == ["check", "--database", "default"]
    assert len(seen["files"]) == len(CREDENTIALS)
    (directory,) = {Path(file["path"]).parent for file in seen["files"].values()}
    assert not directory.exists()
    assert list((tmp_path / "run").iterdir()) == []


def test_the_wrapper_sets_the_names_the_units_set() -> None:
    # The units' Environment= lines map credentials/<name> to NAME_FILE (the migration's owner URL aside):
    # the wrapper's rule (upper-case, + _FILE) gives the same names.
    pairs = set()
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith("Environment=") and "=%d/" in line:
                for assignment in shlex.split(line.removeprefix("Environment=")):
                    name, _, value = assignment.partition("=%d/")
                    pairs.add((name, value))
    ordinary = {(name, credential) for name, credential in pairs if credential != "database_owner_url"}

    assert ordinary and all(name == f"{credential.upper()}_FILE" for name, credential in ordinary)
    assert os.access(WRAPPER, os.X_OK)
