"""Every kind of tampering with an audit export is detected and located by the offline verifier.
Works on real export files and runs the real CLI in a subprocess where Django cannot be imported."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.audit.canonical import RECORD_FIELDS, export_line, seal_record
from lab.audit.checkpoints import Checkpoint
from lab.audit.export_format import checkpoints_path, export_entries, write_export
from lab.audit.export_verify import WitnessOptions, verify_export
from lab.audit.keys import public_key_b64, public_key_fingerprint
from lab.audit.problems import ChainProblem
from tests.audit import (
    CHECKPOINT_SEQS,
    RECORD_KEY,
    build_chain,
    export_lines,
    record_fields,
    rewrite_lines,
    sign_heads,
    write_sample_export,
)
from tests.support.audit_verifiers import verifier_run_without_django

SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
PUBLIC_KEY = SIGNING_KEY.public_key()
# Whoever edits an export has no record key: their records carry macs made with another.
ATTACKER_RECORD_KEY = bytes(range(200, 232))


@pytest.fixture
def export(tmp_path: Path) -> Path:
    return write_sample_export(directory=tmp_path, private_key=SIGNING_KEY)


def _problem(export: Path) -> ChainProblem | None:
    return verify_export(export_path=export, public_key=PUBLIC_KEY).problem


def _located(problem: ChainProblem | None) -> tuple[str, int | None, int | None]:
    assert problem is not None
    return problem.kind, problem.seq, problem.line


def _altered(value: object) -> object:
    """A different value of the same kind: one character changed, a null filled in, a seq moved by one."""
    if value is None:
        return "forged"
    if isinstance(value, int):
        return value + 1
    text = str(value)
    return text[:-1] + ("1" if text[-1] == "0" else "0")


def test_an_untouched_export_verifies(export: Path) -> None:
    # given an export written straight from a valid chain (fixture)
    # when it is verified
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY)
    # then nothing is wrong and the head is the last record
    assert outcome.problem is None
    assert outcome.problem_path is None
    assert outcome.records.count == 50
    assert outcome.records.head_seq == 50
    assert outcome.records.head_hash == build_chain(50)[-1]["hash"]
    assert [checkpoint.seq for checkpoint in outcome.checkpoints] == list(CHECKPOINT_SEQS)


@pytest.mark.parametrize("field", [*RECORD_FIELDS, "hash"])
def test_changing_any_field_of_a_record_is_located(export: Path, field: str) -> None:
    # given record 17 with one field changed and nothing recomputed (record 17 holds a null order_ref)
    lines = export_lines(export)
    record = json.loads(lines[16])
    record[field] = _altered(record[field])
    lines[16] = export_line(record)
    rewrite_lines(export, lines)
    # when verified
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY)
    # then record 17 on line 17 is named as altered
    assert _located(outcome.problem) == ("hash_mismatch", 17, 17)
    assert outcome.problem_path == export


@pytest.mark.parametrize("seq", [1, 2, 49, 50])
def test_changing_the_first_or_last_records_is_located(export: Path, seq: int) -> None:
    # given one record at either end with its justification changed
    lines = export_lines(export)
    record = json.loads(lines[seq - 1])
    record["justification"] = "nothing to see"
    lines[seq - 1] = export_line(record)
    rewrite_lines(export, lines)
    # when verified / then that record is named
    assert _located(_problem(export)) == ("hash_mismatch", seq, seq)


def test_blanking_a_nullable_field_is_located(export: Path) -> None:
    # given record 17 whose client_ip is set to null
    lines = export_lines(export)
    record = json.loads(lines[16])
    record["client_ip"] = None
    lines[16] = export_line(record)
    rewrite_lines(export, lines)
    # when verified / then record 17 is named
    assert _located(_problem(export)) == ("hash_mismatch", 17, 17)


def test_an_altered_record_with_a_recomputed_hash_breaks_the_link_from_the_next(export: Path) -> None:
    # given record 17 altered and given a fresh hash of its own
    lines = export_lines(export)
    record = json.loads(lines[16])
    record["purpose"] = "curiosity"
    lines[16] = export_line(
        seal_record(record, seq=17, prev_hash=record["prev_hash"], record_key=ATTACKER_RECORD_KEY)
    )
    rewrite_lines(export, lines)
    # when verified
    problem = _problem(export)
    # then the break is at record 18, which no longer links to 17
    assert _located(problem) == ("prev_hash_mismatch", 18, 18)
    assert problem is not None
    assert problem.message == (
        "record seq 18 does not link to the record before it (seq 17):"
        " that record was replaced, or this one was"
    )


def test_a_rewritten_chain_tail_is_caught_by_the_next_checkpoint(export: Path) -> None:
    # given records 17..50 rewritten from an altered record 17 with every hash recomputed
    records = build_chain(16)
    for seq in range(17, 51):
        fields = record_fields(seq) | ({"purpose": "curiosity"} if seq == 17 else {})
        records.append(
            seal_record(fields, seq=seq, prev_hash=str(records[-1]["hash"]), record_key=ATTACKER_RECORD_KEY)
        )
    rewrite_lines(export, [export_line(record) for record in records])
    # when verified
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY)
    # then the first checkpoint after the rewrite (line 3: seq 20) no longer matches
    assert _located(outcome.problem) == ("checkpoint_mismatch", 20, 3)
    assert outcome.problem_path == checkpoints_path(export)


def test_deleting_a_record_is_located(export: Path) -> None:
    # given record 17 removed
    lines = export_lines(export)
    del lines[16]
    rewrite_lines(export, lines)
    # when verified
    problem = _problem(export)
    # then seq 17 is missing at line 17
    assert _located(problem) == ("seq_gap", 17, 17)
    assert problem is not None
    assert problem.message == "seq 17 is missing (this line holds seq 18): deleted"


def test_deleting_several_records_names_the_range(export: Path) -> None:
    # given records 17..19 removed
    lines = export_lines(export)
    del lines[16:19]
    rewrite_lines(export, lines)
    # when verified
    problem = _problem(export)
    # then the range is named
    assert _located(problem) == ("seq_gap", 17, 17)
    assert problem is not None
    assert problem.message == "seqs 17..19 are missing (this line holds seq 20): deleted"


def test_inserting_a_well_formed_record_is_located(export: Path) -> None:
    # given a forged record 17, correctly hashed and linked to 16, placed before the real record 17
    lines = export_lines(export)
    previous_hash = json.loads(lines[15])["hash"]
    forged = seal_record(
        record_fields(17) | {"purpose": "maintenance"},
        seq=17,
        prev_hash=previous_hash,
        record_key=ATTACKER_RECORD_KEY,
    )
    lines.insert(16, export_line(forged))
    rewrite_lines(export, lines)
    # when verified
    problem = _problem(export)
    # then the inserted line 17 is named, not the genuine record after it
    assert _located(problem) == ("duplicate_seq", 17, 17)
    assert problem is not None
    assert problem.message == (
        "a second record with seq 17, not part of the chain (the chain continues through line 18): inserted"
    )


def test_a_repeated_record_is_located(export: Path) -> None:
    # given record 17 copied right after itself
    lines = export_lines(export)
    lines.insert(17, lines[16])
    rewrite_lines(export, lines)
    # when verified / then the repeat on line 18 is named
    assert _located(_problem(export)) == ("duplicate_seq", 17, 18)


def test_inserting_an_old_record_again_is_located(export: Path) -> None:
    # given a copy of record 5 inserted after record 30
    lines = export_lines(export)
    lines.insert(30, lines[4])
    rewrite_lines(export, lines)
    # when verified
    problem = _problem(export)
    # then line 31 is named as repeating seq 5
    assert _located(problem) == ("duplicate_seq", 5, 31)
    assert problem is not None
    assert problem.message == "seq 5 again (already on line 5)"


@pytest.mark.parametrize(("first", "second"), [(12, 30), (12, 13), (49, 50)])
def test_reordering_two_records_is_located(export: Path, first: int, second: int) -> None:
    # given two records swapped
    lines = export_lines(export)
    lines[first - 1], lines[second - 1] = lines[second - 1], lines[first - 1]
    rewrite_lines(export, lines)
    # when verified
    problem = _problem(export)
    # then the first displaced line is named
    assert _located(problem) == ("seq_out_of_order", first, first)
    assert problem is not None
    assert problem.message == f"holds seq {second} where seq {first} belongs: records were moved"


def test_truncating_the_tail_is_caught_by_a_checkpoint_beyond_it(export: Path) -> None:
    # given the last five records cut off
    rewrite_lines(export, export_lines(export)[:45])
    # when verified
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY)
    # then the first checkpoint of seq 50 (line 7) shows that seq 46 onwards is missing
    assert _located(outcome.problem) == ("truncated_after_checkpoint", 46, 7)
    assert outcome.problem_path == checkpoints_path(export)
    assert outcome.problem is not None
    assert outcome.problem.message == (
        "a checkpoint signs seq 50 but the records end at seq 45: seq 46 onwards removed"
    )


def test_cutting_back_to_an_earlier_checkpoint_needs_a_later_checkpoint(export: Path, tmp_path: Path) -> None:
    # given the tail cut back to seq 40 together with the checkpoints after it, while the auditor kept the
    # checkpoints file of an earlier export
    kept = tmp_path / "kept.checkpoints.jsonl"
    kept.write_bytes(checkpoints_path(export).read_bytes())
    rewrite_lines(export, export_lines(export)[:40])
    rewrite_lines(checkpoints_path(export), export_lines(checkpoints_path(export))[:6])
    # when verified with the export's own checkpoints, and then with the kept ones
    alone = verify_export(export_path=export, public_key=PUBLIC_KEY)
    against_kept = verify_export(export_path=export, public_key=PUBLIC_KEY, checkpoints_file=kept)
    # then the export alone looks intact (its last checkpoint is just older), the kept checkpoint catches it
    assert alone.problem is None
    assert alone.checkpoints[-1].seq == 40
    assert _located(against_kept.problem) == ("truncated_after_checkpoint", 41, 7)


def test_records_appended_after_the_last_checkpoint_are_refused(export: Path) -> None:
    # given a well-chained record 51 appended after the export's final checkpoint of seq 50
    lines = export_lines(export)
    head_hash = json.loads(lines[-1])["hash"]
    lines.append(
        export_line(
            seal_record(record_fields(51), seq=51, prev_hash=head_hash, record_key=ATTACKER_RECORD_KEY)
        )
    )
    rewrite_lines(export, lines)
    # when verified
    problem = _problem(export)
    # then seq 51 is named as not covered by any signature
    assert _located(problem) == ("unsigned_tail", 51, 51)


def test_an_export_without_checkpoints_is_refused(export: Path) -> None:
    # given an empty checkpoints file
    checkpoints_path(export).write_text("", encoding="utf-8")
    # when verified / then nothing counts as signed
    assert _located(_problem(export)) == ("unsigned_tail", 1, 1)


def test_a_forged_checkpoint_signature_is_located(export: Path) -> None:
    # given checkpoint line 3 (seq 20) with one signature character changed
    lines = export_lines(checkpoints_path(export))
    checkpoint = Checkpoint.from_line(lines[2])
    signature = checkpoint.signature
    forged = signature[:10] + ("B" if signature[10] == "A" else "A") + signature[11:]
    lines[2] = dataclasses.replace(checkpoint, signature=forged).to_line()
    rewrite_lines(checkpoints_path(export), lines)
    # when verified
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY)
    # then checkpoint line 3 is named
    assert _located(outcome.problem) == ("bad_checkpoint_signature", 20, 3)
    assert outcome.problem_path == checkpoints_path(export)


def test_a_checkpoint_moved_to_another_head_is_located(export: Path) -> None:
    # given checkpoint line 5 (seq 30) edited to sign record 31's hash and seq, keeping its signature
    lines = export_lines(checkpoints_path(export))
    checkpoint = Checkpoint.from_line(lines[4])
    record_31_hash = json.loads(export_lines(export)[30])["hash"]
    lines[4] = dataclasses.replace(checkpoint, seq=31, head_hash=record_31_hash).to_line()
    rewrite_lines(checkpoints_path(export), lines)
    # when verified / then the signature no longer fits
    assert _located(_problem(export)) == ("bad_checkpoint_signature", 31, 5)


def test_checkpoints_signed_by_another_key_are_refused(export: Path) -> None:
    # given the whole chain rewritten and every checkpoint re-signed with the attacker's own key
    records = build_chain(50)
    records[16] = seal_record(
        records[16] | {"purpose": "curiosity"},
        seq=17,
        prev_hash=str(records[15]["hash"]),
        record_key=ATTACKER_RECORD_KEY,
    )
    for index in range(17, 50):
        records[index] = seal_record(
            records[index],
            seq=index + 1,
            prev_hash=str(records[index - 1]["hash"]),
            record_key=ATTACKER_RECORD_KEY,
        )
    write_export(
        path=export,
        records=records,
        checkpoints=sign_heads(private_key=OTHER_KEY, records=records, seqs=CHECKPOINT_SEQS),
    )
    # when verified against the pinned key
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY)
    # then the first checkpoint is refused
    assert _located(outcome.problem) == ("bad_checkpoint_signature", 0, 1)


def test_checkpoints_going_backwards_are_refused(export: Path) -> None:
    # given the validly signed checkpoints of seq 30 and 40 swapped
    lines = export_lines(checkpoints_path(export))
    lines[4], lines[5] = lines[5], lines[4]
    rewrite_lines(checkpoints_path(export), lines)
    # when verified / then line 6 (seq 30 after 40) is named
    assert _located(_problem(export)) == ("checkpoint_mismatch", 30, 6)


def _replace_with(text: str) -> Callable[[bytes], bytes]:
    return lambda _line: text.encode("utf-8")


def _edit_record(change: Callable[[dict[str, object]], object]) -> Callable[[bytes], bytes]:
    def edit(line: bytes) -> bytes:
        record = json.loads(line)
        change(record)
        return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    return edit


MALFORMED_LINES: dict[str, Callable[[bytes], bytes]] = {
    "not json": _replace_with("this is not a record"),
    "cut short": lambda line: line[:100],
    "empty": _replace_with(""),
    "a list": _replace_with("[1, 2]"),
    "spaces": lambda line: json.dumps(json.loads(line), sort_keys=True).encode("utf-8"),
    "keys unsorted": lambda line: json.dumps(
        dict(reversed(json.loads(line).items())), separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8"),
    "ascii escapes": lambda line: json.dumps(
        json.loads(line), sort_keys=True, separators=(",", ":")
    ).encode(),
    "carriage return": lambda line: line + b"\r",
    "invalid utf-8": lambda line: line.replace(b"\xc3\x9c", b"\xc3\x28"),
    "duplicate key": lambda line: line[:-1] + b',"purpose":"printing"}',
    "extra field": _edit_record(lambda record: record.update(note="x")),
    "missing field": _edit_record(lambda record: record.pop("purpose")),
    "number for a string": _edit_record(lambda record: record.update(purpose=5)),
    "null for a required string": _edit_record(lambda record: record.update(purpose=None)),
    "seq as a string": _edit_record(lambda record: record.update(seq="23")),
    "seq as a boolean": _edit_record(lambda record: record.update(seq=True)),
    "hash as a number": _edit_record(lambda record: record.update(hash=1)),
}


@pytest.mark.parametrize("damage", MALFORMED_LINES, ids=list(MALFORMED_LINES))
def test_a_malformed_line_is_located(export: Path, damage: str) -> None:
    # given line 23 damaged
    lines = export.read_bytes().split(b"\n")
    lines[22] = MALFORMED_LINES[damage](lines[22])
    export.write_bytes(b"\n".join(lines))
    # when verified
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY)
    # then line 23, where seq 23 belongs, is named as malformed
    assert _located(outcome.problem) == ("malformed", 23, 23)
    assert outcome.problem_path == export


def test_a_malformed_checkpoint_line_is_located(export: Path) -> None:
    # given checkpoints line 2 with its seq as a string
    lines = export_lines(checkpoints_path(export))
    lines[1] = lines[1].replace('"seq":10', '"seq":"10"')
    rewrite_lines(checkpoints_path(export), lines)
    # when verified
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY)
    # then checkpoints line 2 is named
    assert _located(outcome.problem) == ("malformed", None, 2)
    assert outcome.problem_path == checkpoints_path(export)


def test_a_line_without_final_newline_is_read() -> None:
    # given the last line of an export without its newline
    record = build_chain(1)[0]
    # when parsed
    entries = list(export_entries([export_line(record).encode("utf-8")]))
    # then it parses to the record's chain entry
    assert entries == [(1, 1, record["prev_hash"], record["hash"], record["hash"], True)]


# --- the command line, run as an auditor would, where Django cannot be imported -----------------------


def _run_verifier(arguments: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return verifier_run_without_django(arguments, tmp_path)


def test_cli_accepts_an_intact_export_with_a_base64_key(export: Path, tmp_path: Path) -> None:
    # given an intact export and the signer's public key as base64
    head_hash = build_chain(50)[-1]["hash"]
    fingerprint = public_key_fingerprint(PUBLIC_KEY)
    # when the verifier runs
    completed = _run_verifier([str(export), "--public-key", public_key_b64(PUBLIC_KEY)], tmp_path)
    # then it exits 0 with a one-line summary
    assert completed.returncode == 0
    assert completed.stderr == ""
    assert completed.stdout == (
        f"OK: 50 records (seq 1..50), head {head_hash}; 8 checkpoints signed by key {fingerprint};"
        " last checkpoint seq 50 signed at 2026-05-09T15:00:00.000000Z\n"
    )


def test_cli_accepts_a_pem_key_file_with_its_pinned_fingerprint(export: Path, tmp_path: Path) -> None:
    # given the public key as a PEM file and its fingerprint
    key_file = tmp_path / "audit-signing.pub.pem"
    key_file.write_bytes(
        PUBLIC_KEY.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    fingerprint = public_key_fingerprint(PUBLIC_KEY)
    # when the verifier runs
    completed = _run_verifier(
        [str(export), "--public-key", str(key_file), "--fingerprint", fingerprint], tmp_path
    )
    # then it exits 0
    assert completed.returncode == 0
    assert completed.stdout.startswith("OK: 50 records")


def test_cli_names_the_first_broken_record(export: Path, tmp_path: Path) -> None:
    # given record 17 with its purpose changed
    lines = export_lines(export)
    record = json.loads(lines[16])
    record["purpose"] = "curiosity"
    lines[16] = export_line(record)
    rewrite_lines(export, lines)
    # when the verifier runs
    completed = _run_verifier([str(export), "--public-key", public_key_b64(PUBLIC_KEY)], tmp_path)
    # then it exits 1 naming seq 17 on line 17
    assert completed.returncode == 1
    assert completed.stdout == (
        f"TAMPERED: hash_mismatch at seq 17, line 17 of {export}:"
        " the record does not match its stored hash: a field was altered\n"
    )


def test_cli_names_a_checkpoint_signed_by_another_key(export: Path, tmp_path: Path) -> None:
    # given an intact export but the auditor's pinned key is another one
    other_public_key = public_key_b64(OTHER_KEY.public_key())
    # when the verifier runs
    completed = _run_verifier([str(export), "--public-key", other_public_key], tmp_path)
    # then it exits 1 naming the checkpoints file's first line
    assert completed.returncode == 1
    assert completed.stdout == (
        f"TAMPERED: bad_checkpoint_signature at seq 0, line 1 of {checkpoints_path(export)}:"
        " checkpoint for seq 0: the signature is not valid for the pinned public key\n"
    )


def test_cli_refuses_a_key_that_does_not_have_the_pinned_fingerprint(export: Path, tmp_path: Path) -> None:
    # given the signer's key but a pinned fingerprint of another key
    other_fingerprint = public_key_fingerprint(OTHER_KEY.public_key())
    # when the verifier runs
    completed = _run_verifier(
        [str(export), "--public-key", public_key_b64(PUBLIC_KEY), "--fingerprint", other_fingerprint],
        tmp_path,
    )
    # then it exits 2 without verifying anything
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.endswith(
        f"error: the public key's fingerprint is {public_key_fingerprint(PUBLIC_KEY)},"
        f" not the pinned {other_fingerprint}\n"
    )


def test_cli_refuses_an_unreadable_key(export: Path, tmp_path: Path) -> None:
    # given a public key argument that is neither a file nor a base64 key
    not_a_key = base64.b64encode(b"short").decode("ascii")
    # when the verifier runs
    completed = _run_verifier([str(export), "--public-key", not_a_key], tmp_path)
    # then it exits 2
    assert completed.returncode == 2
    assert completed.stderr.endswith(
        "error: cannot read the public key: a raw Ed25519 key is 32 bytes, this one is 5\n"
    )


# --- the witness log and the record key ------------------------------------------------------------------


def _witness(export: Path, tmp_path: Path) -> tuple[Path, str]:
    """The auditors' copy of the checkpoints (here: the export's own), and half an hour after the last."""
    witness = tmp_path / "witness.jsonl"
    witness.write_bytes(checkpoints_path(export).read_bytes())
    return witness, "2026-05-09T15:30:00Z"


def test_cli_accepts_an_intact_export_against_the_witness_with_the_record_key(
    export: Path, tmp_path: Path
) -> None:
    # given an intact export, the witness log and the record key
    witness, as_of = _witness(export, tmp_path)
    # when the verifier runs with all three
    completed = _run_verifier(
        [
            str(export),
            "--public-key",
            public_key_b64(PUBLIC_KEY),
            "--witness",
            str(witness),
            "--as-of",
            as_of,
            "--record-key",
            base64.b64encode(RECORD_KEY).decode(),
        ],
        tmp_path,
    )
    # then it exits 0, saying the macs were checked
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.endswith(
        "; 8 witnessed; last checkpoint seq 50 signed at 2026-05-09T15:00:00.000000Z;"
        " every record's mac valid\n"
    )


def test_cli_names_a_tail_cut_together_with_its_checkpoints_from_the_witness(
    export: Path, tmp_path: Path
) -> None:
    # given the tail cut back to seq 40 together with the export's checkpoints after it, the witness intact
    witness, as_of = _witness(export, tmp_path)
    rewrite_lines(export, export_lines(export)[:40])
    rewrite_lines(checkpoints_path(export), export_lines(checkpoints_path(export))[:6])
    # when the verifier runs with the witness
    completed = _run_verifier(
        [
            str(export),
            "--public-key",
            public_key_b64(PUBLIC_KEY),
            "--witness",
            str(witness),
            "--as-of",
            as_of,
        ],
        tmp_path,
    )
    # then the removed range is named from the witness's line 7
    assert completed.returncode == 1
    assert completed.stdout.startswith(
        f"TAMPERED: truncated_after_checkpoint at seq 41, line 7 of {witness}:"
    )
    assert "seqs 41..50 were removed" in completed.stdout


def test_a_stale_witness_is_named_offline(export: Path, tmp_path: Path) -> None:
    # given the witness checked three hours after its last checkpoint, with hourly checkpoints
    witness, _ = _witness(export, tmp_path)
    options = WitnessOptions(
        path=witness, as_of=datetime(2026, 5, 9, 18, 0, 1, tzinfo=UTC), interval_seconds=3600
    )
    # when verified
    outcome = verify_export(export_path=export, public_key=PUBLIC_KEY, witness=options)
    # then the unwitnessed seqs after the last checkpoint are named
    assert _located(outcome.problem) == ("stale_witness", 51, 8)
    assert outcome.problem_path == witness
