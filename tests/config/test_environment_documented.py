"""Every environment variable the code reads is in the README's configuration, so the README stays true."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
# os.environ.get("X" / os.environ["X" / os.getenv("X" / the settings' envint("X", env_secret("X",
# required_secret("X" and friends (a secret X may also come as a file named by X_FILE)
READ = re.compile(
    r"""(?:os\.environ\.get|os\.environ\[|os\.getenv|\benv[a-z_]*|\brequired_[a-z_]+)\(?\s*["']([A-Z][A-Z0-9_]+)["']"""
)
# Read by the code but set by a tool, not by whoever runs the lab.
NOT_CONFIGURATION = frozenset({"DJANGO_SETTINGS_MODULE"})


def variables_read() -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in ("lab", "api", "workers", "printers"):
        for path in sorted((PROJECT_DIR / folder).rglob("*.py")):
            for name in READ.findall(path.read_text()):
                found.setdefault(name, str(path.relative_to(PROJECT_DIR)))
    return {name: where for name, where in found.items() if name not in NOT_CONFIGURATION}


def test_the_scan_finds_the_settings_variables():
    read = variables_read()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "PRODUCTION_POLL_SECONDS", "AUDIT_RECORD_KEY"} <= set(read)
    assert len(read) > 50


def test_every_variable_the_code_reads_is_documented_in_the_readme():
    readme = (PROJECT_DIR / "README.md").read_text()
    missing = {name: where for name, where in variables_read().items() if f"`{name}`" not in readme}
    assert missing == {}, "document these in the README's Configuration table"
