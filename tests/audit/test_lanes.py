"""The log as several hash chains ("lanes"): each lane is linear and gap-free on its own, seq orders all of
them (with gaps where a writer rolled back), checkpoints sign every lane's head, and every tampering is named
by its seq and lane — by the pure chain walk, by the offline verifier on an export, and by audit_verify on the
database, where concurrent writers really do write different lanes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction

from lab.audit import reading
from lab.audit.canonical import GENESIS_HASH, canonical_bytes, compute_hash, seal_record, utc_timestamp
from lab.audit.chain_checks import Unreadable, verify_checkpoints, verify_records
from lab.audit.checkpoints import Checkpoint, checkpoint_signature_is_valid, sign_checkpoint
from lab.audit.configured import public_key
from lab.audit.database_verify import audit_verify_database
from lab.audit.export import audit_export
from lab.audit.export_format import checkpoints_path, write_export
from lab.audit.export_verify import WitnessOptions, verify_export
from lab.audit.keys import public_key_b64
from lab.audit.lane_heads import LaneHead, lanes_checkpoint_head
from lab.audit.models import AuditCheckpoint, AuditHead, AuditRecord
from lab.audit.problems import ChainProblem
from lab.audit.records import Entry, audit_append
from lab.audit.signer import checkpoint_write
from tests.audit import CHAIN_START, RECORD_KEY, build_chain, export_lines, record_fields, rewrite_lines
from tests.builders import preview_entry

SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_KEY = SIGNING_KEY.public_key()
ATTACKER_RECORD_KEY = bytes(range(200, 232))
ROOT = Path(__file__).resolve().parents[2]
# The lane of each seq 1..: three lanes interleaved as concurrent writers fill them; None is a seq a writer
# took and then rolled back (no record).
LAYOUT: tuple[int | None, ...] = (1, 2, 1, 3, 2, None, 1, 2, 3, 3, 1, None, 2, 1, 3, 2, 1, 1, 2, 3)


def build_lanes(layout: tuple[int | None, ...] = LAYOUT) -> list[dict[str, object]]:
    """A valid laned log: record seq i+1 in lane layout[i], each lane chained on its own."""
    heads: dict[int, tuple[int, str]] = {}
    records = []
    for index, lane in enumerate(layout):
        if lane is None:
            continue
        position, previous = heads.get(lane, (0, GENESIS_HASH))
        record = seal_record(
            record_fields(index + 1),
            seq=index + 1,
            prev_hash=previous,
            record_key=RECORD_KEY,
            lane=lane,
            lane_seq=position + 1,
        )
        heads[lane] = (position + 1, str(record["hash"]))
        records.append(record)
    return records


def lane_heads(records: list[dict[str, object]]) -> tuple[LaneHead, ...]:
    heads: dict[int, LaneHead] = {}
    for record in records:
        lane = int(str(record.get("lane", 1)))
        position = int(str(record.get("lane_seq") or record["seq"]))
        heads[lane] = (lane, position, int(str(record["seq"])), str(record["hash"]))
    return tuple(heads[lane] for lane in sorted(heads))


def checkpoint_of(records: list[dict[str, object]], *, hours: int = 0) -> Checkpoint:
    heads = lane_heads(records)
    seq, head_hash = lanes_checkpoint_head(heads)
    return sign_checkpoint(
        private_key=SIGNING_KEY,
        key_id="audit-2026",
        seq=seq,
        head_hash=head_hash,
        signed_at=utc_timestamp(CHAIN_START + timedelta(hours=hours)),
        lanes=heads,
    )


def seq_of(records: list[dict[str, object]], lane: int, position: int) -> int:
    return next(int(str(r["seq"])) for r in records if (r["lane"], r["lane_seq"]) == (lane, position))


# --- the record format -------------------------------------------------------------------------------


def test_a_laned_record_hashes_its_lane_and_its_position() -> None:
    # given a record of lane 2 at position 3
    record = seal_record(
        record_fields(7), seq=7, prev_hash="a" * 64, record_key=RECORD_KEY, lane=2, lane_seq=3
    )
    # when it is serialized
    serialized = canonical_bytes(record)
    # then lane and lane_seq are integers among the sorted keys, and moving it changes its hash
    assert b'"justification":' in serialized
    assert b',"lane":2,"lane_seq":3,"occurred_at":' in serialized
    assert compute_hash(record | {"lane": 3}) != record["hash"]
    assert compute_hash(record | {"lane_seq": 4}) != record["hash"]
    # and a record without them is hashed as before lanes existed (the test vectors of test_chain.py)
    assert b'"lane"' not in canonical_bytes(
        {k: v for k, v in record.items() if k not in ("lane", "lane_seq")}
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [({"lane": 0}, "lane must be at least 1"), ({"lane_seq": True}, "lane_seq must be an integer, not bool")],
)
def test_a_lane_or_position_that_is_not_a_positive_integer_is_refused(
    change: dict[str, object], message: str
) -> None:
    record = build_lanes()[0] | change
    with pytest.raises(ValueError, match=f"^{message}$"):
        canonical_bytes(record)


# --- the walk ------------------------------------------------------------------------------------------


def test_interleaved_lanes_with_rolled_back_seqs_verify() -> None:
    # given three interleaved lanes and two seqs no record holds
    records = build_lanes()
    # when verified
    result = verify_records(records, record_key=RECORD_KEY)
    # then every record counts, each lane ends at its last record, and the free seqs are known
    assert result.problem is None
    assert (result.count, result.head_seq, result.first_seq, result.laned) == (18, 20, 1, True)
    assert dict(result.lanes) == {head[0]: head for head in lane_heads(records)}
    assert result.absent == ((6, 6), (12, 12))


def test_deleting_a_record_names_its_seq_and_lane() -> None:
    # given lane 1's sixth record (seq 17) deleted
    records = [r for r in build_lanes() if r["seq"] != 17]
    # when verified
    problem = verify_records(records, record_key=RECORD_KEY).problem
    # then the walk stops at lane 1's next record (seq 18, line 15) and names seq 17: the seq between lane 1's
    # last good record and it that holds no record
    assert problem == ChainProblem(
        17,
        15,
        "seq_gap",
        "lane 1 #6 is missing (after seq 14 before seq 18, which holds lane 1 #7): deleted",
        1,
    )


def test_a_deleted_record_next_to_a_rolled_back_seq_is_named_within_its_range() -> None:
    # given lane 2's third record (seq 8) deleted, where seq 6 never held a record (a writer rolled back)
    records = [r for r in build_lanes() if r["seq"] != 8]
    # when verified
    problem = verify_records(records, record_key=RECORD_KEY).problem
    # then the first seq without a record in that window is named, and the message gives the window
    assert problem is not None
    assert (problem.kind, problem.seq, problem.lane) == ("seq_gap", 6, 2)
    assert "lane 2 #3 is missing (after seq 5 before seq 13" in problem.message


def test_moving_a_record_to_another_lane_is_named() -> None:
    # given seq 9 (lane 3 #2) moved to lane 1 by someone without the record key, its hash recomputed
    records = build_lanes()
    index = next(i for i, r in enumerate(records) if r["seq"] == 9)
    records[index] = seal_record(
        records[index],
        seq=9,
        prev_hash=str(records[index]["prev_hash"]),
        record_key=ATTACKER_RECORD_KEY,
        lane=1,
        lane_seq=4,
    )
    # when verified with and without the record key
    with_key = verify_records(records, record_key=RECORD_KEY).problem
    without_key = verify_records(records).problem
    # then the key names the forged record; without it, lane 1 no longer links up at that record
    assert with_key is not None and (with_key.kind, with_key.seq, with_key.lane) == ("bad_mac", 9, 1)
    assert without_key is not None and (without_key.kind, without_key.seq, without_key.lane) == (
        "prev_hash_mismatch",
        9,
        1,
    )


def test_records_of_two_lanes_swapped_in_the_seq_order_are_named() -> None:
    # given the lines of seq 10 (lane 3) and seq 11 (lane 1) swapped
    records = build_lanes()
    first = next(i for i, r in enumerate(records) if r["seq"] == 10)
    records[first], records[first + 1] = records[first + 1], records[first]
    # when verified
    problem = verify_records(records).problem
    # then the line holding seq 10 after seq 11 is named
    assert problem is not None
    assert (problem.kind, problem.seq, problem.line) == ("seq_out_of_order", 10, first + 2)


def test_a_copied_record_is_named() -> None:
    # given seq 13 copied right after itself
    records = build_lanes()
    index = next(i for i, r in enumerate(records) if r["seq"] == 13)
    records.insert(index + 1, records[index])
    # when verified / then the copy is named
    problem = verify_records(records).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.line) == ("duplicate_seq", 13, index + 2)


def test_a_record_forged_into_a_rolled_back_seq_is_named() -> None:
    # given a record forged at seq 6 (no record there) as lane 2's next record, chained correctly
    records = build_lanes()
    index = next(i for i, r in enumerate(records) if r["seq"] == 7)
    lane_two_head = next(r for r in records if (r["lane"], r["lane_seq"]) == (2, 2))
    forged = seal_record(
        record_fields(6) | {"purpose": "maintenance"},
        seq=6,
        prev_hash=str(lane_two_head["hash"]),
        record_key=ATTACKER_RECORD_KEY,
        lane=2,
        lane_seq=3,
    )
    records.insert(index, forged)
    # when verified with and without the record key
    with_key = verify_records(records, record_key=RECORD_KEY).problem
    without_key = verify_records(records).problem
    # then the key names it; without the key, the genuine lane 2 #3 then forks from the same record
    assert with_key is not None and (with_key.kind, with_key.seq, with_key.lane) == ("bad_mac", 6, 2)
    assert without_key is not None
    assert (without_key.kind, without_key.seq, without_key.lane) == ("duplicate_seq", 8, 2)
    assert "seq 6" in without_key.message and "one of the two was inserted" in without_key.message


def test_a_log_from_before_lanes_continues_in_lane_one() -> None:
    # given ten records from before lanes, then lanes 1 and 2 (lane 1 continuing from record 10)
    legacy = build_chain(10)
    laned: list[dict[str, object]] = []
    heads = {1: (10, str(legacy[-1]["hash"])), 2: (0, GENESIS_HASH)}
    for seq, lane in zip(range(11, 17), (1, 2, 2, 1, 2, 1), strict=True):
        position, previous = heads[lane]
        record = seal_record(
            record_fields(seq),
            seq=seq,
            prev_hash=previous,
            record_key=RECORD_KEY,
            lane=lane,
            lane_seq=position + 1,
        )
        heads[lane] = (position + 1, str(record["hash"]))
        laned.append(record)
    records = [*legacy, *laned]
    old = sign_checkpoint(
        private_key=SIGNING_KEY,
        key_id="audit-2026",
        seq=10,
        head_hash=str(legacy[-1]["hash"]),
        signed_at=utc_timestamp(CHAIN_START),
    )
    new = checkpoint_of(records, hours=1)
    # when verified, with both checkpoints
    result = verify_records(records, record_key=RECORD_KEY)
    checked = verify_checkpoints(
        [old, new],
        public_key=PUBLIC_KEY,
        heads={int(str(r["seq"])): str(r["hash"]) for r in records},
        head_seq=result.head_seq,
        lane_heads=result.lanes,
    )
    # then both verify, and lane 1 holds the old records and its new ones
    assert (result.problem, checked) == (None, None)
    assert result.lanes[1][:3] == (1, 13, 16)
    assert new.lanes == (result.lanes[1], result.lanes[2])
    # and an old record altered is named as before
    records[4] = records[4] | {"justification": "nothing to see"}
    problem = verify_records(records).problem
    assert problem == ChainProblem(
        5, 5, "hash_mismatch", "the record does not match its stored hash: a field was altered"
    )


# --- checkpoints ----------------------------------------------------------------------------------------


def test_a_laned_checkpoint_signs_every_lane_head_and_round_trips() -> None:
    # given a checkpoint of the three lanes
    records = build_lanes()
    checkpoint = checkpoint_of(records)
    # when written as a line and read back
    line = checkpoint.to_line()
    # then it carries the lanes, verifies, and any lane head changed breaks its signature
    assert json.loads(line)["lanes"] == [list(head) for head in lane_heads(records)]
    assert Checkpoint.from_line(line) == checkpoint
    assert (checkpoint.seq, checkpoint.head_hash) == (20, records[-1]["hash"])
    assert checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=PUBLIC_KEY)
    moved = (*checkpoint.lanes[:1], (2, 5, 16, checkpoint.lanes[1][3]), *checkpoint.lanes[2:])
    assert not checkpoint_signature_is_valid(
        checkpoint=dataclasses.replace(checkpoint, lanes=moved), public_key=PUBLIC_KEY
    )


def test_a_truncated_lane_is_named_by_the_checkpoint_that_signs_it() -> None:
    # given a checkpoint of the whole log, then lane 2's last two records (seqs 16 and 19) removed
    records = build_lanes()
    checkpoint = checkpoint_of(records)
    kept = [r for r in records if r["seq"] not in (16, 19)]
    result = verify_records(kept)
    heads = {int(str(r["seq"])): str(r["hash"]) for r in kept}
    # when the checkpoint is checked against what is left
    problem = verify_checkpoints(
        [checkpoint],
        public_key=PUBLIC_KEY,
        heads=heads,
        head_seq=result.head_seq,
        lane_heads=result.lanes,
        absent=result.absent,
    )
    # then lane 2 is named, from seq 16: the first seq after its last record (13) that no record holds
    assert result.problem is None
    assert problem is not None
    assert (problem.kind, problem.seq, problem.lane) == ("truncated_after_checkpoint", 16, 2)


def test_a_checkpoint_that_rolls_a_lane_back_is_refused() -> None:
    # given a checkpoint of the whole log followed by one signing lane 2 at an earlier position
    records = build_lanes()
    later = checkpoint_of(records)
    earlier = checkpoint_of([r for r in records if int(str(r["seq"])) <= 16 or r["lane"] != 2], hours=1)
    heads = {int(str(r["seq"])): str(r["hash"]) for r in records}
    # when verified / then the rollback is named
    problem = verify_checkpoints([later, earlier], public_key=PUBLIC_KEY, heads=heads)
    assert problem is not None
    assert (problem.kind, problem.line, problem.lane) == ("checkpoint_mismatch", 2, 2)


# --- exports ------------------------------------------------------------------------------------------------


@pytest.fixture
def laned_export(tmp_path: Path) -> Path:
    records = build_lanes()
    path = tmp_path / "audit.jsonl"
    write_export(
        path=path, records=records, checkpoints=[checkpoint_of(records[:9]), checkpoint_of(records, hours=1)]
    )
    return path


def _run_verifier(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.audit.verify", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_laned_export_verifies_offline(laned_export: Path, tmp_path: Path) -> None:
    # given the auditors' witness copy of its checkpoints
    witness = tmp_path / "witness.jsonl"
    witness.write_bytes(checkpoints_path(laned_export).read_bytes())
    # when the offline verifier runs with the witness and the record key
    completed = _run_verifier(
        str(laned_export),
        "--public-key",
        public_key_b64(PUBLIC_KEY),
        "--witness",
        str(witness),
        "--as-of",
        "2026-05-09T09:30:00Z",
        "--record-key",
        __import__("base64").b64encode(RECORD_KEY).decode(),
    )
    # then it is intact, and says how many lanes it read
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith(
        f"OK: 18 records (seq 1..20) in 3 lanes, head {build_lanes()[-1]['hash']};"
    )


def test_a_record_deleted_from_a_laned_export_is_named_offline(laned_export: Path) -> None:
    # given lane 2's fifth record (seq 16) deleted from the export
    lines = export_lines(laned_export)
    rewrite_lines(laned_export, [line for line in lines if json.loads(line)["seq"] != 16])
    # when verified
    completed = _run_verifier(str(laned_export), "--public-key", public_key_b64(PUBLIC_KEY))
    # then seq 16 is named, on the line of lane 2's next record (seq 19)
    assert completed.returncode == 1
    assert completed.stdout.startswith(
        f"TAMPERED: seq_gap at seq 16, line 16 of {laned_export}: lane 2 #5 is missing"
    )


def test_records_of_a_lane_after_its_last_checkpoint_are_unsigned(tmp_path: Path) -> None:
    # given an export whose only checkpoint predates lane 2's last two records
    records = build_lanes()
    path = tmp_path / "audit.jsonl"
    signed = [r for r in records if not (r["lane"] == 2 and int(str(r["lane_seq"])) > 4)]
    write_export(path=path, records=records, checkpoints=[checkpoint_of(signed)])
    # when verified / then lane 2's first unsigned record is named
    problem = verify_export(export_path=path, public_key=PUBLIC_KEY).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.lane) == ("unsigned_tail", 16, 2)


def test_a_witnessed_laned_checkpoint_catches_a_lane_cut_with_its_checkpoints(
    laned_export: Path, tmp_path: Path
) -> None:
    # given the witness, then lane 1's records after seq 14 cut together with the export's last checkpoint
    witness = tmp_path / "witness.jsonl"
    witness.write_bytes(checkpoints_path(laned_export).read_bytes())
    lines = [
        line
        for line in export_lines(laned_export)
        if not (json.loads(line)["lane"] == 1 and json.loads(line)["seq"] > 14)
    ]
    rewrite_lines(laned_export, lines)
    rewrite_lines(checkpoints_path(laned_export), export_lines(checkpoints_path(laned_export))[:1])
    options = WitnessOptions(
        path=witness, as_of=CHAIN_START + timedelta(hours=1, minutes=30), interval_seconds=3600
    )
    # when verified against the witness
    outcome = verify_export(export_path=laned_export, public_key=PUBLIC_KEY, witness=options)
    # then the witness's second checkpoint names lane 1 from seq 17, its first record removed
    assert outcome.problem is not None
    assert (outcome.problem.kind, outcome.problem.seq, outcome.problem.lane) == (
        "truncated_after_checkpoint",
        17,
        1,
    )
    assert outcome.problem_path == witness


# --- the database: concurrent writers write different lanes -------------------------------------------


def _entry(name: str) -> Entry:
    return preview_entry(name, asset_id=f"asset-{name}", order_ref="PL-LANES")


def _append_elsewhere(names: list[str], done: list[AuditRecord]) -> None:
    """Appends from another thread (another database connection), each in its own transaction."""
    try:
        for name in names:
            with transaction.atomic():
                done.append(audit_append(_entry(name)))
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_writer_takes_a_free_lane_while_another_holds_one(tmp_path: Path) -> None:
    # given a first record, then a transaction holding lane 1 while another connection appends twice
    # (an empty log's first records are written one at a time: it restarts at seq 1)
    first = audit_append(_entry("first"))
    others: list[AuditRecord] = []
    with transaction.atomic():
        mine = audit_append(_entry("holder"))
        thread = threading.Thread(target=_append_elsewhere, args=(["other-1", "other-2"], others))
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()
    last = audit_append(_entry("after"))
    # then the other writer did not wait for lane 1: it wrote lane 2, before the holder committed
    assert [(r.lane, r.lane_seq, r.seq) for r in (first, mine)] == [(1, 1, 1), (1, 2, 2)]
    assert [(r.lane, r.lane_seq, r.seq) for r in others] == [(2, 1, 3), (2, 2, 4)]
    assert (last.lane, last.lane_seq, last.seq) == (1, 3, 5)
    assert list(AuditHead.objects.filter(seq__gt=0).order_by("id").values_list("id", "seq")) == [
        (1, 3),
        (2, 2),
    ]
    # and the signer's checkpoint signs both lanes, the log verifies, and so does its export offline
    checkpoint_write()
    row = AuditCheckpoint.objects.get()
    assert [head[:3] for head in json.loads(row.lanes)] == [[1, 3, 5], [2, 2, 4]]
    assert audit_verify_database().problem is None
    export = tmp_path / "audit.jsonl"
    outcome = audit_export(path=export, actor_id="auditor-1", actor_role="auditor")
    assert outcome.problem is None
    completed = _run_verifier(
        str(export),
        "--public-key",
        public_key_b64(public_key()),
        "--record-key",
        settings.AUDIT_RECORD_KEY,
    )
    assert completed.stdout.startswith("OK: 6 records (seq 1..6) in 2 lanes"), (
        completed.stdout + completed.stderr
    )
    # when the superuser deletes lane 2's first record
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM audit_auditrecord WHERE seq = 3")
        cursor.execute("SET session_replication_role = DEFAULT")
    # then audit_verify names it by its seq, in lane 2
    with pytest.raises(CommandError, match=r"^TAMPERED: seq_gap at seq 3: lane 2 #1 is missing"):
        call_command("audit_verify")


@pytest.mark.django_db(transaction=True)
def test_an_export_ends_at_the_checkpoint_it_signs_while_others_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a busy lab: another connection appends while the export's checkpoint is mailed, after signing
    audit_append(_entry("before"))
    during: list[AuditRecord] = []

    def mail_while_another_appends(checkpoint: Checkpoint) -> None:
        thread = threading.Thread(target=_append_elsewhere, args=(["during-mail"], during))
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()

    monkeypatch.setattr("lab.audit.signer._mail_checkpoint", mail_while_another_appends)
    export = tmp_path / "audit.jsonl"
    # when exported
    outcome = audit_export(path=export, actor_id="auditor-1", actor_role="auditor")
    # then the export ends at the checkpoint it signed (the record and the export's own), without the record
    # appended since, and verifies offline: no unsigned tail
    completed = _run_verifier(
        str(export),
        "--public-key",
        public_key_b64(public_key()),
        "--record-key",
        settings.AUDIT_RECORD_KEY,
    )
    assert completed.stdout.startswith("OK: 2 records (seq 1..2) in 1 lane,"), (
        completed.stdout + completed.stderr
    )
    assert [(r.lane, r.lane_seq, r.seq) for r in during] == [(1, 3, 3)]
    assert (outcome.problem, outcome.records, outcome.checkpoints) == (None, 2, 1)
    assert audit_verify_database().problem is None


def _append_and_sign_elsewhere(done: list[AuditRecord]) -> None:
    """An append, then a checkpoint, from another thread (another database connection)."""
    try:
        with transaction.atomic():
            done.append(audit_append(_entry("during-walk")))
        checkpoint_write()
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_checkpoint_signed_during_the_walk_of_audit_verify_is_not_a_truncation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given two signed records, and audit_verify's walk during which another connection appends a record
    # and signs a checkpoint of it
    audit_append(_entry("first"))
    audit_append(_entry("second"))
    checkpoint_write()
    during: list[AuditRecord] = []

    def records_while_signing(**options: Any) -> Iterator[dict[str, object] | Unreadable]:
        records = reading.records_in_seq_order(**options)
        first = next(records, None)  # the walk has read the records as they were when it started
        if first is not None:
            yield first
        if not during:
            thread = threading.Thread(target=_append_and_sign_elsewhere, args=(during,))
            thread.start()
            thread.join(timeout=30)
            assert not thread.is_alive()
        yield from records

    monkeypatch.setattr("lab.audit.database_verify.records_in_seq_order", records_while_signing)
    # when the database is verified
    verified = audit_verify_database()
    # then the new checkpoint was signed during the walk, and neither it nor its record are in the check: no
    # truncation, no problem
    assert [r.seq for r in during] == [3]
    assert AuditCheckpoint.objects.order_by("pk").values_list("seq", flat=True)[1] == 3
    assert (verified.problem, verified.count, verified.checkpoints) == (None, 2, 1)
    # and the next verification holds both
    monkeypatch.undo()
    assert audit_verify_database().problem is None
