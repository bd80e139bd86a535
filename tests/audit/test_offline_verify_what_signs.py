"""What counts as a signature offline, and what a liveness problem may not hide. With --as-of, the witness's
checkpoints signed after that time still counted as signatures of the export: an old export with records
made up past its last checkpoint passed as OK against a newer witness, whose later lines signed the real
records. A coverage_gap or stale_witness hid records appended past every signature (the unsigned tail was
looked for only when nothing else was found). And a witness or export line of deeply nested brackets raised
RecursionError past the parsers, a traceback instead of a verdict. And the backdating rule judged a record
against the checkpoint just before the one first covering it only: one signed as not settled there (by
someone else holding the signing key) let a record dated months back pass. No Django, no database."""

from __future__ import annotations

import base64
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.audit.backdating import BackdatingCheck
from lab.audit.canonical import GENESIS_HASH, seal_record, utc_timestamp
from lab.audit.checkpoints import Checkpoint, sign_checkpoint
from lab.audit.export_format import write_export
from lab.audit.export_verify import WitnessOptions, verify_export
from lab.audit.keys import public_key_b64
from lab.audit.lane_heads import LaneHead, lanes_checkpoint_head
from tests.audit import CHAIN_START, RECORD_KEY, record_fields

SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_KEY = SIGNING_KEY.public_key()
ATTACKER_RECORD_KEY = bytes(range(200, 232))
ROOT = Path(__file__).resolve().parents[2]
NESTED = b"[" * 100000 + b"\n"


class Log:
    """A laned log as the lab writes it: seq s in lane 1 + s % 2, checkpoints of every lane's head."""

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []
        self.heads: dict[int, LaneHead] = {}

    def append(self, seq: int, at: datetime, *, record_key: bytes = RECORD_KEY) -> None:
        lane = 1 + seq % 2
        _, position, _, previous = self.heads.get(lane, (lane, 0, 0, GENESIS_HASH))
        fields = record_fields(seq) | {"occurred_at": utc_timestamp(at)}
        record = seal_record(
            fields, seq=seq, prev_hash=previous, record_key=record_key, lane=lane, lane_seq=position + 1
        )
        self.heads[lane] = (lane, position + 1, seq, str(record["hash"]))
        self.records.append(record)

    def checkpoint(self, at: datetime, *, settled: bool = True) -> Checkpoint:
        heads = tuple(self.heads[lane] for lane in sorted(self.heads))
        seq, head_hash = lanes_checkpoint_head(heads)
        return sign_checkpoint(
            private_key=SIGNING_KEY,
            key_id="audit-2026",
            seq=seq,
            head_hash=head_hash,
            signed_at=utc_timestamp(at),
            lanes=heads,
            is_settled=settled,
        )

    def copy(self) -> Log:
        other = Log()
        other.records, other.heads = list(self.records), dict(self.heads)
        return other


def minutes(count: int) -> datetime:
    return CHAIN_START + timedelta(minutes=count)


def write_witness(path: Path, checkpoints: list[Checkpoint]) -> Path:
    path.write_text("".join(checkpoint.to_line() + "\n" for checkpoint in checkpoints), encoding="utf-8")
    return path


