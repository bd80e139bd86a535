"""Backdating by an app-host admin who holds AUDIT_RECORD_KEY: a record sealed with the real key, with an old
free seq or an old time, put into an empty lane (lane 9, its head moved on by one as any append does). Its
mac is valid and its lane is whole, so both verifiers accepted a record "from months ago" that no witnessed
checkpoint had seen, and the next checkpoint signed it.

A checkpoint is now settled (format v3): the signer first waits for every append in flight (it locks every
lane's head row) and reads the database's clock, so every seq up to the checkpoint's own is written and
covered by it or never will be, and every record it does not cover was timed after its signed_at. A record
first covered by witnessed checkpoint N+1 must have a seq above N's and a time not before N's signed_at:
else it is named `backdated` at its seq, by the signer, audit_verify and the offline verifier with the
witness. The record's own time is read after its lane's lock (clock_timestamp), or a writer that waited for
the signer would be dated before the checkpoint it follows.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from lab.audit.canonical import GENESIS_HASH, LANE_FIELDS, seal_record, utc_timestamp
from lab.audit.checkpoints import Checkpoint, checkpoint_is_settled, sign_checkpoint
from lab.audit.configured import key_id, public_key, record_key, signing_key, witness_sink
from lab.audit.database_verify import audit_verify_database
from lab.audit.lane_heads import lanes_checkpoint_head, lanes_to_json
from lab.audit.models import AuditCheckpoint, AuditHead, AuditRecord
from lab.audit.records import audit_append, record_as_chain_dict
from lab.audit.signer import AuditChainBroken, checkpoint_write
from lab.audit.witness import FileWitness
from lab.lib.clock import database_now
from tests.builders import audit_write, preview_entry
from tests.support.audit_insiders import as_app_role, record_insert_sql
from tests.support.audit_verifiers import export_for_auditors, offline_verifier
from tests.support.database_locks import until_sessions_wait_for_locks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def witnessed_log(settings) -> tuple[FileWitness, int]:
    """Seven records with a free seq among them (a writer that rolled back took it), witnessed, then three
    more, witnessed; alerts go out. Returns the witness and the free seq."""
    settings.AUDIT_ALERT_EMAILS = ["auditors@printlab.example"]
    settings.LAB_NAME = "Print Lab"
    audit_write(3)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_write(1)
        raise RuntimeError("the decision failed: its record goes with it")
    audit_write(4)
    checkpoint_write()
    audit_write(3)
    checkpoint_write()
    seqs = list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True))
    (free,) = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    return sink, free


def backdate(*, seq: int, occurred_at: str) -> dict[str, object]:
    """The admin's record: a technician "downloaded" a photo, sealed with the lab's record key into the empty
    lane 9 at the given seq and time, inserted as the app's role, lane 9's head moved on by one."""
    template = record_as_chain_dict(AuditRecord.objects.order_by("seq").first())  # type: ignore[arg-type]
    fields = {name: value for name, value in template.items() if name not in LANE_FIELDS}
    fields |= {"actor_id": "technician-x", "action": "image.download", "occurred_at": occurred_at}
    sealed = seal_record(fields, seq=seq, prev_hash=GENESIS_HASH, record_key=record_key(), lane=9, lane_seq=1)
    with as_app_role(), connection.cursor() as cursor:
        cursor.execute(*record_insert_sql(sealed))
        cursor.execute("UPDATE audit_audithead SET seq = 1, hash = %s WHERE id = 9", [str(sealed["hash"])])
    return sealed


def fresh_seq() -> int:
    with as_app_role(), connection.cursor() as cursor:
        cursor.execute("SELECT nextval('audit_auditrecord_seq')")
        (seq,) = cursor.fetchone()
    return int(seq)


def time_of(seq: int) -> str:
    return str(record_as_chain_dict(AuditRecord.objects.get(seq=seq))["occurred_at"])


def now_text() -> str:
    return utc_timestamp(database_now())


CASES: dict[str, Callable[[int], tuple[int, str]]] = {
    "an old free seq, dated then": lambda free: (free, time_of(free - 1)),
    "an old free seq, dated now": lambda free: (free, now_text()),
    "a fresh seq, dated three months ago": lambda free: (
        fresh_seq(),
        utc_timestamp(database_now() - timedelta(days=90)),
    ),
}


def admin_signs_the_next_checkpoint(*, settled: bool = False, signed_at: str | None = None) -> Checkpoint:
    """The admin holds the signing key too: a checkpoint of every lane head, lane 9 included, appended to the
    witness and stored, as the signer would have done before it refused (settled: as the signer signs now,
    at the database's clock unless signed_at says otherwise)."""
    heads = [
        (head.id, head.seq, AuditRecord.objects.values_list("seq", flat=True).get(hash=head.hash), head.hash)
        for head in AuditHead.objects.filter(seq__gt=0).order_by("id")
    ]
    seq, head_hash = lanes_checkpoint_head(heads)
    signed = sign_checkpoint(
        private_key=signing_key(),
        key_id=key_id(),
        seq=seq,
        head_hash=head_hash,
        signed_at=signed_at or now_text(),
        lanes=heads,
        is_settled=settled,
    )
    sink = witness_sink()
    sink.append(signed)
    AuditCheckpoint.objects.create(
        seq=signed.seq,
        head_hash=signed.head_hash,
        signed_at=signed.signed_at,
        key_id=signed.key_id,
        signature=signed.signature,
        lanes=lanes_to_json(signed.lanes),
    )
    return signed


def offline_says(tmp_path: Path, witness: Path) -> str:
    completed = offline_verifier(export_for_auditors(tmp_path), witness, interval=True)
    assert completed.stderr == ""
    return completed.stdout


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_audit_verify_names_a_backdated_record(witnessed_log: tuple[FileWitness, int], case: str):
    # given the admin's backdated record in lane 9
    witness, free = witnessed_log
    seq, occurred_at = CASES[case](free)
    backdate(seq=seq, occurred_at=occurred_at)
    # when the lab verifies against the witness
    with pytest.raises(CommandError) as failed:
        call_command("audit_verify", "--witness", str(witness.path))
    # then the record is named by its seq
    assert str(failed.value).startswith(f"TAMPERED: backdated at seq {seq}: "), str(failed.value)


@pytest.mark.django_db
def test_the_signer_refuses_to_sign_a_backdated_record(
    witnessed_log: tuple[FileWitness, int], mailoutbox: list[EmailMessage]
):
    # given the admin's record at an old free seq, dated then
    witness, free = witnessed_log
    backdate(seq=free, occurred_at=time_of(free - 1))
    before = witness.path.read_bytes()
    # when beat wants a checkpoint
    with pytest.raises(AuditChainBroken, match=f"backdated at seq {free}"):
        checkpoint_write()
    # then nothing was signed, and the auditors were told
    assert witness.path.read_bytes() == before
    assert [message.subject for message in mailoutbox] == [
        f"[Print Lab] audit checkpoint refused: backdated at seq {free}"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("signed", [True, False], ids=["signed-by-the-admin", "not-yet-signed"])
def test_the_offline_verifier_names_a_backdated_record_with_the_witness(
    witnessed_log: tuple[FileWitness, int], tmp_path: Path, signed: bool
):
    # given the admin's record at an old free seq, dated then, and (or not) a checkpoint the admin signed
    # over it with the lab's signing key
    witness, free = witnessed_log
    backdate(seq=free, occurred_at=time_of(free - 1))
    if signed:
        admin_signs_the_next_checkpoint()
    # when the lab verifies, and an auditor verifies an export with the witness
    with pytest.raises(CommandError) as failed:
        call_command("audit_verify", "--witness", str(witness.path))
    said = offline_says(tmp_path, witness.path)
    # then both name the record
    assert str(failed.value).startswith(f"TAMPERED: backdated at seq {free}: "), str(failed.value)
    assert said.startswith(f"TAMPERED: backdated at seq {free}, line {free} of"), said


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_an_unsettled_checkpoint_slipped_in_after_a_settled_one_shields_no_backdated_record(
    witnessed_log: tuple[FileWitness, int], tmp_path: Path, mailoutbox: list[EmailMessage], case: str
):
    # given the admin's checkpoint of the witnessed heads signed as not settled (as before settling) with
    # the lab's key, appended after the lab's settled ones, then the admin's backdated record: judged
    # against that checkpoint alone, the backdating rule skipped the record and the signer signed over it
    witness, free = witnessed_log
    slipped = admin_signs_the_next_checkpoint(settled=False)
    seq, occurred_at = CASES[case](free)
    backdate(seq=seq, occurred_at=occurred_at)
    before = witness.path.read_bytes()
    # when beat wants a checkpoint
    with pytest.raises(AuditChainBroken, match=f"bad_checkpoint_signature at seq {slipped.seq}: "):
        checkpoint_write()
    # then nothing was signed and the auditors were told
    assert witness.path.read_bytes() == before
    assert [message.subject for message in mailoutbox] == [
        f"[Print Lab] audit checkpoint refused: bad_checkpoint_signature at seq {slipped.seq}"
    ]
    # and both verifiers name the first of the two: the record (judged against the last settled checkpoint)
    # or the slipped line
    named = (
        f"backdated at seq {seq}" if seq < slipped.seq else f"bad_checkpoint_signature at seq {slipped.seq}"
    )
    with pytest.raises(CommandError) as failed:
        call_command("audit_verify", "--witness", str(witness.path))
    assert str(failed.value).startswith(f"TAMPERED: {named}: "), str(failed.value)
    said = offline_says(tmp_path, witness.path)
    assert said.startswith(f"TAMPERED: {named}, "), said


@pytest.mark.django_db(transaction=True)
def test_a_record_is_timed_after_its_lane_lock():
    # given every lane locked (as the signer does while it waits for the appends in flight)
    audit_write(1)
    written: list[AuditRecord] = []

    def append() -> None:
        try:
            with transaction.atomic():
                written.append(audit_append(preview_entry("technician-1", asset_id="asset-1")))
        finally:
            connection.close()

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT id FROM audit_audithead ORDER BY id FOR UPDATE")
        writer = threading.Thread(target=append)
        writer.start()
        # when an append waits for a lane, and the lanes are let go a while later
        until_sessions_wait_for_locks(1)
        time.sleep(0.2)
        cursor.execute("SELECT clock_timestamp()")
        (released_at,) = cursor.fetchone()
    writer.join(timeout=30)
    # then the record bears a time read after it got its lane, not when its statement began
    (record,) = written
    assert isinstance(released_at, datetime)
    assert record.occurred_at >= released_at


@pytest.mark.django_db(transaction=True)
def test_appends_in_flight_while_the_signer_signs_raise_no_false_alarm(tmp_path: Path):
    # given writers appending in transactions that hold their lane a while, in several lanes at once
    audit_write(3)
    checkpoint_write()
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            while not stop.is_set():
                with transaction.atomic():
                    audit_append(preview_entry(f"technician-{number}", asset_id=f"asset-{number}"))
                    time.sleep(0.01 * (number % 3))
        except BaseException as error:  # reported by the test's assertion
            failures.append(error)
        finally:
            connection.close()

    writers = [threading.Thread(target=writer, args=(number,)) for number in range(6)]
    for thread in writers:
        thread.start()
    # when the signer signs again and again meanwhile
    try:
        for _ in range(8):
            checkpoint_write()
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=30)
    checkpoint_write()
    # then every checkpoint was signed, and both verifiers find the log whole
    assert failures == []
    assert AuditRecord.objects.values("lane").distinct().count() > 1
    assert audit_verify_database().problem is None
    sink = witness_sink()
    assert isinstance(sink, FileWitness)
    said = offline_says(tmp_path, sink.path)
    assert said.startswith("OK: "), said


@pytest.mark.django_db
def test_the_signer_s_checkpoints_are_settled_in_lines_shaped_as_before(
    witnessed_log: tuple[FileWitness, int],
):
    # given the lab's witnessed checkpoints
    witness, _ = witnessed_log
    witnessed, problem = witness.read_all()
    # then each is signed as settled, and its line holds the fields a checkpoint always had (a receipt's
    # anchor and every auditor's copy read it as before)
    assert problem is None
    assert [checkpoint_is_settled(checkpoint=c, public_key=public_key()) for c in witnessed] == [
        True,
        True,
    ]
    assert {tuple(sorted(json.loads(c.to_line()))) for c in witnessed} == {
        ("head_hash", "key_id", "lanes", "seq", "signature", "signed_at")
    }


@pytest.mark.django_db
def test_records_after_a_checkpoint_signed_before_settling_are_not_judged(settings):
    # given a log witnessed before checkpoints were settled (signed as v2, which says nothing of what was
    # still in flight), then a record at a seq below that checkpoint's, dated before it
    audit_write(3)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_write(1)
        raise RuntimeError("rolled back")
    audit_write(3)
    seqs = list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True))
    (free,) = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    unsettled = admin_signs_the_next_checkpoint()
    assert not checkpoint_is_settled(checkpoint=unsettled, public_key=public_key())
    backdate(seq=free, occurred_at=time_of(free - 1))
    # when the lab verifies, then the old checkpoint still verifies and the rule does not apply after it
    assert audit_verify_database().problem is None


