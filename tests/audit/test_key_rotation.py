"""Rotating the signing key as the README says (sign a last checkpoint with the old key, start a new witness
log, publish the new public key) used to make both verifiers report TAMPERED for ever: the database and every
export keep the checkpoints the old key signed, every one was checked with the one current key, and the
`bad_checkpoint_signature` at the first of them hid any later tampering. Each checkpoint is now checked with
the key its key_id names, among the current key and the retired ones (AUDIT_RETIRED_PUBLIC_KEYS; offline,
--public-key given more than once)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.audit.canonical import seal_record
from lab.audit.checkpoints import sign_checkpoint
from lab.audit.configured import public_key, witness_sink
from lab.audit.export import audit_export
from lab.audit.keys import key_id_of, load_public_key, public_key_b64, public_key_fingerprint
from lab.audit.lane_heads import lanes_from_json
from lab.audit.models import AuditCheckpoint, AuditRecord
from lab.audit.records import record_as_chain_dict
from lab.audit.signer import checkpoint_write
from lab.audit.witness import FileWitness
from tests.builders import audit_write
from tests.support.audit_insiders import as_superuser, record_insert_sql
from tests.support.audit_verifiers import audit_verify_says, offline_verifier

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
NEW_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
ATTACKER_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
ATTACKER_RECORD_KEY = bytes(range(200, 232))


def b64(key: Ed25519PrivateKey) -> str:
    return public_key_b64(key.public_key())


def pem(public: str) -> str:
    key = load_public_key(public)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture
def rotated(settings, tmp_path: Path) -> tuple[str, FileWitness, FileWitness]:
    """A log signed with key A (seqs 10, 20, 30 in the first witness log), then the key rotated as the
    README says: the new key B signs, a new witness log, A retired; 5 more records and B's first checkpoint.
    Returns A's public key and both witness logs."""
    for _ in range(3):
        audit_write(10)
        checkpoint_write()
    old_witness = witness_sink()
    assert isinstance(old_witness, FileWitness)
    old_public = public_key_b64(public_key())
    settings.AUDIT_SIGNING_KEY = base64.b64encode(NEW_SIGNING_KEY.private_bytes_raw()).decode()
    settings.AUDIT_RETIRED_PUBLIC_KEYS = [old_public]
    settings.AUDIT_WITNESS = (tmp_path / "witness-b" / "checkpoints.jsonl").as_uri()
    audit_write(5)
    checkpoint_write()
    new_witness = witness_sink()
    assert isinstance(new_witness, FileWitness)
    return old_public, old_witness, new_witness


def offline_says(export: Path, witness: Path, *keys: str, fingerprints: tuple[str, ...] = ()) -> str:
    completed = offline_verifier(export, witness, keys=keys, fingerprints=fingerprints)
    return completed.stdout or completed.stderr


@pytest.mark.parametrize("form", ["base64", "pem"])
def test_after_a_rotation_audit_verify_checks_each_checkpoint_with_the_key_it_names(
    rotated: tuple[str, FileWitness, FileWitness], settings, form: str
):
    # given a rotated key, the retired one configured in either form
    old_public, old_witness, _ = rotated
    settings.AUDIT_RETIRED_PUBLIC_KEYS = [old_public if form == "base64" else pem(old_public)]
    # when the lab verifies against the new witness log, and against the old one
    # then both are whole: A's checkpoints verify with A, B's with B
    assert audit_verify_says() == "OK"
    assert audit_verify_says("--witness", str(old_witness.path)) == "OK"
    assert list(AuditCheckpoint.objects.values_list("seq", flat=True)) == [10, 20, 30, 35]


def test_without_the_retired_key_the_old_checkpoints_are_named(
    rotated: tuple[str, FileWitness, FileWitness], settings
):
    # given a rotated key whose old public key is not configured
    settings.AUDIT_RETIRED_PUBLIC_KEYS = []
    # when the lab verifies, then the first checkpoint the old key signed is named
    assert audit_verify_says().startswith("TAMPERED: bad_checkpoint_signature at seq 10:")


