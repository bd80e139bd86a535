"""A virtualenv with requirements.txt only (what production installs), under var/, rebuilt only when
requirements.txt or the Python version changes (a hash stamp); pip's cache makes a rebuild quick."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
RUNTIME_VENV_DIR = PROJECT_DIR / "var" / "runtime-venv"
STAMP_NAME = "requirements.sha256"
INSTALL_TIMEOUT_SECONDS = 900


def requirements_stamp(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(f"\npython {sys.version_info.major}.{sys.version_info.minor}\n".encode())
    return digest.hexdigest()


def runtime_venv(
    *, requirements: Path = PROJECT_DIR / "requirements.txt", directory: Path = RUNTIME_VENV_DIR
) -> Path:
    """The venv directory, built now if its stamp does not match `requirements`; raises with pip's output
    when the install fails. A lock file keeps two test processes from building it at the same time."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    stamp = requirements_stamp(requirements)
    with (directory.parent / f"{directory.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp_file = directory / STAMP_NAME
        python = directory / "bin" / "python"
        if python.exists() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
            return directory
        shutil.rmtree(directory, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(directory)], what="python -m venv")
        _run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
            what=f"pip install -r {requirements.name}",
        )
        stamp_file.write_text(stamp + "\n")
    return directory


def _run(command: list[str], *, what: str) -> None:
    environment = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    environment.pop("VIRTUAL_ENV", None)
    environment.pop("PYTHONPATH", None)
    completed = subprocess.run(
        command,
        env=environment,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{what} exited with {completed.returncode}:\n{(completed.stdout + completed.stderr)[-6000:]}"
        )