# --- forward-dating: a record dated ahead of the clock, past a review day or out of a technician's shift ----

AHEAD = {"seven hours ahead": timedelta(hours=7), "ten years ahead": timedelta(days=3653)}


def ahead_text(ahead: timedelta) -> str:
    return utc_timestamp(database_now() + ahead)


@pytest.mark.django_db
@pytest.mark.parametrize("ahead", AHEAD)
def test_both_verifiers_name_a_record_dated_after_the_checkpoint_that_first_signs_it(
    witnessed_log: tuple[FileWitness, int], tmp_path: Path, ahead: str
):
    # given a record sealed with the lab's key at a fresh seq but dated ahead of the database's clock (as the
    # app wrote it while a shadowing clock_timestamp() was in its search_path), and the next settled
    # checkpoint signed over it at the real time, as the signer did
    witness, _ = witnessed_log
    seq = fresh_seq()
    backdate(seq=seq, occurred_at=ahead_text(AHEAD[ahead]))
    admin_signs_the_next_checkpoint(settled=True)
    # when the lab verifies, and an auditor verifies an export with the witness
    with pytest.raises(CommandError) as failed:
        call_command("audit_verify", "--witness", str(witness.path))
    said = offline_says(tmp_path, witness.path)
    # then both name the record as forward-dated
    assert str(failed.value).startswith(f"TAMPERED: future_dated at seq {seq}: "), str(failed.value)
    assert said.startswith(f"TAMPERED: future_dated at seq {seq}, line "), said


