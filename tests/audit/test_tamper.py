"""A malicious database administrator against the audit log: every tampering, done as the PostgreSQL
superuser (triggers switched off), is named by `manage.py audit_verify` and by the offline verifier run on an
export made afterwards, both checking the chain against the witness log that lives outside the database."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeAlias

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from lab.audit.canonical import EXPORT_FIELDS, EXPORT_FIELDS_LANED, GENESIS_HASH, is_laned, seal_record
from lab.audit.checkpoints import sign_checkpoint
from lab.audit.configured import public_key, witness_sink
from lab.audit.database_verify import audit_verify_database
from lab.audit.export import audit_export
from lab.audit.keys import public_key_b64
from lab.audit.models import AuditCheckpoint, AuditHead, AuditRecord
from lab.audit.records import record_as_chain_dict
from lab.audit.signer import AuditChainBroken, checkpoint_write
from lab.audit.witness import FileWitness
from tests.builders import audit_write
from tests.support.audit_insiders import app_role_create
from tests.support.audit_verifiers import audit_verify_says, export_for_auditors, offline_verifier, witness_at

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
# Whoever tampers from the database side has no record key; their macs are made with a key of their own.
ATTACKER_RECORD_KEY = bytes(range(200, 232))
ATTACKER_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
COLUMNS = EXPORT_FIELDS
# A statement the superuser runs: SQL and its parameters (a record's fields are str, int or None; its time is
# stored as a timestamp).
SqlValue: TypeAlias = str | int | datetime | None
Statement: TypeAlias = tuple[str, list[SqlValue]]


def columns(record: dict[str, object]) -> tuple[str, ...]:
    """The stored columns of a record: with its lane and lane position for a record written in a lane."""
    return EXPORT_FIELDS_LANED if is_laned(record) else COLUMNS


@pytest.fixture
def lab_log() -> FileWitness:
    """30 records, a checkpoint signed and witnessed after every 10 (seqs 10, 20, 30)."""
    for _ in range(3):
        audit_write(10)
        checkpoint_write()
    assert audit_verify_database().problem is None
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    assert [checkpoint.seq for checkpoint in sink.read_all()[0]] == [10, 20, 30]
    return sink


def as_superuser(*statements: Statement) -> None:
    """The superuser's way around every trigger: replication mode, for this transaction only."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for sql, parameters in statements:
            cursor.execute(sql, parameters)
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def record_dicts() -> list[dict[str, object]]:
    return [record_as_chain_dict(record) for record in AuditRecord.objects.order_by("seq")]


def update_row(record: dict[str, object], *, where_seq: int) -> Statement:
    names = [name for name in columns(record) if name != "seq"]
    assignments = ", ".join(f"{name} = %s" for name in names)
    values = [sql_value(record[name]) for name in names]
    values[names.index("occurred_at")] = _timestamp(str(record["occurred_at"]))
    return f"UPDATE audit_auditrecord SET seq = %s, {assignments} WHERE seq = %s", [
        sql_value(record["seq"]),
        *values,
        where_seq,
    ]


def insert_row(record: dict[str, object]) -> Statement:
    names = columns(record)
    values = [sql_value(record[name]) for name in names]
    values[names.index("occurred_at")] = _timestamp(str(record["occurred_at"]))
    placeholders = ", ".join(["%s"] * len(names))
    return f"INSERT INTO audit_auditrecord ({', '.join(names)}) VALUES ({placeholders})", values


def sql_value(value: object) -> SqlValue:
    assert value is None or isinstance(value, str | int), f"not a record field's value: {value!r}"
    return value


def _timestamp(text: str) -> datetime:
    from lab.audit.witness_check import parse_timestamp

    return parse_timestamp(text)


def set_head(seq: int, head_hash: str) -> Statement:
    return "UPDATE audit_audithead SET seq = %s, hash = %s WHERE id = 1", [seq, head_hash]


