"""The two ways the audit log is verified, as a test reads their verdicts: the lab's `manage.py audit_verify`
and the auditor's offline verifier (`python -m lab.audit.verify`, a subprocess where Django is not set up),
on an export the lab wrote."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from lab.audit.canonical import utc_timestamp
from lab.audit.checkpoints import sign_checkpoint
from lab.audit.configured import public_key, signing_key, witness_sink
from lab.audit.export import audit_export
from lab.audit.keys import public_key_b64
from lab.audit.witness import FileWitness

ROOT = Path(__file__).resolve().parents[2]


def audit_verify_says(*arguments: str) -> str:
    """What `manage.py audit_verify` prints ("OK") or fails with."""
    try:
        call_command("audit_verify", *arguments)
    except CommandError as error:
        return str(error)
    return "OK"


def audit_verify_printed(*arguments: str) -> str:
    """What `manage.py audit_verify` prints (its report: "OK: …" with what it found on the way, such as a
    restore), or the error it fails with."""
    out = io.StringIO()
    try:
        call_command("audit_verify", *arguments, stdout=out)
    except CommandError as error:
        return str(error)
    return out.getvalue()


def witness_path() -> Path:
    """The file of the lab's witness log (AUDIT_WITNESS: a file sink in the tests)."""
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    return sink.path


def verifier_run_without_django(arguments: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """`python -m lab.audit.verify ARGUMENTS` as a customer runs it, where Django cannot be imported."""
    blocker = folder / "no-django" / "django"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text("raise ImportError('the offline verifier must not import Django')\n")
    return subprocess.run(
        [sys.executable, "-m", "lab.audit.verify", *arguments],
        cwd=ROOT,
        env={"PYTHONPATH": str(blocker.parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def receipt_verified(receipt: dict[str, Any], folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The customer's verifier on `receipt` (as served), with the lab's public key and `extra` arguments."""
    path = folder / "receipt.json"
    path.write_text(json.dumps(receipt, indent=2), encoding="utf-8")
    return verifier_run_without_django(
        ["--receipt", str(path), "--public-key", public_key_b64(public_key()), *extra], folder
    )


def export_for_auditors(folder: Path) -> Path:
    """The lab's export for an auditor (`audit_export`, as after a tampering), under `folder`."""
    export = folder / "export" / "audit.jsonl"
    export.parent.mkdir(exist_ok=True)
    audit_export(path=export, actor_id="auditor-1", actor_role="auditor")
    return export


def offline_verifier(
    export: Path,
    witness: Path,
    *,
    keys: Sequence[str] | None = None,
    fingerprints: Sequence[str] = (),
    interval: bool = False,
    with_record_key: bool = True,
) -> subprocess.CompletedProcess[str]:
    """The offline verifier on `export` with the auditor's witness copy; `keys`: the pinned public keys
    (default: the lab's own), `interval`: judge coverage at the lab's checkpoint interval."""
    arguments = [sys.executable, "-m", "lab.audit.verify", str(export), "--witness", str(witness)]
    for key in [public_key_b64(public_key())] if keys is None else keys:
        arguments += ["--public-key", key]
    for fingerprint in fingerprints:
        arguments += ["--fingerprint", fingerprint]
    if interval:
        arguments += ["--interval", str(settings.AUDIT_CHECKPOINT_SECONDS)]
    if with_record_key:
        arguments += ["--record-key", settings.AUDIT_RECORD_KEY]
    return subprocess.run(arguments, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def witness_at(path: Path, entries: Sequence[tuple[int, str, timedelta]]) -> None:
    """A witness log signed by the lab's key, with checkpoints (seq, head hash) at the given ages."""
    now = timezone.now()
    lines = []
    for seq, head_hash, age in entries:
        signed = sign_checkpoint(
            private_key=signing_key(),
            key_id="lab",
            seq=seq,
            head_hash=head_hash,
            signed_at=utc_timestamp(now - age),
        )
        lines.append(signed.to_line() + "\n")
    path.write_text("".join(lines))
