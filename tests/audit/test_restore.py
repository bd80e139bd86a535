"""The database restored from a backup, as a reviewer did it: three records and checkpoint 3 witnessed, the
backup, three more and checkpoint 6 witnessed (and mailed to the auditors), the restore. The signer then
refuses for good, rightly: nothing told a restore from a deletion. `manage.py audit_restore` is the honest way
on: a restore marker signed with the checkpoint key (which the database never holds) naming the checkpoint
the chain continues from, the one it supersedes and the seqs lost; both verifiers report it instead of
TAMPERED, and it excuses nothing but the absence of the records it names lost."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, transaction

from lab.audit.canonical import GENESIS_HASH, seal_record, utc_timestamp
from lab.audit.checkpoint_rows import checkpoint_store
from lab.audit.checkpoints import Checkpoint, RestoreMark, checkpoint_lanes, sign_checkpoint
from lab.audit.configured import key_id, public_key, record_key, signing_key, witness_sink
from lab.audit.lane_heads import lanes_checkpoint_head
from lab.audit.models import AuditCheckpoint, AuditRecord
from lab.audit.receipt import RECEIPT_FORMAT, body_sha256, receipt_sign, verify_receipt
from lab.audit.records import audit_append, record_as_chain_dict
from lab.audit.signer import AuditChainBroken, checkpoint_write
from lab.audit.witness import FileWitness
from lab.audit.witness_check import parse_timestamp
from lab.lib.clock import database_now
from tests.builders import audit_write, person
from tests.builders.audit import preview_entry
from tests.support.audit_verifiers import (
    audit_verify_printed,
    export_for_auditors,
    offline_verifier,
    receipt_verified,
)
from tests.support.database_restore import (
    AuditBackup,
    audit_backup,
    audit_dump,
    audit_load,
    audit_restore_from,
)
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
# A database superuser's own key: they never hold the lab's.
ATTACKER_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))


def _witness() -> FileWitness:
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    return sink


def _lines() -> list[Checkpoint]:
    return _witness().read_all()[0]


@pytest.fixture
def restored() -> AuditBackup:
    """The reviewer's restore: checkpoints 3 and 6 witnessed, the database back to just after checkpoint 3."""
    audit_write(3)
    checkpoint_write()
    backup = audit_backup()
    audit_write(3)
    checkpoint_write()
    audit_restore_from(backup)
    with pytest.raises(AuditChainBroken) as refused:
        checkpoint_write()
    assert (refused.value.problem.kind, refused.value.problem.seq) == ("truncated_after_checkpoint", 4)
    assert "run `manage.py audit_restore`" in refused.value.problem.message
    return backup


def audit_restore_says(*arguments: str) -> str:
    out = io.StringIO()
    call_command("audit_restore", *arguments, stdout=out)
    return out.getvalue()


def marker_signed(*, by_key: Ed25519PrivateKey, continues: Checkpoint, supersedes: Checkpoint) -> Checkpoint:
    """A restore marker of the database's heads as they are, signed with by_key (the lab's key, as an insider
    who holds it signs one without the command's checks; or another), continuing from `continues`."""
    heads = {}
    for record in AuditRecord.objects.order_by("seq"):
        heads[record.lane] = (record.lane, int(record.lane_seq or record.seq), record.seq, record.hash)
    lanes = tuple(heads[lane] for lane in sorted(heads))
    seq, head_hash = lanes_checkpoint_head(lanes)
    return sign_checkpoint(
        private_key=by_key,
        key_id=key_id(),
        seq=seq,
        head_hash=head_hash,
        signed_at=utc_timestamp(database_now()),
        lanes=lanes,
        restore=RestoreMark(
            from_seq=continues.seq,
            from_signed_at=continues.signed_at,
            from_hash=continues.head_hash,
            superseded_seq=supersedes.seq,
            superseded_signed_at=supersedes.signed_at,
            superseded_hash=supersedes.head_hash,
            lost_from=continues.seq + 1,
            lost_to=supersedes.seq,
            by="os:insider",
        ),
    )