def rewritten_from(seq: int) -> list[dict[str, object]]:
    """Records seq.. rewritten (record seq's purpose changed), every later hash recomputed to chain on."""
    records = record_dicts()
    previous_hash = str(records[seq - 2]["hash"]) if seq > 1 else GENESIS_HASH
    rewritten = []
    for record in records[seq - 1 :]:
        changed = record | ({"purpose": "maintenance"} if record["seq"] == seq else {})
        sealed = seal_record(
            changed, seq=int(str(record["seq"])), prev_hash=previous_hash, record_key=ATTACKER_RECORD_KEY
        )
        rewritten.append(sealed)
        previous_hash = str(sealed["hash"])
    return rewritten


def forged_next() -> dict[str, object]:
    """A record framing technician X, correctly chained after the current last record (in its lane)."""
    last = record_dicts()[-1]
    fields = last | {"actor_id": "technician-x", "asset_id": "asset-framed", "action": "image.download"}
    return seal_record(
        fields,
        seq=int(str(last["seq"])) + 1,
        prev_hash=str(last["hash"]),
        record_key=ATTACKER_RECORD_KEY,
        lane=int(str(last["lane"])),
        lane_seq=int(str(last["lane_seq"])) + 1,
    )


# --- the two verifiers ----------------------------------------------------------------------------------


def offline_says(tmp_path: Path, witness: Path, *, with_record_key: bool = True) -> tuple[str, Path]:
    """Export (as the lab does after the tampering), then the auditor's offline verifier with the witness."""
    export = export_for_auditors(tmp_path)
    completed = offline_verifier(export, witness, interval=True, with_record_key=with_record_key)
    assert completed.stderr == ""
    return completed.stdout, export


@dataclass(frozen=True)
class Case:
    tamper: Callable[[], None]
    audit_verify: str  # "kind at seq N" expected from audit_verify
    offline: str  # ... and from the offline verifier (with the record key)
    offline_without_key: str | None = None


def change_field() -> None:
    as_superuser(("UPDATE audit_auditrecord SET justification = 'nothing to see' WHERE seq = 14", []))


def delete_middle() -> None:
    as_superuser(("DELETE FROM audit_auditrecord WHERE seq = 14", []))


def swap_two() -> None:
    records = record_dicts()
    fourteen, fifteen = records[13], records[14]
    as_superuser(
        update_row(fifteen | {"seq": 1_000_015}, where_seq=15),
        update_row(fourteen | {"seq": 15}, where_seq=14),
        update_row(fifteen | {"seq": 14}, where_seq=1_000_015),
    )


def forge_in_the_middle() -> None:
    records = record_dicts()
    forged = seal_record(
        records[16] | {"actor_id": "technician-x"},
        seq=17,
        prev_hash=str(records[15]["hash"]),
        record_key=ATTACKER_RECORD_KEY,
    )
    as_superuser(update_row(forged, where_seq=17))


def append_forged() -> None:
    # No trigger needs switching off to insert; the head row is left alone.
    with connection.cursor() as cursor:
        cursor.execute(*insert_row(forged_next()))


def append_forged_and_move_head() -> None:
    forged = forged_next()
    as_superuser(insert_row(forged), set_head(int(str(forged["seq"])), str(forged["hash"])))


def cut_the_tail() -> None:
    records = record_dicts()
    as_superuser(
        ("DELETE FROM audit_auditrecord WHERE seq > 20", []),
        ("DELETE FROM audit_auditcheckpoint WHERE seq > 20", []),
        set_head(20, str(records[19]["hash"])),
    )


def rewrite_from_14() -> None:
    rewritten = rewritten_from(14)
    as_superuser(
        *[update_row(record, where_seq=int(str(record["seq"]))) for record in rewritten],
        set_head(30, str(rewritten[-1]["hash"])),
    )


def rewrite_from_14_and_delete_checkpoints_after_it() -> None:
    rewrite_from_14()
    as_superuser(("DELETE FROM audit_auditcheckpoint WHERE seq >= 14", []))


def rewrite_from_14_and_delete_every_checkpoint() -> None:
    rewrite_from_14()
    as_superuser(("DELETE FROM audit_auditcheckpoint", []))


def truncate_everything() -> None:
    as_superuser(
        ("TRUNCATE audit_auditrecord, audit_auditcheckpoint, audit_audithead CASCADE", []),
        ("INSERT INTO audit_audithead (id, seq, hash) VALUES (1, 0, %s)", [GENESIS_HASH]),
    )


