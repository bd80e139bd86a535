"""The production environment documented in README.md passes `manage.py check --deploy` with no warning, and
needs no demo switch: the test reads the block from the README, so the two cannot drift apart."""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
BLOCK_START = "# production environment"


def documented_production_environment() -> dict[str, str]:
    readme = (PROJECT_DIR / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    (block,) = [block for block in blocks if block.strip().startswith(BLOCK_START)]
    lines = [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_the_documented_production_environment_passes_check_deploy(tmp_path):
    # given the README's environment, with its mounted key files made here
    environment = documented_production_environment()
    made = {
        "SECRET_KEY_FILE": secrets.token_urlsafe(50),
        "LAB_MASTER_KEY_FILE": "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AUDIT_SIGNING_KEY_FILE": base64.b64encode(secrets.token_bytes(32)).decode(),
        "AUDIT_RECORD_KEY_FILE": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    assert set(made) <= set(environment), "the README names every key as a mounted file"
    for name, value in made.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        environment[name] = str(path)
    environment["LAB_VAR_DIR"] = str(tmp_path / "var")

    # when Django's deployment checklist runs with exactly that environment (nothing inherited)
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_DIR,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # then it finds nothing to warn about, and importing settings wrote nothing
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.strip() == "System check identified no issues (1 silenced)."
    assert not (tmp_path / "var").exists()
