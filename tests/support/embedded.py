"""The environment of a process on the embedded defaults (SQLite, kombu's filesystem broker under var/), as
`./scripts/run` starts them, for the tests that start such a worker themselves."""

from __future__ import annotations

import os
from pathlib import Path

# Variables of the test command that would take a process off the embedded defaults.
NOT_INHERITED = ("CELERY_BROKER_URL", "CACHE_URL", "DATABASE_URL", "LAB_STORAGE_DIR", "HOTFOLDER_ROOT")


def embedded_env(directory: Path) -> dict[str, str]:
    """This process's environment without the test command's services, with `directory` as LAB_VAR_DIR and
    a SQLite database in it, in demo mode."""
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    env.update(
        LAB_VAR_DIR=str(directory / "var"),
        DATABASE_URL=f"sqlite:///{directory / 'lab.sqlite3'}",
        LAB_DEMO_SECRETS="true",
        DJANGO_SETTINGS_MODULE="lab.settings",
    )
    return env