CASES: dict[str, Case] = {
    "change a field": Case(change_field, "hash_mismatch at seq 14", "hash_mismatch at seq 14"),
    "delete a middle record": Case(delete_middle, "seq_gap at seq 14", "seq_gap at seq 14"),
    "swap two records": Case(swap_two, "hash_mismatch at seq 14", "hash_mismatch at seq 14"),
    "forge a record in the middle": Case(
        forge_in_the_middle, "bad_mac at seq 17", "bad_mac at seq 17", "prev_hash_mismatch at seq 18"
    ),
    # Without the record key, the forged record (dated as record 30, before the checkpoint of seq 30 that it
    # follows) is named by the settled checkpoints' rule.
    "append a forged record": Case(
        append_forged, "bad_mac at seq 31", "bad_mac at seq 31", "backdated at seq 31"
    ),
    "append a forged record and move the head": Case(
        append_forged_and_move_head, "bad_mac at seq 31", "bad_mac at seq 31", "backdated at seq 31"
    ),
    "cut the tail, its checkpoints and reset the head": Case(
        cut_the_tail,
        "truncated_after_checkpoint at seq 21",
        "truncated_after_checkpoint at seq 21",
        "truncated_after_checkpoint at seq 21",
    ),
    "rewrite history from seq 14": Case(
        rewrite_from_14, "bad_mac at seq 14", "bad_mac at seq 14", "checkpoint_mismatch at seq 20"
    ),
    "rewrite from seq 14 and delete the checkpoints after it": Case(
        rewrite_from_14_and_delete_checkpoints_after_it,
        "bad_mac at seq 14",
        "bad_mac at seq 14",
        "checkpoint_mismatch at seq 20",
    ),
    "rewrite from seq 14 and delete every checkpoint": Case(
        rewrite_from_14_and_delete_every_checkpoint,
        "bad_mac at seq 14",
        "bad_mac at seq 14",
        "checkpoint_mismatch at seq 20",
    ),
    "truncate every audit table and reset the head": Case(
        truncate_everything,
        "truncated_after_checkpoint at seq 1",
        "truncated_after_checkpoint at seq 1",
        "truncated_after_checkpoint at seq 1",
    ),
}


@pytest.mark.parametrize("name", CASES, ids=list(CASES))
def test_audit_verify_names_the_tampering(lab_log: FileWitness, name: str) -> None:
    # given the lab's log, witnessed at seqs 10, 20, 30, tampered with as the database superuser
    case = CASES[name]
    case.tamper()
    # when audit_verify checks it against the witness log
    said = audit_verify_says("--witness", str(lab_log.path))
    # then the first bad seq is named
    assert said.startswith(f"TAMPERED: {case.audit_verify}:"), said


@pytest.mark.parametrize("name", CASES, ids=list(CASES))
def test_the_offline_verifier_names_the_tampering(lab_log: FileWitness, tmp_path: Path, name: str) -> None:
    # given the same tampering, then an export made by the lab
    case = CASES[name]
    case.tamper()
    # when the auditor verifies the export with the record key and the witness log
    said, _ = offline_says(tmp_path, lab_log.path)
    # then the first bad seq is named
    assert said.startswith(f"TAMPERED: {case.offline},"), said


@pytest.mark.parametrize(
    "name", [name for name, case in CASES.items() if case.offline_without_key], ids=lambda name: name
)
def test_the_offline_verifier_without_the_record_key_still_names_a_seq(
    lab_log: FileWitness, tmp_path: Path, name: str
) -> None:
    # given the tampering and an export
    case = CASES[name]
    case.tamper()
    # when the auditor verifies it without the record key (chain, signatures and witness only)
    said, _ = offline_says(tmp_path, lab_log.path, with_record_key=False)
    # then the break, the unsigned tail or the checkpoint that no longer matches is named
    assert said.startswith(f"TAMPERED: {case.offline_without_key},"), said


def test_without_the_record_key_a_rewrite_is_located_between_two_witnessed_checkpoints(
    lab_log: FileWitness, tmp_path: Path
) -> None:
    # given history rewritten from seq 14 and every checkpoint in the database deleted
    rewrite_from_14_and_delete_every_checkpoint()
    # when verified offline without the record key
    said, _ = offline_says(tmp_path, lab_log.path, with_record_key=False)
    # then the witness names the range the rewrite lies in: after seq 10 (still matching), up to seq 20
    assert "the chain was rewritten within seqs 11..20" in said, said