def receipt_of(record: AuditRecord, anchor: dict[str, object]) -> dict[str, object]:
    """A privacy receipt the lab signs for its audit record `record`, anchored on the witnessed checkpoint
    `anchor` (its line as JSON), as lab/customer_data/receipts.py issues one."""
    document: dict[str, object] = {
        "format": RECEIPT_FORMAT,
        "receipt_id": f"00000000-0000-4000-8000-{record.seq:012d}",
        "issued_at": utc_timestamp(database_now()),
        "key_id": key_id(),
        "issuer": "the lab",
        "order_ref": None,
        "reason": "erased",
        "photos": [],
        "employee_views": [],
    }
    document["anchor"] = {
        "record": {"seq": record.seq, "lane": record.lane, "lane_seq": record.lane_seq, "hash": record.hash},
        "body_sha256": body_sha256(document),
        "checkpoint": anchor,
    }
    return {
        "document": document,
        "signature": receipt_sign(private_key=signing_key(), document=document),
        "key_id": key_id(),
    }


# --- the way on -------------------------------------------------------------------------------------------


def test_after_audit_restore_the_signer_signs_and_new_records_take_seqs_past_the_lost_range(
    restored: AuditBackup,
) -> None:
    # when the operator runs audit_restore
    said = audit_restore_says()
    # then a marker is witnessed: continuing from checkpoint 3, superseding checkpoint 6, seqs 4..6 lost
    assert "seqs 4..6 lost" in said, said
    witnessed = _lines()
    assert [c.seq for c in witnessed[:2]] == [3, 6]
    marker = witnessed[2]
    assert marker.restore is not None
    assert (marker.seq, marker.restore.from_seq, marker.restore.superseded_seq) == (3, 3, 6)
    assert (marker.restore.lost_from, marker.restore.lost_to) == (4, 6)
    assert marker.restore.by.startswith("os:")
    assert AuditCheckpoint.objects.filter(reason="restore").exclude(restore="").count() == 1
    # and new records take seqs past the lost range (before: 4, 5, 6 again)
    audit_write(2)
    assert list(AuditRecord.objects.filter(seq__gt=3).values_list("seq", flat=True)) == [7, 8]
    # and the signer signs them (before: truncated_after_checkpoint at seq 4, for good)
    signed = checkpoint_write()
    assert signed.seq == 8
    assert _lines()[-1].seq == 8


def test_audit_verify_reports_the_restored_range_and_no_problem(restored: AuditBackup) -> None:
    audit_restore_says()
    audit_write(2)
    checkpoint_write()
    said = audit_verify_printed()
    # before: TAMPERED: truncated_after_checkpoint at seq 4 (and, once seqs 4..7 were taken again,
    # future_dated at seq 4)
    assert said.startswith("OK: 5 records"), said
    assert "restored at" in said and "seqs 4..6 lost" in said and "by os:" in said, said
    assert "the checkpoint of seq 6 signed at" in said, said


def test_the_offline_verifier_against_the_full_witness_reports_the_restored_range(
    restored: AuditBackup, tmp_path: Path
) -> None:
    audit_restore_says()
    audit_write(2)
    export = export_for_auditors(tmp_path)
    # the auditors' copy still holds checkpoint 6, which the database no longer reaches
    witnessed = _lines()
    assert 6 in [c.seq for c in witnessed if c.restore is None]
    outcome = offline_verifier(export, _witness().path)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert outcome.stdout.startswith("OK: 6 records"), outcome.stdout
    assert "restored at" in outcome.stdout and "seqs 4..6 lost" in outcome.stdout, outcome.stdout


def test_a_receipt_for_a_record_at_a_lane_position_a_superseded_checkpoint_signed_verifies(
    restored: AuditBackup,
) -> None:
    # given the restore marked, and three new records: the last is lane 1 #6 again (seq 9), a position the
    # superseded checkpoint 6 signed for the record the restore lost
    audit_restore_says()
    anchor = json.loads(_lines()[-1].to_line())
    audit_write(3)
    record = AuditRecord.objects.get(seq=9)
    assert (record.lane, record.lane_seq) == (1, 6)
    checkpoint_write()
    # when a privacy receipt anchored on that record is checked against the witness
    receipt = receipt_of(record, anchor)
    outcome = verify_receipt(receipt=receipt, public_key=public_key(), witnessed=_lines())
    # then it holds, covered by the checkpoint after the marker (before: anchor_mismatch, naming checkpoint 6)
    assert outcome.problem is None, outcome.problem
    assert outcome.covered_by is not None and outcome.covered_by.seq == 9


