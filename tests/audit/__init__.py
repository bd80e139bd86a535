"""Tests of the audit log; this module builds the sample chains and exports they share.
Plain functions over lab.audit.canonical and chain_walk, so the tamper tests need no Django and no
database."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.audit.canonical import GENESIS_HASH, seal_record, utc_timestamp
from lab.audit.checkpoints import Checkpoint, sign_checkpoint
from lab.audit.export_format import write_export

CHAIN_START = datetime(2026, 5, 9, 8, 0, 0, tzinfo=UTC)
KEY_ID = "audit-2026"
# The record (HMAC) key the sample chains are authenticated with.
RECORD_KEY = bytes(range(100, 132))
# The schedule signs every 10 records; seq 20 twice (a quiet hour), seq 0 before anything happened, and the
# export's own checkpoint of the head last.
CHECKPOINT_SEQS = (0, 10, 20, 20, 30, 40, 50, 50)


def record_fields(seq: int) -> dict[str, object]:
    """Plausible, varied field values for record seq (nulls, non-ASCII, denials) without seq/prev_hash."""
    is_denied = seq % 7 == 0
    return {
        "occurred_at": utc_timestamp(CHAIN_START + timedelta(seconds=seq, microseconds=seq * 37)),
        "actor_id": None if seq % 11 == 0 else f"user-{seq % 5}",
        "actor_role": "technician" if seq % 2 else "packer",
        "action": "image.access.denied" if is_denied else "image.view.preview",
        "asset_id": None if seq % 13 == 0 else f"asset-{seq:05d}",
        "order_ref": None if seq % 17 == 0 else f"ORD-{1000 + seq // 3}",
        "purpose": "printing" if seq % 3 else "clarification",
        "justification": f'crop check for print {seq} — Überprüfung "quoted" \\ tab\t',
        "context_type": "print_job",
        "context_id": f"pj-{seq}",
        "outcome": "denied" if is_denied else "granted",
        "rule": "purpose_matches_step",
        "client_ip": None if seq % 19 == 0 else f"10.0.{seq % 256}.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        "request_id": f"req-{seq:08d}",
        "content_sha256": f"{seq:064x}",
        "policy_version": "2026-01",
    }


def build_chain(count: int) -> list[dict[str, object]]:
    """A valid chain of records seq 1..count."""
    records: list[dict[str, object]] = []
    head_hash = GENESIS_HASH
    for seq in range(1, count + 1):
        record = seal_record(record_fields(seq), seq=seq, prev_hash=head_hash, record_key=RECORD_KEY)
        head_hash = str(record["hash"])
        records.append(record)
    return records


def sign_heads(
    *, private_key: Ed25519PrivateKey, records: list[dict[str, object]], seqs: Iterable[int]
) -> list[Checkpoint]:
    """A checkpoint of each seq in seqs over these records, signed an hour apart."""
    checkpoints = []
    for index, seq in enumerate(seqs):
        head_hash = GENESIS_HASH if seq == 0 else str(records[seq - 1]["hash"])
        signed_at = utc_timestamp(CHAIN_START + timedelta(hours=index))
        checkpoints.append(
            sign_checkpoint(
                private_key=private_key, key_id=KEY_ID, seq=seq, head_hash=head_hash, signed_at=signed_at
            )
        )
    return checkpoints


def export_lines(path: Path) -> list[str]:
    """The lines of an export file, without their newlines."""
    # str.splitlines() would also split inside values at U+2028 and friends.
    return path.read_bytes().decode("utf-8").split("\n")[:-1]


def rewrite_lines(path: Path, lines: list[str]) -> None:
    """Replace an export file's content with these lines, as an attacker would."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_sample_export(*, directory: Path, private_key: Ed25519PrivateKey, count: int = 50) -> Path:
    """Write a valid export of count records and the CHECKPOINT_SEQS checkpoints; returns the records path."""
    records = build_chain(count)
    path = directory / "audit.jsonl"
    write_export(
        path=path,
        records=records,
        checkpoints=sign_heads(private_key=private_key, records=records, seqs=CHECKPOINT_SEQS),
    )
    return path