@pytest.mark.django_db
def test_a_record_dated_ahead_that_no_checkpoint_signs_yet_is_named_and_not_signed(
    witnessed_log: tuple[FileWitness, int], tmp_path: Path
):
    # given a record sealed with the lab's key at a fresh seq, dated seven hours ahead, not yet signed
    witness, _ = witnessed_log
    seq = fresh_seq()
    backdate(seq=seq, occurred_at=ahead_text(AHEAD["seven hours ahead"]))
    before = witness.path.read_bytes()
    # when the lab verifies, and beat wants a checkpoint
    with pytest.raises(CommandError) as failed:
        call_command("audit_verify", "--witness", str(witness.path))
    with pytest.raises(AuditChainBroken, match=f"future_dated at seq {seq}"):
        checkpoint_write()
    said = offline_says(tmp_path, witness.path)
    # then the record is named by its seq, nothing is signed over it, and an auditor names it too
    assert str(failed.value).startswith(f"TAMPERED: future_dated at seq {seq}: "), str(failed.value)
    assert witness.path.read_bytes() == before
    assert said.startswith(f"TAMPERED: future_dated at seq {seq}, line "), said


@pytest.mark.django_db
def test_a_checkpoint_signed_in_the_future_is_named_not_fresh(
    witnessed_log: tuple[FileWitness, int], tmp_path: Path
):
    # given a checkpoint signed with the lab's key at a time half an hour ahead (within the two intervals
    # coverage allows), witnessed and stored
    witness, _ = witnessed_log
    audit_write(1)
    signed = admin_signs_the_next_checkpoint(settled=True, signed_at=ahead_text(timedelta(minutes=30)))
    # when the lab verifies against the witness, and an auditor verifies with it
    with pytest.raises(CommandError) as failed:
        call_command("audit_verify", "--witness", str(witness.path))
    said = offline_says(tmp_path, witness.path)
    # then the checkpoint is named, not taken for a fresh one
    assert str(failed.value).startswith(f"TAMPERED: future_dated at seq {signed.seq}: "), str(failed.value)
    assert said.startswith(f"TAMPERED: future_dated at seq {signed.seq}, line "), said