def test_the_marker_names_the_staff_account_that_ran_it(restored: AuditBackup) -> None:
    operator = person("admin")
    audit_restore_says("--staff", operator.email)
    marker = _lines()[2]
    assert marker.restore is not None
    assert marker.restore.by == f"staff:{operator.public_id}"


def test_running_audit_restore_twice_changes_nothing_the_second_time(restored: AuditBackup) -> None:
    audit_restore_says()
    lines, rows = _witness().path.read_bytes(), AuditCheckpoint.objects.count()
    said = audit_restore_says()
    assert said.startswith("nothing to do"), said
    assert _witness().path.read_bytes() == lines
    assert AuditCheckpoint.objects.count() == rows


# --- what a marker cannot do -----------------------------------------------------------------------------


def test_a_marker_forged_by_a_database_superuser_is_caught(restored: AuditBackup, tmp_path: Path) -> None:
    # given a superuser who signs a marker with a key of their own, stores it and even appends it to the
    # witness (which they cannot reach)
    checkpoint_3, checkpoint_6 = _lines()
    forged = marker_signed(by_key=ATTACKER_SIGNING_KEY, continues=checkpoint_3, supersedes=checkpoint_6)
    _witness().append(forged)
    checkpoint_store(forged, reason="restore")
    # then the signer refuses, and both verifiers name it
    with pytest.raises(AuditChainBroken) as refused:
        checkpoint_write()
    assert refused.value.problem.kind == "bad_checkpoint_signature"
    assert audit_verify_printed().startswith("TAMPERED: bad_checkpoint_signature"), audit_verify_printed()
    outcome = offline_verifier(export_for_auditors(tmp_path), _witness().path)
    assert outcome.returncode == 1
    assert outcome.stdout.startswith("TAMPERED: bad_checkpoint_signature"), outcome.stdout


def test_a_marker_naming_a_record_that_is_still_there_but_not_the_witnessed_one_is_caught(
    tmp_path: Path,
) -> None:
    # given checkpoints 3, 5 and 6 witnessed; an insider holding both keys rewrites record 5 (a valid mac,
    # chained, its time kept), deletes record 6 and the checkpoint rows after 3
    audit_write(3)
    checkpoint_write()
    kept = AuditCheckpoint.objects.latest("pk").pk
    audit_write(2)
    checkpoint_write()
    audit_write(1)
    checkpoint_write()
    fifth = record_as_chain_dict(AuditRecord.objects.get(seq=5))
    rewritten = seal_record(
        fifth | {"purpose": "maintenance"}, seq=5, prev_hash=str(fifth["prev_hash"]), record_key=record_key()
    )
    dba(
        "SET LOCAL session_replication_role = replica;"
        " DELETE FROM audit_auditrecord WHERE seq = 6;"
        f" DELETE FROM audit_auditcheckpoint WHERE id > {kept};"
        " UPDATE audit_auditrecord SET purpose = 'maintenance', hash = %s, mac = %s WHERE seq = 5;"
        " UPDATE audit_audithead SET seq = 5, hash = %s WHERE id = 1;"
        " SET LOCAL session_replication_role = DEFAULT",
        str(rewritten["hash"]),
        str(rewritten["mac"]),
        str(rewritten["hash"]),
    )
    checkpoint_3, _, checkpoint_6 = _lines()
    # then audit_restore does not take it for a restore from checkpoint 3
    with pytest.raises(CommandError, match="checkpoint_mismatch at seq 5"):
        audit_restore_says()
    assert len(_lines()) == 3
    # and a marker the insider signs with the lab's key, naming seqs 4..6 lost, does not excuse record 5:
    # the witness signed another record there (a restore removes records, it never replaces one)
    marker = marker_signed(by_key=signing_key(), continues=checkpoint_3, supersedes=checkpoint_6)
    assert [head[2] for head in checkpoint_lanes(marker)] == [5]
    _witness().append(marker)
    checkpoint_store(marker, reason="restore")
    said = audit_verify_printed()
    assert said.startswith("TAMPERED: checkpoint_mismatch at seq 5"), said
    outcome = offline_verifier(export_for_auditors(tmp_path), _witness().path)
    assert outcome.stdout.startswith("TAMPERED: checkpoint_mismatch at seq 5"), outcome.stdout