def test_the_signer_refuses_a_forged_append_and_the_export_does_not_crash(
    lab_log: FileWitness, tmp_path: Path, mailoutbox: list[EmailMessage], settings_override: None
) -> None:
    # given a forged record 31 holding the seq the next real record needs
    append_forged()
    # when beat wants a checkpoint, and an auditor exports
    with pytest.raises(AuditChainBroken, match="bad_mac at seq 31"):
        checkpoint_write()
    outcome = audit_export(path=tmp_path / "audit.jsonl", actor_id="auditor-1", actor_role="auditor")
    # then nothing was signed, the auditors were alerted twice, and the export holds all 31 records and the
    # three checkpoints, with the problem named
    assert [checkpoint.seq for checkpoint in lab_log.read_all()[0]] == [10, 20, 30]
    assert AuditCheckpoint.objects.count() == 3
    assert outcome.problem is not None
    assert (outcome.problem.kind, outcome.problem.seq, outcome.records, outcome.checkpoints) == (
        "bad_mac",
        31,
        31,
        3,
    )
    assert [message.subject for message in mailoutbox] == [
        "[Print Lab] audit checkpoint refused: bad_mac at seq 31"
    ] * 2


@pytest.fixture
def settings_override(settings) -> None:
    settings.AUDIT_ALERT_EMAILS = ["auditors@printlab.example"]
    settings.LAB_NAME = "Print Lab"