SHADOW_CLOCKS = (
    "CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE sql"
    " AS $$ SELECT pg_catalog.clock_timestamp() + interval '7 hours' $$;"
    " CREATE FUNCTION public.statement_timestamp() RETURNS timestamptz LANGUAGE sql"
    " AS $$ SELECT pg_catalog.statement_timestamp() + interval '7 hours' $$;"
    " CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql"
    " AS $$ SELECT pg_catalog.now() + interval '7 hours' $$"
)


@pytest.mark.django_db
def test_a_shadowing_clock_in_the_search_path_does_not_time_the_app_s_records():
    # given the superuser's clock functions in public, seven hours ahead, and a search_path (as a role's
    # setting would give it) that puts public before pg_catalog
    audit_write(1)
    with connection.cursor() as cursor:
        cursor.execute(SHADOW_CLOCKS)
        cursor.execute("SET LOCAL search_path = public, pg_catalog")
        cursor.execute("SELECT clock_timestamp() - pg_catalog.clock_timestamp()")
        (shadowed,) = cursor.fetchone()
    assert shadowed > timedelta(hours=6)
    # when the app reads its clock and appends a record
    read = database_now()
    record = audit_append(preview_entry("technician-1", asset_id="asset-1"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_catalog.clock_timestamp()")
        (real,) = cursor.fetchone()
    # then both were timed on the real clock
    assert abs(read - real) < timedelta(minutes=1)
    assert abs(record.occurred_at - real) < timedelta(minutes=1)