def test_audit_restore_refuses_a_chain_tampered_below_the_restore_point(restored: AuditBackup) -> None:
    dba(
        "SET LOCAL session_replication_role = replica;"
        " UPDATE audit_auditrecord SET purpose = 'maintenance' WHERE seq = 2;"
        " SET LOCAL session_replication_role = DEFAULT"
    )
    with pytest.raises(CommandError, match="nothing signed: hash_mismatch at seq 2"):
        audit_restore_says()
    assert [c.seq for c in _lines()] == [3, 6]
    assert not AuditCheckpoint.objects.exclude(restore="").exists()


def test_audit_restore_refuses_records_written_between_the_restore_and_it(restored: AuditBackup) -> None:
    # given the lab started after the restore without audit_restore: its records took seqs 4..7 again
    audit_write(4)
    assert list(AuditRecord.objects.filter(seq__gt=3).values_list("seq", flat=True)) == [4, 5, 6, 7]
    # then audit_restore does not mark them as the chain's continuation, and says what to do
    with pytest.raises(CommandError, match=r"at seq 4: .*restore the backup again") as refused:
        audit_restore_says()
    assert "nothing signed" in str(refused.value)
    assert [c.seq for c in _lines()] == [3, 6]


def test_audit_restore_refuses_when_the_database_holds_no_witnessed_checkpoint() -> None:
    audit_write(2)
    backup = audit_backup()
    audit_write(1)
    checkpoint_write()
    audit_write(3)
    checkpoint_write()
    audit_restore_from(backup)
    with pytest.raises(CommandError, match="the database holds none of the 2 checkpoints"):
        audit_restore_says()
    assert [c.seq for c in _lines()] == [3, 6]


def test_a_record_that_takes_a_lost_seq_after_the_marker_is_named(restored: AuditBackup) -> None:
    # given the restore marked, then the sequence put back by someone who may (the superuser)
    audit_restore_says()
    marker = _lines()[2]
    dba("SELECT setval('audit_auditrecord_seq', 3)")
    audit_write(1)
    assert AuditRecord.objects.latest("seq").seq == 4
    # then the signer refuses it and audit_verify names it: seq 4 is one the witness vouched for
    with pytest.raises(AuditChainBroken) as refused:
        checkpoint_write()
    assert (refused.value.problem.kind, refused.value.problem.seq) == ("backdated", 4)
    said = audit_verify_printed()
    assert said.startswith("TAMPERED: backdated at seq 4"), said
    assert parse_timestamp(marker.signed_at) <= database_now()


