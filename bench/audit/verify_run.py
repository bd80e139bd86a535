"""Benchmark of the offline audit verifier: builds a chained export and times `python -m lab.audit.verify`.
Run from the checkout: `.venv/bin/python -m bench.audit.verify_run [--records 1000000] [--directory DIR]
[--lanes N]` (--lanes: records spread over N lanes, as the lab writes them now; default 0, the format from
before lanes)."""

from __future__ import annotations

import argparse
import base64
import json
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.audit.canonical import GENESIS_HASH, seal_record, utc_timestamp
from lab.audit.checkpoints import Checkpoint, sign_checkpoint
from lab.audit.export_format import write_export
from lab.audit.keys import public_key_b64
from lab.audit.lane_heads import LaneHead, lanes_checkpoint_head

CHECKPOINT_EVERY = 10_000
START = datetime(2026, 1, 1, tzinfo=UTC)
ACTIONS = ("image.view.preview", "image.view.full", "image.access.denied", "image.purge", "audit.export")
ROLES = ("technician", "packer", "supervisor", "auditor")
RECORD_KEY = secrets.token_bytes(32)
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)


def _records(
    count: int, heads: dict[int, tuple[LaneHead, ...]], lanes: int = 0
) -> Iterator[dict[str, object]]:
    """count realistic chained records (round robin over `lanes` lanes; 0: one chain from before lanes);
    stores the lane heads at every CHECKPOINT_EVERY-th record into heads."""
    lane_heads: dict[int, LaneHead] = {}
    for seq in range(1, count + 1):
        action = ACTIONS[seq % len(ACTIONS)]
        fields: dict[str, object] = {
            "occurred_at": utc_timestamp(START + timedelta(milliseconds=seq * 731)),
            "actor_id": None if action == "image.purge" else f"user-{seq % 977:04d}",
            "actor_role": ROLES[seq % len(ROLES)],
            "action": action,
            "asset_id": f"asset-{seq // 3:09d}",
            "order_ref": f"ORD-2026-{seq // 12:07d}",
            "purpose": "printing" if seq % 5 else "clarification",
            "justification": "" if seq % 4 else f"Kunde bat um Prüfung des Zuschnitts (Auftrag {seq // 12})",
            "context_type": "print_job",
            "context_id": f"pj-{seq // 2:09d}",
            "outcome": "denied" if action == "image.access.denied" else "granted",
            "rule": "purpose_matches_step",
            "client_ip": None if action == "image.purge" else f"10.{seq % 7}.{seq % 251}.{seq % 253}",
            "user_agent": USER_AGENT,
            "request_id": f"{seq:032x}",
            "content_sha256": f"{seq * 2654435761:064x}"[-64:],
            "policy_version": "2026-01",
        }
        lane = (seq - 1) % lanes + 1 if lanes else 1
        _, position, _, head_hash = lane_heads.get(lane, (lane, 0, 0, GENESIS_HASH))
        if lanes:
            record = seal_record(
                fields, seq=seq, prev_hash=head_hash, record_key=RECORD_KEY, lane=lane, lane_seq=position + 1
            )
        else:
            record = seal_record(fields, seq=seq, prev_hash=head_hash, record_key=RECORD_KEY)
        lane_heads[lane] = (lane, position + 1, seq, str(record["hash"]))
        if seq % CHECKPOINT_EVERY == 0 or seq == count:
            heads[seq] = tuple(lane_heads[key] for key in sorted(lane_heads))
        yield record


def _checkpoints(
    heads: dict[int, tuple[LaneHead, ...]], private_key: Ed25519PrivateKey, *, laned: bool
) -> Iterator[Checkpoint]:
    for index, (seq, lane_heads) in enumerate(sorted(heads.items())):
        signed_at = utc_timestamp(START + timedelta(hours=index))
        head_seq, head_hash = lanes_checkpoint_head(lane_heads)
        assert head_seq == seq
        yield sign_checkpoint(
            private_key=private_key,
            key_id="bench",
            seq=seq,
            head_hash=head_hash,
            signed_at=signed_at,
            lanes=lane_heads if laned else (),
        )


def build_export(*, directory: Path, count: int, private_key: Ed25519PrivateKey, lanes: int = 0) -> Path:
    """Write count records and a checkpoint every CHECKPOINT_EVERY seqs plus one of the final head."""
    heads: dict[int, tuple[LaneHead, ...]] = {}
    path = directory / "audit-bench.jsonl"
    # write_export writes all records before it reads the checkpoints, so the lazily signed checkpoints
    # see every head the record pass collected.
    write_export(
        path=path,
        records=_records(count, heads, lanes),
        checkpoints=_checkpoints(heads, private_key, laned=lanes > 0),
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--directory", type=Path, help="where to write the export (default: a temporary dir)")
    parser.add_argument(
        "--record-key", action="store_true", help="verify every record's mac too (the auditor holds the key)"
    )
    parser.add_argument("--lanes", type=int, default=0, help="spread the records over this many lanes (0)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    arguments = parser.parse_args()
    directory = arguments.directory or Path(tempfile.mkdtemp(prefix="audit-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    try:
        started = time.perf_counter()
        export = build_export(
            directory=directory, count=arguments.records, private_key=private_key, lanes=arguments.lanes
        )
        built = time.perf_counter() - started
        size_mb = export.stat().st_size / 1e6
        print(f"built {arguments.records} records ({size_mb:.0f} MB) in {built:.1f} s", flush=True)

        started = time.perf_counter()
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "lab.audit.verify",
                str(export),
                "--public-key",
                public_key_b64(private_key.public_key()),
                *(["--record-key", base64.b64encode(RECORD_KEY).decode()] if arguments.record_key else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        verified = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(completed.stdout.strip() or completed.stderr.strip())
        print(
            f"verify: exit {completed.returncode}, {verified:.1f} s wall"
            f" ({verified / arguments.records * 1e6:.1f} us/record), peak RSS {peak_mb:.0f} MB"
        )
        if arguments.json:
            figures = {
                "records": arguments.records,
                "verify_s": verified,
                "us_per_record": verified / arguments.records * 1e6,
                "peak_rss_mb": peak_mb,
                "exit_code": completed.returncode,
            }
            arguments.json.write_text(json.dumps({"benchmark": "audit-verify", "figures": figures}))
        return completed.returncode
    finally:
        if arguments.directory is None:
            shutil.rmtree(directory)


if __name__ == "__main__":
    sys.exit(main())
