"""The offline verifier's command line:
`python -m lab.audit.verify EXPORT --public-key KEY [--witness CHECKPOINTS.jsonl] [--record-key KEY]`.
Needs only the export files, the auditor's pinned public key and (strongly advised) the auditor's copy of the
witness log: no Django, no database. The same command verifies a customer's signed privacy receipt:
`python -m lab.audit.verify --receipt RECEIPT.json --public-key KEY [--witness CHECKPOINTS.jsonl]`
(format and checks in lab/audit/receipt.py). A receipt whose audit record a restore marker names lost (and
did not keep) is reported "LOST", neither OK nor TAMPERED.

The export format: lab/audit/export_format.py; what is checked, and what cannot be:
lab/audit/export_verify.py.

Exit status: 0 intact (one summary line), 1 a problem (the first one: kind, seq, file and line), 2 the
export or a key could not be read or a key does not have a --fingerprint given (with --fingerprint, every
key given must be pinned). For a receipt checked against a witness, 3 and a line starting "LOST:" when the
receipt is genuine but a restore marker names its audit record lost (the lab's database was restored from a
backup taken before the record was written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lab.audit.export_format import checkpoints_path, read_checkpoints
from lab.audit.export_verify import (
    DEFAULT_INTERVAL_SECONDS,
    ExportVerification,
    WitnessOptions,
    verify_export,
)
from lab.audit.keys import KeyRing, load_public_key, load_record_key, public_key_fingerprint
from lab.audit.receipt import receipt_parse, receipt_summary, verify_receipt

# A genuine receipt whose audit record a database restore lost ("LOST": lab/audit/receipt.py).
RECEIPT_LOST_STATUS = 3


def _read_key_text(value: str) -> str:
    candidate = Path(value)
    # A base64 key may contain "/" but is never an existing file, so a path that exists wins.
    return candidate.read_text(encoding="utf-8") if candidate.is_file() else value


def _read_public_key(value: str) -> Ed25519PublicKey:
    return load_public_key(_read_key_text(value))


def _parse_as_of(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.audit.verify",
        description="Verify an audit export (records + signed checkpoints), or a signed privacy receipt,"
        " offline against a pinned key and the witness log.",
    )
    parser.add_argument("export", type=Path, nargs="?", help="the records file, e.g. audit.jsonl")
    parser.add_argument(
        "--receipt",
        type=Path,
        help="verify a customer's signed privacy receipt (the JSON the lab serves) instead of an export",
    )
    parser.add_argument(
        "--public-key",
        required=True,
        action="append",
        help="the signing public key: a PEM/base64 key file, or base64 of 32 raw bytes; again for every key"
        " a rotation retired (the current key first): each checkpoint is checked with the key its key_id"
        " names",
    )
    parser.add_argument(
        "--fingerprint",
        action="append",
        help="sha256 hex of a raw public key, to confirm the key is the pinned one; with several keys, give"
        " the fingerprint of each",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        help="checkpoints file (default: EXPORT with its last suffix replaced by .checkpoints.jsonl)",
    )
    parser.add_argument(
        "--witness", type=Path, help="the witness log (the auditors' copy of every signed checkpoint)"
    )
    parser.add_argument(
        "--interval",
        type=int,
        default=DEFAULT_INTERVAL_SECONDS,
        help="the lab's AUDIT_CHECKPOINT_SECONDS; witnessed checkpoints may be two intervals apart",
    )
    parser.add_argument(
        "--as-of",
        type=_parse_as_of,
        help="ISO time the witness is checked at (default: now); the time an older export was made",
    )
    parser.add_argument("--record-key", help="the record HMAC key (file or base64), if the auditor holds it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        keys = [_read_public_key(value) for value in arguments.public_key]
    except (OSError, ValueError) as error:
        parser.error(f"cannot read the public key: {error}")
    try:
        record_key = (
            None if arguments.record_key is None else load_record_key(_read_key_text(arguments.record_key))
        )
    except (OSError, ValueError) as error:
        parser.error(f"cannot read the record key: {error}")
    fingerprints = [public_key_fingerprint(key) for key in keys]
    _check_pinned(parser, fingerprints, arguments.fingerprint or [])
    public_keys = KeyRing(keys[0], tuple(keys[1:]))
    if arguments.receipt is not None:
        if arguments.export is not None or arguments.checkpoints is not None or record_key is not None:
            parser.error("--receipt takes only --public-key, --fingerprint and --witness")
        return _receipt_main(parser, arguments.receipt, arguments.witness, public_keys)
    if arguments.export is None:
        parser.error("name the export to verify (or a receipt with --receipt FILE)")
    checkpoint_path = arguments.checkpoints or checkpoints_path(arguments.export)
    if checkpoint_path.resolve() == arguments.export.resolve():
        parser.error("the records file and the checkpoints file must differ")
    witness = None
    if arguments.witness is not None:
        witness = WitnessOptions(
            path=arguments.witness,
            as_of=arguments.as_of or datetime.now(UTC),
            interval_seconds=arguments.interval,
        )
    try:
        outcome = verify_export(
            export_path=arguments.export,
            public_key=public_keys if len(keys) > 1 else keys[0],
            checkpoints_file=checkpoint_path,
            witness=witness,
            record_key=record_key,
        )
    except OSError as error:
        parser.error(f"cannot read the export: {error}")
    print(_summary(outcome, fingerprint=", ".join(fingerprints), checked_macs=record_key is not None))
    return 0 if outcome.is_intact else 1


def _check_pinned(
    parser: argparse.ArgumentParser, fingerprints: Sequence[str], pinned: Sequence[str]
) -> None:
    """With --fingerprint, every key given must be one of those pinned (exit 2 otherwise)."""
    if not pinned:
        return
    wanted = {value.strip().lower() for value in pinned}
    for fingerprint in fingerprints:
        if fingerprint in wanted:
            continue
        if len(fingerprints) == 1 and len(pinned) == 1:
            parser.error(f"the public key's fingerprint is {fingerprint}, not the pinned {pinned[0]}")
        parser.error(
            f"the public key {fingerprint} is not among the pinned fingerprints ({', '.join(sorted(wanted))})"
        )


def _receipt_main(
    parser: argparse.ArgumentParser, receipt_path: Path, witness_path: Path | None, public_keys: KeyRing
) -> int:
    """Verify one receipt file (and its anchoring checkpoint against the witness log, when given), with the
    key its key_id names among those given (the first one when it names none of the others)."""
    try:
        text = receipt_path.read_bytes()
    except OSError as error:
        parser.error(f"cannot read the receipt: {error}")
    witnessed = None
    if witness_path is not None:
        try:
            witnessed, witness_problem = read_checkpoints(witness_path)
        except OSError as error:
            parser.error(f"cannot read the witness log: {error}")
        if witness_problem is not None:
            line, message = witness_problem.line, witness_problem.message
            parser.error(f"cannot read the witness log: line {line}: {message}")
    try:
        receipt = receipt_parse(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError too; brackets nested too deeply
        print(f"TAMPERED: malformed in {receipt_path}: not a JSON receipt: {error}")
        return 1
    key_id = receipt.get("key_id") if isinstance(receipt, dict) else None
    public_key = public_keys.key_for(key_id) if isinstance(key_id, str) else public_keys.current
    outcome = verify_receipt(receipt=receipt, public_key=public_key, witnessed=witnessed)
    print(receipt_summary(outcome, fingerprint=public_key_fingerprint(public_key), path=str(receipt_path)))
    if outcome.problem is None and outcome.lost_in is not None:
        return RECEIPT_LOST_STATUS
    return 0 if outcome.is_intact else 1


def _summary(outcome: ExportVerification, *, fingerprint: str, checked_macs: bool = False) -> str:
    problem = outcome.problem
    if problem is None:
        records = outcome.records
        last = max([*outcome.checkpoints, *outcome.witnessed], key=lambda checkpoint: checkpoint.signed_at)
        witnessed = f"; {len(outcome.witnessed)} witnessed" if outcome.witnessed else ""
        macs = "; every record's mac valid" if checked_macs else ""
        lanes = (
            f" in {len(records.lanes)} lane{'s' if len(records.lanes) != 1 else ''}" if records.laned else ""
        )
        keys = f"keys {fingerprint}" if ", " in fingerprint else f"key {fingerprint}"
        restored = "".join(f"; {restore.note()}" for restore in outcome.restores)
        return (
            f"OK: {records.count} records (seq {records.first_seq or 1}..{records.head_seq}){lanes},"
            f" head {records.head_hash};"
            f" {len(outcome.checkpoints)} checkpoints signed by {keys}{witnessed};"
            f" last checkpoint seq {last.seq} signed at {last.signed_at}{macs}{restored}"
        )
    where = "" if problem.line is None else f" line {problem.line} of"
    seq = "" if problem.seq is None else f" seq {problem.seq},"
    return f"TAMPERED: {problem.kind} at{seq}{where} {outcome.problem_path}: {problem.message}"


if __name__ == "__main__":
    sys.exit(main())