def _append_elsewhere(names: list[str], done: list[AuditRecord]) -> None:
    """Append one record per name on another connection (in another lane while this one holds its own)."""
    try:
        for name in names:
            with transaction.atomic():
                done.append(audit_append(preview_entry(name, asset_id=f"asset-{name}")))
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_dba_who_deletes_one_lanes_witnessed_record_cannot_pass_it_off_as_a_restore() -> None:
    # given lane 1 at seqs 1..4 and lane 2's first record at seq 5, both signed by checkpoint 5; then seqs 6
    # and 7 in lane 1 and checkpoint 7
    audit_write(3)
    checkpoint_write()
    elsewhere: list[AuditRecord] = []
    with transaction.atomic():
        audit_append(preview_entry("holder", asset_id="asset-holder"))
        thread = threading.Thread(target=_append_elsewhere, args=(["victim"], elsewhere))
        thread.start()
        thread.join(timeout=30)
    assert [(record.lane, record.lane_seq, record.seq) for record in elsewhere] == [(2, 1, 5)]
    checkpoint_write()
    audit_write(2)
    checkpoint_write()
    assert [checkpoint.seq for checkpoint in _lines()] == [3, 5, 7]
    lines = _witness().path.read_bytes()
    # when a database superuser (no key) deletes seq 5, the view they want gone, and resets lane 2's head
    dba(
        "SET LOCAL session_replication_role = replica;"
        " DELETE FROM audit_auditrecord WHERE seq = 5;"
        " UPDATE audit_audithead SET seq = 0, hash = %s WHERE id = 2;"
        " SET LOCAL session_replication_role = DEFAULT",
        GENESIS_HASH,
    )
    # then the signer refuses without sending the operator to audit_restore (before: it did), naming the
    # deletion: seqs 6 and 7 were numbered after checkpoint 5 was signed: no backup lacking seq 5 holds them
    with pytest.raises(AuditChainBroken) as refused:
        checkpoint_write()
    assert "audit_restore" not in refused.value.problem.message
    assert "not a database restore" in refused.value.problem.message
    assert "records were deleted" in refused.value.problem.message
    # and audit_restore refuses, signing nothing (before: a marker "seqs 4..7 lost", and both verifiers OK)
    with pytest.raises(
        CommandError,
        match=r"nothing signed: truncated_after_checkpoint at seq 5: not a restore: the database lacks lane 2"
        r" #1 \(seq 5\), which the witnessed checkpoint of seq 5 .* yet holds seq 6, .*records were deleted",
    ):
        audit_restore_says()
    assert _witness().path.read_bytes() == lines
    assert not AuditCheckpoint.objects.exclude(restore="").exists()
    verified = audit_verify_printed()
    assert verified.startswith("TAMPERED: truncated_after_checkpoint at seq 5"), verified


def test_a_receipt_whose_record_a_restore_lost_is_reported_lost_not_tampered(tmp_path: Path) -> None:
    # given a customer's receipt for record 5, anchored on checkpoint 3 and witnessed by checkpoint 5
    audit_write(3)
    checkpoint_write()
    backup = audit_backup()
    anchor = json.loads(_lines()[-1].to_line())
    audit_write(2)
    receipt = receipt_of(AuditRecord.objects.get(seq=5), anchor)
    checkpoint_write()
    witnessed = verify_receipt(receipt=receipt, public_key=public_key(), witnessed=_lines())
    assert witnessed.is_intact and witnessed.covered_by is not None and witnessed.covered_by.seq == 5
    # when the database is restored from the backup before it, the restore marked, and new records take lane
    # 1 #4 and #5 at seqs 6 and 7 (checkpoint 7 signs lane 1 #5 again, for the new record)
    audit_restore_from(backup)
    audit_restore_says()
    audit_write(2)
    checkpoint_write()
    # then the receipt is neither intact nor tampered (before: anchor_mismatch, "the log holds another
    # record there"): it was witnessed by checkpoint 5, then lost in the restore
    outcome = verify_receipt(receipt=receipt, public_key=public_key(), witnessed=_lines())
    assert outcome.problem is None, outcome.problem
    assert outcome.covered_by is not None and outcome.covered_by.seq == 5
    assert outcome.lost_in is not None
    assert (outcome.lost_in.mark.lost_from, outcome.lost_in.mark.lost_to) == (4, 5)
    assert not outcome.is_intact
    # and the customer's verifier says so, with its own exit status
    said = receipt_verified(receipt, tmp_path, "--witness", str(_witness().path))
    assert said.returncode == 3, said.stdout + said.stderr
    assert said.stdout.startswith("LOST: receipt 00000000-0000-4000-8000-000000000005"), said.stdout
    assert "was witnessed by the checkpoint seq 5 signed at" in said.stdout, said.stdout
    assert "then lost in the restore of" in said.stdout and "seqs 4..5 lost" in said.stdout, said.stdout