def test_a_record_forged_after_the_rotation_is_named_by_its_own_seq(
    rotated: tuple[str, FileWitness, FileWitness],
):
    # given a record forged by the superuser after the rotation, chained onto the last record
    last = record_as_chain_dict(AuditRecord.objects.order_by("seq").last())  # type: ignore[arg-type]
    forged = seal_record(
        last | {"actor_id": "technician-x"},
        seq=int(str(last["seq"])) + 1,
        prev_hash=str(last["hash"]),
        record_key=ATTACKER_RECORD_KEY,
        lane=int(str(last["lane"])),
        lane_seq=int(str(last["lane_seq"])) + 1,
    )
    sql, values = record_insert_sql(forged)
    as_superuser(sql, *values)
    # when the lab verifies, then the forged record is named, not the first checkpoint of the retired key
    assert audit_verify_says().startswith("TAMPERED: bad_mac at seq 36:")


@pytest.mark.parametrize("named", ["the retired key", "an unknown key"])
def test_a_checkpoint_signed_by_another_key_is_still_refused(
    rotated: tuple[str, FileWitness, FileWitness], named: str
):
    # given a checkpoint the superuser signed with a key of their own, naming the retired key or their own
    old_public, _, _ = rotated
    head = AuditRecord.objects.order_by("seq").values_list("seq", "hash").last()
    assert head is not None
    row = AuditCheckpoint.objects.order_by("pk").last()
    assert row is not None
    named_key = (
        load_public_key(old_public) if named == "the retired key" else ATTACKER_SIGNING_KEY.public_key()
    )
    forged = sign_checkpoint(
        private_key=ATTACKER_SIGNING_KEY,
        key_id=key_id_of(named_key),
        seq=row.seq,
        head_hash=row.head_hash,
        signed_at=row.signed_at,
        lanes=lanes_from_json(json.loads(row.lanes)),
    )
    as_superuser(
        "UPDATE audit_auditcheckpoint SET key_id = %s, signature = %s WHERE id = %s",
        forged.key_id,
        forged.signature,
        row.pk,
    )
    # when the lab verifies, then that checkpoint is named
    assert audit_verify_says().startswith("TAMPERED: bad_checkpoint_signature at seq 35:")


def test_the_offline_verifier_takes_every_key_and_names_the_first_checkpoint_of_a_key_not_given(
    rotated: tuple[str, FileWitness, FileWitness], tmp_path: Path
):
    # given an export made after the rotation (its own checkpoint signed with the new key)
    old_public, _, new_witness = rotated
    export = tmp_path / "export" / "audit.jsonl"
    export.parent.mkdir()
    outcome = audit_export(path=export, actor_id="auditor-1", actor_role="auditor")
    assert outcome.problem is None
    new_public = b64(NEW_SIGNING_KEY)
    # when the auditor verifies with both keys, and with the new one only
    both = offline_says(export, new_witness.path, new_public, old_public)
    new_only = offline_says(export, new_witness.path, new_public)
    # then with both it is whole; with the new key only, the first checkpoint of the old key is named
    assert both.startswith("OK: 36 records"), both
    assert new_only.startswith("TAMPERED: bad_checkpoint_signature at seq 10, line 1 of"), new_only
    assert str(export.with_suffix(".checkpoints.jsonl")) in new_only


def test_the_offline_verifier_s_fingerprints_pin_every_key_given(
    rotated: tuple[str, FileWitness, FileWitness], tmp_path: Path
):
    # given an export after the rotation
    old_public, _, new_witness = rotated
    export = tmp_path / "export" / "audit.jsonl"
    export.parent.mkdir()
    audit_export(path=export, actor_id="auditor-1", actor_role="auditor")
    new_public = b64(NEW_SIGNING_KEY)
    fingerprint_of = {key: public_key_fingerprint(load_public_key(key)) for key in (new_public, old_public)}
    # when both keys are given but only the new one's fingerprint is pinned, and when both are pinned
    one_pinned = offline_says(
        export, new_witness.path, new_public, old_public, fingerprints=(fingerprint_of[new_public],)
    )
    both_pinned = offline_says(
        export, new_witness.path, new_public, old_public, fingerprints=tuple(fingerprint_of.values())
    )
    # then a key not pinned is refused before anything is verified, and pinned keys verify
    assert f"the public key {fingerprint_of[old_public]} is not among the pinned fingerprints" in one_pinned
    assert both_pinned.startswith("OK: 36 records"), both_pinned