def test_the_export_command_writes_every_checkpoint_and_fails_loudly(
    lab_log: FileWitness, tmp_path: Path
) -> None:
    # given a forged record 31 and the head moved onto it
    append_forged_and_move_head()
    path = tmp_path / "audit.jsonl"
    # when the operator exports
    with pytest.raises(CommandError, match=r"did NOT sign it: TAMPERED: bad_mac at seq 31"):
        call_command("audit_export", str(path))
    # then the files hold every record and every checkpoint
    assert len(path.read_text().splitlines()) == 31
    checkpoints = path.with_suffix(".checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in checkpoints] == [10, 20, 30]


def test_deleting_the_witness_s_last_lines_is_named(lab_log: FileWitness, tmp_path: Path) -> None:
    # given the witness's last line (seq 30) deleted, the database untouched
    lines = lab_log.path.read_text().splitlines(keepends=True)
    lab_log.path.write_text("".join(lines[:-1]))
    # when verified by the lab, then offline after an export
    said = audit_verify_says("--witness", str(lab_log.path))
    offline, _ = offline_says(tmp_path, lab_log.path)
    # then the lost range is named: the database's checkpoint of seq 30 is not in the witness
    assert said.startswith("TAMPERED: witness_incomplete at seq 21:"), said
    assert "seqs 21..30 are not witnessed" in said
    assert offline.startswith("TAMPERED: witness_incomplete at seq 30,"), offline


def test_replacing_the_signing_key_is_named(lab_log: FileWitness, tmp_path: Path, settings) -> None:
    # given the pinned public key, then history rewritten from seq 14, the database's checkpoints re-signed
    # and the lab's signing key replaced by the attacker's
    pinned = public_key_b64(public_key())
    rewrite_from_14()
    rows = list(AuditCheckpoint.objects.order_by("pk"))
    heads = dict(AuditRecord.objects.values_list("seq", "hash"))
    statements: list[Statement] = []
    for row in rows:
        forged = sign_checkpoint(
            private_key=ATTACKER_SIGNING_KEY,
            key_id="attacker",
            seq=row.seq,
            head_hash=heads[row.seq],
            signed_at=row.signed_at,
        )
        statements.append(
            (
                "UPDATE audit_auditcheckpoint SET head_hash = %s, key_id = %s, signature = %s WHERE id = %s",
                [forged.head_hash, forged.key_id, forged.signature, row.pk],
            )
        )
    as_superuser(*statements)
    settings.AUDIT_SIGNING_KEY = base64.b64encode(ATTACKER_SIGNING_KEY.private_bytes_raw()).decode()
    # when the lab's signer runs, audit_verify runs with the configured and with the pinned key, and the
    # auditor verifies an export offline with the pinned key
    with pytest.raises(AuditChainBroken, match="bad_checkpoint_signature at seq 30"):
        checkpoint_write()
    configured = audit_verify_says("--witness", str(lab_log.path))
    with pytest.raises(CommandError) as pinned_error:
        call_command("audit_verify", "--witness", str(lab_log.path), "--public-key", pinned)
    export = tmp_path / "audit.jsonl"
    audit_export(path=export, actor_id="auditor-1", actor_role="auditor")
    offline = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.audit.verify",
            str(export),
            "--public-key",
            pinned,
            "--witness",
            str(lab_log.path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    ).stdout
    # then the witness's first line no longer verifies under the replaced key, and under the pinned key the
    # re-signed checkpoints are refused
    assert configured.startswith("TAMPERED: bad_checkpoint_signature at seq 10:"), configured
    assert str(pinned_error.value).startswith("TAMPERED: bad_checkpoint_signature at seq 10:")
    assert offline.startswith("TAMPERED: bad_checkpoint_signature at seq 10, line 1 of"), offline
    assert str(export.with_suffix(".checkpoints.jsonl")) in offline


# --- coverage and freshness -----------------------------------------------------------------------------


def test_a_gap_of_more_than_two_intervals_between_witnessed_checkpoints_is_named(
    tmp_path: Path, settings
) -> None:
    # given 20 records and a witness whose checkpoints of seq 10 and 20 are three intervals apart
    settings.AUDIT_CHECKPOINT_SECONDS = 3600
    audit_write(20)
    hashes = dict(AuditRecord.objects.values_list("seq", "hash"))
    witness = tmp_path / "witness.jsonl"
    witness_at(
        witness, [(10, hashes[10], timedelta(hours=3, minutes=30)), (20, hashes[20], timedelta(minutes=30))]
    )
    # when verified
    said = audit_verify_says("--witness", str(witness))
    # then the unwitnessed window is named
    assert said.startswith("TAMPERED: coverage_gap at seq 11:"), said
    assert "seqs 11..20 were written in an unwitnessed window" in said


def test_a_stale_witness_is_named(tmp_path: Path, settings) -> None:
    # given 20 records whose last witnessed checkpoint (seq 10) is three intervals old
    settings.AUDIT_CHECKPOINT_SECONDS = 3600
    audit_write(20)
    hashes = dict(AuditRecord.objects.values_list("seq", "hash"))
    witness = tmp_path / "witness.jsonl"
    witness_at(witness, [(10, hashes[10], timedelta(hours=3))])
    # when verified
    said = audit_verify_says("--witness", str(witness))
    # then the unwitnessed seqs are named
    assert said.startswith("TAMPERED: stale_witness at seq 11:"), said
    assert "seqs 11..20 are not witnessed" in said


def test_a_fresh_witness_two_intervals_apart_is_accepted(tmp_path: Path, settings) -> None:
    # given checkpoints exactly one and a half intervals apart, the last one recent
    settings.AUDIT_CHECKPOINT_SECONDS = 3600
    audit_write(20)
    hashes = dict(AuditRecord.objects.values_list("seq", "hash"))
    witness = tmp_path / "witness.jsonl"
    witness_at(witness, [(10, hashes[10], timedelta(hours=2)), (20, hashes[20], timedelta(minutes=30))])
    # when verified / then nothing is wrong
    assert audit_verify_says("--witness", str(witness)) == "OK"


# --- the app's own database role ------------------------------------------------------------------------

PROTECTED = ("audit_auditrecord", "audit_auditcheckpoint", "audit_audithead")


@pytest.fixture
def app_role() -> str:
    return app_role_create()


ATTEMPTS = [
    *[f"TRUNCATE {table} CASCADE" for table in PROTECTED],
    "UPDATE audit_auditrecord SET justification = 'x' WHERE seq = 3",
    "DELETE FROM audit_auditrecord WHERE seq = 3",
    "UPDATE audit_auditcheckpoint SET seq = 0",
    "DELETE FROM audit_auditcheckpoint",
    "UPDATE audit_audithead SET seq = 0",
    "UPDATE audit_audithead SET hash = repeat('0', 64)",
    "UPDATE audit_audithead SET seq = seq + 5",
    "DELETE FROM audit_audithead",
    "ALTER TABLE audit_auditrecord DISABLE TRIGGER USER",
    "ALTER TABLE audit_audithead DISABLE TRIGGER USER",
    "DROP TRIGGER audit_audithead_advance_only ON audit_audithead",
]
SETTINGS = [
    "SET LOCAL lab.allow_audit_truncate = 'on'",
    "SET LOCAL session_replication_role = replica",
]


@pytest.mark.parametrize("statement", ATTEMPTS)
def test_the_app_s_role_cannot_change_any_audit_table_whatever_it_sets(app_role: str, statement: str) -> None:
    # given a log with a checkpoint, and the app's role
    audit_write(5)
    checkpoint_write()
    before = (
        record_dicts(),
        list(AuditCheckpoint.objects.values_list("seq", "signature")),
        list(AuditHead.objects.order_by("id").values_list("id", "seq", "hash")),
    )
    refusals = []
    # when the role sets whatever it can and tries the statement
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {app_role}")
        for setting in SETTINGS:
            try:
                with transaction.atomic():
                    cursor.execute(setting)
            except DatabaseError as error:
                refusals.append(str(error).splitlines()[0])
        with pytest.raises(DatabaseError) as refused, transaction.atomic():
            cursor.execute(statement)
        cursor.execute("RESET ROLE")
    # then it is refused (the triggers, or the lack of ownership), the superuser-only setting could not be
    # set, and nothing changed
    assert "append-only" in str(refused.value) or "must be owner" in str(refused.value)
    assert refusals == ['permission denied to set parameter "session_replication_role"']
    assert (
        record_dicts(),
        list(AuditCheckpoint.objects.values_list("seq", "signature")),
        list(AuditHead.objects.order_by("id").values_list("id", "seq", "hash")),
    ) == before


def test_the_app_s_role_can_still_append(app_role: str) -> None:
    # given the app's role
    audit_write(2)
    # when it appends a record the way the app does
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {app_role}")
        audit_write(1)
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    # then the chain (lane 1, the only one a single writer uses) moved on by one and verifies
    assert AuditHead.objects.get(pk=1).seq == 3
    assert audit_verify_database().problem is None


@pytest.mark.django_db(transaction=True)
def test_the_app_s_role_can_open_a_transaction_with_an_append(app_role: str) -> None:
    # given the app's role for the whole session, so that an append opens its own transaction (BEGIN goes in
    # one message with the lane lock, an SQL-level prepared statement the role prepares itself)
    audit_write(2)
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {app_role}")
    try:
        # when it appends the way the app does, in a transaction of its own
        with transaction.atomic():
            audit_write(1)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, count(*) FROM pg_prepared_statements WHERE name = 'audit_lane_lock'"
            )
            as_whom = cursor.fetchone()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    # then it did so as that role, and the chain moved on by one and verifies
    assert as_whom == (app_role, 1)
    assert AuditHead.objects.get(pk=1).seq == 3
    assert audit_verify_database().problem is None


@pytest.mark.django_db(transaction=True)
def test_the_app_s_role_writes_the_first_record_of_an_empty_log_without_rewinding_the_sequence(
    app_role: str,
) -> None:
    # given an empty log whose sequence has moved on (seqs taken by transactions that rolled back), and the
    # app's role as the deployment has it: USAGE on the sequence (nextval) but not UPDATE (setval)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_write(3)
        raise RuntimeError("rolled back")
    with connection.cursor() as cursor:
        cursor.execute(f"REVOKE UPDATE ON SEQUENCE audit_auditrecord_seq FROM {app_role}")
        cursor.execute(f"SET ROLE {app_role}")
    try:
        # when it writes the lab's first record
        with transaction.atomic():
            audit_write(1)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    # then the record takes the next seq instead of rewinding the sequence to 1 (which the role may not),
    # and the log verifies; a role that may rewind it starts again at seq 1 (tests/audit/test_lanes.py)
    (record,) = AuditRecord.objects.all()
    assert record.seq > 3
    assert (record.lane, record.lane_seq) == (1, 1)
    assert audit_verify_database().problem is None