def test_a_second_restore_from_a_backup_older_than_the_first_marker_continues_from_before_it(
    tmp_path: Path,
) -> None:
    # given checkpoint 3; a dump of records 1..3 and a later one of records 1..5; checkpoint 6
    audit_write(3)
    checkpoint_write()
    audit_dump("after_checkpoint_3")
    audit_write(2)
    audit_dump("before_checkpoint_6")
    audit_write(1)
    checkpoint_write()
    # and a first restore, from the older dump, marked (seqs 4..6 lost), then records 7 and 8, checkpoint 8
    audit_load("after_checkpoint_3")
    assert "seqs 4..6 lost" in audit_restore_says()
    audit_write(2)
    checkpoint_write()
    # when that dump proves bad and the database is restored again, from the one holding records 1..5
    audit_load("before_checkpoint_6")
    assert sorted(AuditRecord.objects.values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    # then audit_restore marks it (before: refused for good, "backdated at seq 4", and told to restore the
    # backup again): continuing from checkpoint 3, which the first marker did not supersede, keeping 4 and 5
    said = audit_restore_says()
    assert "continues from the checkpoint of seq 3" in said and "seqs 4..8 lost" in said, said
    marker = _lines()[-2]
    assert marker.restore is not None
    assert (marker.restore.from_seq, marker.restore.superseded_seq) == (3, 8)
    assert [head[2] for head in checkpoint_lanes(marker)] == [5]
    # and both verifiers report the two restores, and the signer signs the records after them
    audit_write(2)
    assert list(AuditRecord.objects.filter(seq__gt=5).values_list("seq", flat=True)) == [9, 10]
    assert checkpoint_write().seq == 10
    verified = audit_verify_printed()
    assert verified.startswith("OK: 7 records"), verified
    assert "seqs 4..6 lost" in verified and "seqs 4..8 lost" in verified, verified
    outcome = offline_verifier(export_for_auditors(tmp_path), _witness().path)
    assert outcome.stdout.startswith("OK: 8 records"), outcome.stdout
    # and running it again changes nothing
    assert audit_restore_says().startswith("nothing to do")


def test_an_auditors_copy_that_lacks_the_marker_is_incomplete_not_rewritten(
    restored: AuditBackup, tmp_path: Path
) -> None:
    # given the restore marked, records after it signed, and two copies of the witness: one from before the
    # restore, one that got every line but the marker (its mail was lost)
    before_restore = tmp_path / "before-restore.jsonl"
    before_restore.write_bytes(_witness().path.read_bytes())
    audit_restore_says()
    audit_write(2)
    checkpoint_write()
    no_marker = tmp_path / "no-marker.jsonl"
    lines = _witness().path.read_text().splitlines(keepends=True)
    no_marker.write_text("".join(line for line in lines if '"restore"' not in line))
    export = export_for_auditors(tmp_path)
    # then the offline verifier says each copy lacks the marker (before: checkpoint_mismatch at seq 6, "the
    # chain was rewritten", while a copy missing an ordinary line says witness_incomplete)
    for copy in (no_marker, before_restore):
        outcome = offline_verifier(export, copy)
        assert outcome.stdout.startswith("TAMPERED: witness_incomplete at seq 3"), outcome.stdout
        assert "the restore marker signed at" in outcome.stdout, outcome.stdout
        assert "seqs 4..6 lost" in outcome.stdout and "not in the witness" in outcome.stdout, outcome.stdout
    # and so does audit_verify against such a copy
    said = audit_verify_printed("--witness", str(no_marker))
    assert said.startswith("TAMPERED: witness_incomplete at seq 3"), said


def test_a_marker_whose_mail_to_the_auditors_fails_is_named_on_stderr_with_its_line(
    restored: AuditBackup, settings: Any
) -> None:
    # given auditors' mail that cannot be sent (an address Django cannot encode)
    settings.AUDIT_WITNESS_EMAILS = ["auditors@" + "ä" * 60 + ".example"]
    out, err = io.StringIO(), io.StringIO()
    # when the operator runs audit_restore
    call_command("audit_restore", stdout=out, stderr=err)
    # then the restore stands (the marker witnessed and stored) and stderr says loudly that the auditors
    # lack it, with the line to send them (before: a warning in the log only)
    marker = _lines()[2]
    assert marker.restore is not None
    assert AuditCheckpoint.objects.exclude(restore="").count() == 1
    assert "restore marker signed at" in out.getvalue()
    warned = err.getvalue()
    assert warned.startswith("WARNING: the restore marker is signed, witnessed and stored, but its e-mail")
    assert "witness_incomplete" in warned and marker.to_line() in warned, warned