def run_verifier(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lab.audit.verify", *arguments]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def key_b64() -> str:
    return public_key_b64(PUBLIC_KEY)


def test_an_old_export_with_records_made_up_past_its_checkpoint_is_unsigned_as_of_its_time(tmp_path: Path):
    # given the lab's log: seqs 1..10 witnessed at 08:30, seqs 11..20 witnessed at 09:30
    log = Log()
    for seq in range(1, 11):
        log.append(seq, minutes(seq))
    first = log.checkpoint(minutes(30))
    forged = log.copy()
    for seq in range(11, 21):
        log.append(seq, minutes(30 + seq))
    witness = write_witness(tmp_path / "witness.jsonl", [first, log.checkpoint(minutes(90))])
    # and an "export made at 08:45": the real seqs 1..10 and first checkpoint, then seqs 11..20 made up by
    # someone without the record key
    for seq in range(11, 21):
        forged.append(seq, minutes(30 + seq), record_key=ATTACKER_RECORD_KEY)
    export = tmp_path / "audit.jsonl"
    write_export(path=export, records=forged.records, checkpoints=[first])
    # when an auditor verifies it as of 08:45 against the newer witness
    completed = run_verifier(
        str(export), "--public-key", key_b64(), "--witness", str(witness), "--as-of", "2026-05-09T08:45:00Z"
    )
    # then the made-up records are no one's signature's: the first is named an unsigned tail
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert completed.stdout.startswith(f"TAMPERED: unsigned_tail at seq 11, line 11 of {export}: "), (
        completed.stdout
    )


def test_the_witness_as_of_an_intact_old_export_names_only_what_was_signed_by_then(tmp_path: Path):
    # given an intact export made at 08:45 (seqs 1..10, its checkpoint at 08:30) and the witness since grown
    log = Log()
    for seq in range(1, 11):
        log.append(seq, minutes(seq))
    first = log.checkpoint(minutes(30))
    export = tmp_path / "audit.jsonl"
    write_export(path=export, records=log.records, checkpoints=[first])
    for seq in range(11, 21):
        log.append(seq, minutes(30 + seq))
    witness = write_witness(tmp_path / "witness.jsonl", [first, log.checkpoint(minutes(90))])
    # when verified as of 08:45
    outcome = verify_export(
        export_path=export,
        public_key=PUBLIC_KEY,
        witness=WitnessOptions(path=witness, as_of=minutes(45), interval_seconds=3600),
    )
    # then it is intact, checked against the one checkpoint witnessed by then
    assert outcome.problem is None
    assert outcome.witnessed == (first,)


def test_a_coverage_gap_does_not_hide_records_appended_past_every_signature(tmp_path: Path):
    # given a witness with the lab's own known outage (3 hours between checkpoints), and five records made up
    # after its last checkpoint
    log = Log()
    for seq in range(1, 11):
        log.append(seq, minutes(seq))
    first = log.checkpoint(minutes(30))
    for seq in range(11, 21):
        log.append(seq, minutes(120 + seq))
    last = log.checkpoint(minutes(210))
    for seq in range(21, 26):
        log.append(seq, minutes(220 + seq), record_key=ATTACKER_RECORD_KEY)
    export = tmp_path / "audit.jsonl"
    write_export(path=export, records=log.records, checkpoints=[first, last])
    witness = write_witness(tmp_path / "witness.jsonl", [first, last])
    # when verified against the witness just after the last checkpoint
    outcome = verify_export(
        export_path=export,
        public_key=PUBLIC_KEY,
        witness=WitnessOptions(path=witness, as_of=minutes(225), interval_seconds=3600),
    )
    # then the appended records are named, not the old gap
    assert outcome.problem is not None
    assert (outcome.problem.kind, outcome.problem.seq, outcome.problem.line) == ("unsigned_tail", 21, 21)
    assert outcome.problem_path == export


def intact_export(tmp_path: Path) -> tuple[Path, Path]:
    """Seqs 1..10, signed at 08:30, and the auditors' witness copy of that checkpoint."""
    log = Log()
    for seq in range(1, 11):
        log.append(seq, minutes(seq))
    checkpoint = log.checkpoint(minutes(30))
    export = tmp_path / "audit.jsonl"
    write_export(path=export, records=log.records, checkpoints=[checkpoint])
    return export, write_witness(tmp_path / "witness.jsonl", [checkpoint])


def test_a_witness_line_of_nested_brackets_is_named_malformed(tmp_path: Path):
    # given a witness line of 100000 opening brackets after its first
    export, witness = intact_export(tmp_path)
    with witness.open("ab") as witness_file:
        witness_file.write(NESTED)
    # when the offline verifier runs
    completed = run_verifier(
        str(export), "--public-key", key_b64(), "--witness", str(witness), "--as-of", "2026-05-09T08:45:00Z"
    )
    # then it names the line, no traceback
    assert completed.stderr == ""
    assert completed.returncode == 1
    assert completed.stdout.startswith(f"TAMPERED: malformed at line 2 of {witness}: bad checkpoint: ")


def test_an_export_line_of_nested_brackets_is_named_malformed(tmp_path: Path):
    # given the export's fifth record replaced by 100000 opening brackets
    export, _ = intact_export(tmp_path)
    lines = export.read_bytes().split(b"\n")
    lines[4] = NESTED.rstrip(b"\n")
    export.write_bytes(b"\n".join(lines))
    # when the offline verifier runs, with the record key
    completed = run_verifier(
        str(export), "--public-key", key_b64(), "--record-key", base64.b64encode(RECORD_KEY).decode()
    )
    # then it names the line, no traceback
    assert completed.stderr == ""
    assert completed.returncode == 1
    assert completed.stdout.startswith(f"TAMPERED: malformed at seq 5, line 5 of {export}: not a JSON line: ")


def test_a_checkpoints_line_of_nested_brackets_is_named_malformed(tmp_path: Path):
    # given the export's checkpoints file ending in 100000 opening brackets
    export, _ = intact_export(tmp_path)
    checkpoints = export.with_suffix(".checkpoints.jsonl")
    with checkpoints.open("ab") as checkpoints_file:
        checkpoints_file.write(NESTED)
    # when the offline verifier runs, then it names the line, no traceback
    completed = run_verifier(str(export), "--public-key", key_b64())
    assert completed.stderr == ""
    assert completed.returncode == 1
    assert completed.stdout.startswith(f"TAMPERED: malformed at line 2 of {checkpoints}: bad checkpoint: ")


def test_a_receipt_of_nested_brackets_is_named_malformed(tmp_path: Path):
    # given a "receipt" of 100000 opening brackets
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(NESTED)
    # when the offline verifier checks it, then it names it malformed, no traceback
    completed = run_verifier("--receipt", str(receipt), "--public-key", key_b64())
    assert completed.stderr == ""
    assert completed.returncode == 1
    assert completed.stdout.startswith(f"TAMPERED: malformed in {receipt}: not a JSON receipt: ")


def test_a_record_after_an_unsettled_checkpoint_is_judged_against_the_settled_one_before():
    # given seqs 1..10 signed settled at 08:30, the same heads signed as not settled at 08:31 with the key
    log = Log()
    for seq in range(1, 11):
        log.append(seq, minutes(seq))
    settled = log.checkpoint(minutes(30))
    check = BackdatingCheck([settled, log.checkpoint(minutes(31), settled=False)], public_key=PUBLIC_KEY)
    # when the rule sees seq 11, in an empty lane, dated 90 days back
    check.see(seq=11, lane=3, lane_seq=1, occurred_at=utc_timestamp(minutes(-90 * 24 * 60)), line=11)
    # then it is backdated against the settled checkpoint
    assert check.problem is not None
    assert (check.problem.kind, check.problem.seq, check.problem.lane) == ("backdated", 11, 3)
    assert "after the settled checkpoint of seq 10 signed at 2026-05-09T08:30:00.000000Z" in (
        check.problem.message
    )


def test_an_unsettled_witnessed_checkpoint_after_a_settled_one_is_named(tmp_path: Path):
    # given an intact export whose witness holds, after the settled checkpoint, the same heads signed as not
    # settled with the key
    log = Log()
    for seq in range(1, 11):
        log.append(seq, minutes(seq))
    settled, unsettled = log.checkpoint(minutes(30)), log.checkpoint(minutes(31), settled=False)
    export = tmp_path / "audit.jsonl"
    write_export(path=export, records=log.records, checkpoints=[settled, unsettled])
    witness = write_witness(tmp_path / "witness.jsonl", [settled, unsettled])
    # when verified against the witness
    outcome = verify_export(
        export_path=export,
        public_key=PUBLIC_KEY,
        witness=WitnessOptions(path=witness, as_of=minutes(45), interval_seconds=3600),
    )
    # then the unsettled line is named
    assert outcome.problem is not None
    assert (outcome.problem.kind, outcome.problem.seq, outcome.problem.line) == (
        "bad_checkpoint_signature",
        10,
        2,
    )
    assert outcome.problem_path == witness
