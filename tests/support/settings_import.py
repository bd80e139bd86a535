"""`import lab.settings` in a new process, for the tests of what settings accept and refuse at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


def settings_imported(
    var_dir: Path,
    read_back: str,
    environment: Mapping[str, str],
    *,
    unset: Iterable[str] = (),
    unset_prefixes: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `read_back` (Python that imports lab.settings and prints what it read) in a new process with this
    process's environment, less the variables named in `unset` or starting with one of `unset_prefixes`,
    plus `environment`, and `var_dir` as LAB_VAR_DIR."""
    dropped = frozenset(unset)
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(unset_prefixes)
    }
    return subprocess.run(
        [sys.executable, "-c", read_back],
        cwd=PROJECT_DIR,
        env={**inherited, "LAB_VAR_DIR": str(var_dir), **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
