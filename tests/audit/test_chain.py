"""The pure chain core: canonical bytes, hashes, keys, signed checkpoints, and the chain walk over mappings.
Test vectors here are what another implementation of the verifier must reproduce byte for byte."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.audit.canonical import (
    EXPORT_FIELDS,
    EXPORT_FIELDS_LANED,
    GENESIS_HASH,
    RECORD_FIELDS,
    RECORD_FIELDS_LANED,
    canonical_bytes,
    compute_hash,
    seal_record,
    utc_timestamp,
)
from lab.audit.chain_checks import verify_checkpoints, verify_records
from lab.audit.checkpoints import (
    Checkpoint,
    checkpoint_message,
    checkpoint_signature_is_valid,
    sign_checkpoint,
)
from lab.audit.keys import (
    load_private_key,
    load_public_key,
    load_record_key,
    public_key_b64,
    public_key_fingerprint,
)
from lab.audit.models import AuditRecord
from lab.audit.problems import ChainProblem
from tests.audit import RECORD_KEY, build_chain, record_fields

SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_KEY = SIGNING_KEY.public_key()
SIGNED_AT = "2026-05-09T08:00:00.000000Z"

VECTOR_RECORD: dict[str, object] = {
    "seq": 1,
    "occurred_at": "2026-05-09T08:00:00.123456Z",
    "actor_id": None,
    "actor_role": "technician",
    "action": "image.view.preview",
    "asset_id": "asset-1",
    "order_ref": "ORD-1",
    "purpose": "printing",
    "justification": 'crop "check"\nfür Druck',
    "context_type": "print_job",
    "context_id": "pj-1",
    "outcome": "granted",
    "rule": "purpose_matches_step",
    "client_ip": "10.0.0.7",
    "user_agent": "UA/1.0",
    "request_id": "req-1",
    "content_sha256": "c" * 64,
    "policy_version": "2026-01",
    "prev_hash": GENESIS_HASH,
}
VECTOR_BYTES = (
    '{"action":"image.view.preview","actor_id":null,"actor_role":"technician","asset_id":"asset-1",'
    '"client_ip":"10.0.0.7","content_sha256":"'
    + "c"
    * 64
    + '","context_id":"pj-1","context_type":"print_job",'
    '"justification":"crop \\"check\\"\\nfür Druck","occurred_at":"2026-05-09T08:00:00.123456Z",'
    '"order_ref":"ORD-1","outcome":"granted","policy_version":"2026-01","prev_hash":"' + "0" * 64 + '",'
    '"purpose":"printing","request_id":"req-1","rule":"purpose_matches_step","seq":1,"user_agent":"UA/1.0"}'
).encode("utf-8")


EXPORTED_BEFORE_LANES = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_role",
    "action",
    "asset_id",
    "order_ref",
    "purpose",
    "justification",
    "context_type",
    "context_id",
    "outcome",
    "rule",
    "client_ip",
    "user_agent",
    "request_id",
    "content_sha256",
    "policy_version",
    "prev_hash",
    "mac",
    "hash",
)


def test_the_model_stores_exactly_the_exported_fields_and_declares_the_hashed_ones_in_chain_order() -> None:
    # given the audit record model's columns
    columns = [str(field.column) for field in AuditRecord._meta.concrete_fields]
    # when / then: every stored column is exported (laned), nothing exported is missing from the table
    primary_key = AuditRecord._meta.pk
    assert primary_key is not None and primary_key.column == "seq"
    assert sorted(columns) == sorted(EXPORT_FIELDS_LANED)
    assert len(columns) == len(set(columns))
    # and the model declares the fields hashed before lanes in RECORD_FIELDS' order
    assert tuple(columns[: len(RECORD_FIELDS)]) == RECORD_FIELDS


def test_the_export_order_is_the_hashed_fields_then_the_lane_then_mac_and_hash() -> None:
    # given / when / then: the column order of every export file, which other verifiers read
    assert EXPORT_FIELDS == EXPORTED_BEFORE_LANES
    assert (*EXPORTED_BEFORE_LANES[:-2], "lane", "lane_seq", "mac", "hash") == EXPORT_FIELDS_LANED
    assert EXPORTED_BEFORE_LANES[:-2] == RECORD_FIELDS
    assert (*EXPORTED_BEFORE_LANES[:-2], "lane", "lane_seq") == RECORD_FIELDS_LANED


def test_canonical_bytes_are_sorted_compact_utf8_with_nulls_kept() -> None:
    # given the vector record with its keys in model order
    # when serialized
    serialized = canonical_bytes(VECTOR_RECORD)
    # then the bytes are exactly the canonical form
    assert serialized == VECTOR_BYTES


def test_canonical_bytes_ignore_key_order_the_hash_and_other_keys() -> None:
    # given the vector record reversed, with a stored hash and a database id
    shuffled = dict(reversed(VECTOR_RECORD.items())) | {"hash": "f" * 64, "id": 99}
    # when serialized / then only the hashed fields count
    assert canonical_bytes(shuffled) == VECTOR_BYTES


def test_compute_hash_is_sha256_of_the_canonical_bytes() -> None:
    # given the vector record
    # when hashed
    digest = compute_hash(VECTOR_RECORD)
    # then it is the sha256 of the canonical bytes
    assert digest == hashlib.sha256(VECTOR_BYTES).hexdigest()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seq": True}, "seq must be an integer, not bool"),
        ({"seq": "1"}, "seq must be an integer, not str"),
        ({"purpose": None}, "purpose must be a string, not NoneType"),
        ({"actor_id": 7}, "actor_id must be a string or null, not int"),
        ({"occurred_at": datetime(2026, 1, 1, tzinfo=UTC)}, "occurred_at must be a string, not datetime"),
    ],
)
def test_canonical_bytes_refuse_values_that_would_not_survive_a_round_trip(
    change: dict[str, object], message: str
) -> None:
    # given a record with one value of the wrong type
    record = VECTOR_RECORD | change
    # when serialized / then it is refused, naming the field
    with pytest.raises(ValueError, match=f"^{message}$"):
        canonical_bytes(record)


def test_canonical_bytes_refuse_a_record_with_missing_fields() -> None:
    # given a record without rule and prev_hash
    record = {name: value for name, value in VECTOR_RECORD.items() if name not in ("rule", "prev_hash")}
    # when serialized / then both are named
    with pytest.raises(ValueError, match=r"^missing field\(s\): rule, prev_hash$"):
        canonical_bytes(record)


def test_canonical_bytes_refuse_text_that_is_not_unicode() -> None:
    # given a lone surrogate, which has no UTF-8 encoding
    record = VECTOR_RECORD | {"justification": "\ud800"}
    # when serialized / then it is refused
    with pytest.raises(UnicodeEncodeError):
        canonical_bytes(record)


def test_seal_record_links_to_the_given_head() -> None:
    # given the fields of a record, without seq and prev_hash
    fields = {name: value for name, value in VECTOR_RECORD.items() if name not in ("seq", "prev_hash")}
    # when sealed as seq 1 after the genesis hash
    record = seal_record(fields, seq=1, prev_hash=GENESIS_HASH, record_key=RECORD_KEY)
    # then it is the vector record with its hash and the HMAC-SHA256 of the same bytes
    assert record == VECTOR_RECORD | {
        "hash": hashlib.sha256(VECTOR_BYTES).hexdigest(),
        "mac": hmac.new(RECORD_KEY, VECTOR_BYTES, hashlib.sha256).hexdigest(),
    }


def test_utc_timestamp_has_microseconds_and_z() -> None:
    # given an aware time in another zone
    moment = datetime(2026, 5, 9, 10, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    # when formatted / then it is UTC with six fraction digits and Z
    assert utc_timestamp(moment) == "2026-05-09T08:00:00.000005Z"


def test_utc_timestamp_refuses_a_naive_time() -> None:
    # given / when / then
    with pytest.raises(ValueError, match="naive"):
        utc_timestamp(datetime(2026, 5, 9, 8, 0, 0))


def test_keys_load_from_base64_and_pem_and_have_a_stable_fingerprint() -> None:
    # given the signing key as base64 and PEM, and its public key likewise
    private_raw = SIGNING_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    private_pem = SIGNING_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    public_pem = PUBLIC_KEY.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    # when loaded
    from_b64 = load_private_key(base64.b64encode(private_raw).decode("ascii"))
    from_pem = load_private_key(private_pem)
    public_from_pem = load_public_key(public_pem)
    public_from_b64 = load_public_key(" " + public_key_b64(PUBLIC_KEY) + "\n")
    # then all name the same key, whose fingerprint is the sha256 of its 32 raw bytes
    fingerprints = {
        public_key_fingerprint(key)
        for key in (from_b64.public_key(), from_pem.public_key(), public_from_pem, public_from_b64)
    }
    assert fingerprints == {"56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c"}
    assert public_key_b64(PUBLIC_KEY) == "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "the key is neither PEM nor base64"),
        ("c2hvcnQ=", "a raw Ed25519 key is 32 bytes, this one is 5"),
    ],
)
def test_a_bad_public_key_is_refused(text: str, message: str) -> None:
    # given / when / then
    with pytest.raises(ValueError, match=f"^{message}$"):
        load_public_key(text)


def test_a_pem_key_of_another_algorithm_is_refused() -> None:
    # given an EC P-256 public key in PEM
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    # when loaded / then it is refused
    with pytest.raises(ValueError, match=r"^the PEM public key is not an Ed25519 key$"):
        load_public_key(ec_pem)


def test_checkpoint_message_is_tagged_canonical_json() -> None:
    # given / when
    message = checkpoint_message(seq=5, head_hash="a" * 64, signed_at=SIGNED_AT, key_id="audit-2026")
    # then
    assert message == (
        b'{"format":"printlab.audit.checkpoint.v1","head_hash":"' + b"a" * 64 + b'","key_id":"audit-2026",'
        b'"seq":5,"signed_at":"2026-05-09T08:00:00.000000Z"}'
    )


def test_a_signed_checkpoint_verifies_and_round_trips_as_a_line() -> None:
    # given a checkpoint of seq 5
    checkpoint = sign_checkpoint(
        private_key=SIGNING_KEY, key_id="audit-2026", seq=5, head_hash="a" * 64, signed_at=SIGNED_AT
    )
    # when written as a line and read back
    line = checkpoint.to_line()
    read_back = Checkpoint.from_line(line)
    # then it is the deterministic Ed25519 signature, valid for the public key, and survives the round trip
    assert checkpoint.signature == (
        "J8D4aP0zw4Xbd2Wai4blrfx2w4caQKUN4HOBKm9RFkxseO+lVhu438wf+rCGkr4OqxzmXs/7uvLlUxbxaVHyAw=="
    )
    assert checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=PUBLIC_KEY) is True
    assert read_back == checkpoint
    assert line == (
        '{"head_hash":"'
        + "a" * 64
        + '","key_id":"audit-2026","seq":5,"signature":"'
        + checkpoint.signature
        + '","signed_at":"2026-05-09T08:00:00.000000Z"}'
    )


@pytest.mark.parametrize(
    "change",
    [{"seq": 6}, {"head_hash": "b" * 64}, {"signed_at": "2026-05-09T09:00:00.000000Z"}, {"key_id": "other"}],
)
def test_changing_any_signed_field_invalidates_the_signature(change: dict[str, Any]) -> None:
    # given a valid checkpoint with one signed field changed
    checkpoint = sign_checkpoint(
        private_key=SIGNING_KEY, key_id="audit-2026", seq=5, head_hash="a" * 64, signed_at=SIGNED_AT
    )
    altered = dataclasses.replace(checkpoint, **change)
    # when checked / then the signature fails
    assert checkpoint_signature_is_valid(checkpoint=altered, public_key=PUBLIC_KEY) is False


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seq": -1}, "checkpoint seq must be >= 0"),
        ({"head_hash": "A" * 64}, "checkpoint head_hash must be 64 lowercase hex digits"),
        ({"signed_at": "2026-05-09T08:00:00Z"}, "checkpoint signed_at must look like"),
        ({"key_id": ""}, "checkpoint key_id must not be empty"),
    ],
)
def test_sign_checkpoint_refuses_ill_formed_fields(fields: dict[str, object], message: str) -> None:
    # given checkpoint fields with one ill-formed
    arguments: dict[str, Any] = {
        "seq": 5,
        "head_hash": "a" * 64,
        "signed_at": SIGNED_AT,
        "key_id": "audit-2026",
    } | fields
    # when signed / then refused
    with pytest.raises(ValueError, match=f"^{message}"):
        sign_checkpoint(private_key=SIGNING_KEY, **arguments)


@pytest.mark.parametrize(
    "line",
    [
        "[]",
        '{"seq":5}',
        '{"head_hash":"'
        + "a" * 64
        + '","key_id":"k","seq":"5","signature":"","signed_at":"'
        + SIGNED_AT
        + '"}',
    ],
)
def test_checkpoint_from_line_refuses_what_is_not_a_checkpoint(line: str) -> None:
    # given / when / then
    with pytest.raises(ValueError, match=r"^(a checkpoint is an object|checkpoint seq must be an integer)"):
        Checkpoint.from_line(line)


def test_verify_records_accepts_an_intact_chain() -> None:
    # given a chain of 50 records
    records = build_chain(50)
    # when verified
    result = verify_records(iter(records))
    # then all 50 count and the head is the last one
    assert result.problem is None
    assert result.is_intact is True
    assert (result.count, result.head_seq, result.head_hash) == (50, 50, records[-1]["hash"])


def test_verify_records_of_nothing_is_the_genesis_head() -> None:
    # given / when
    result = verify_records([])
    # then
    assert (result.count, result.head_seq, result.head_hash, result.problem) == (0, 0, GENESIS_HASH, None)


def test_verify_records_resumes_from_a_verified_record() -> None:
    # given records 21..50 and the hash of record 20
    records = build_chain(50)
    # when verified from there
    result = verify_records(records[20:], start_prev_hash=str(records[19]["hash"]), start_seq=21)
    # then 30 records are verified up to the same head
    assert (result.count, result.head_seq, result.head_hash, result.problem) == (
        30,
        50,
        records[-1]["hash"],
        None,
    )


def test_verify_records_stops_at_the_first_problem_without_reading_on() -> None:
    # given a stream whose record 10 is altered and that fails if read past the one record of look-ahead
    records = build_chain(50)
    records[9] = records[9] | {"purpose": "curiosity"}

    def stream() -> Iterator[Mapping[str, object]]:
        yield from records[:11]
        raise AssertionError("read past the first problem")

    # when verified
    result = verify_records(stream())
    # then the walk ended at record 10 with record 9 as the head
    assert result.problem == ChainProblem(
        10, 10, "hash_mismatch", "the record does not match its stored hash: a field was altered"
    )
    assert (result.count, result.head_seq, result.head_hash) == (9, 9, records[8]["hash"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": 7}, "unexpected field(s): id"),
        ({"hash": None}, "hash must be a string"),
        ({"purpose": 5}, "purpose must be a string, not int"),
    ],
)
def test_verify_records_reports_malformed_mappings(change: dict[str, object], message: str) -> None:
    # given record 4 with an extra key or a wrong type
    records = build_chain(6)
    records[3] = records[3] | change
    # when verified
    result = verify_records(records)
    # then record 4 is named as malformed
    assert result.problem == ChainProblem(4, 4, "malformed", message)


def test_verify_records_reports_a_missing_field() -> None:
    # given record 4 without its rule
    records = build_chain(6)
    del records[3]["rule"]
    # when verified / then
    assert verify_records(records).problem == ChainProblem(4, 4, "malformed", "missing field(s): rule")


def _checkpoints(records: list[dict[str, object]], seqs: tuple[int, ...]) -> list[Checkpoint]:
    return [
        sign_checkpoint(
            private_key=SIGNING_KEY,
            key_id="audit-2026",
            seq=seq,
            head_hash=GENESIS_HASH if seq == 0 else str(records[seq - 1]["hash"]),
            signed_at=SIGNED_AT,
        )
        for seq in seqs
    ]


def test_verify_checkpoints_accepts_heads_as_a_mapping_or_a_lookup() -> None:
    # given checkpoints of seq 0 (empty log), 3 and 5 and the records' hashes
    records = build_chain(5)
    checkpoints = _checkpoints(records, (0, 3, 5))
    heads = {int(str(record["seq"])): str(record["hash"]) for record in records}
    # when verified with a mapping and with a lookup function
    with_mapping = verify_checkpoints(checkpoints, public_key=PUBLIC_KEY, heads=heads)
    with_lookup = verify_checkpoints(checkpoints, public_key=PUBLIC_KEY, heads=heads.get)
    # then both accept them
    assert (with_mapping, with_lookup) == (None, None)


def test_verify_checkpoints_names_a_head_that_differs() -> None:
    # given a checkpoint of seq 3 while the stored record 3 has another hash
    records = build_chain(5)
    checkpoints = _checkpoints(records, (3,))
    # when verified
    problem = verify_checkpoints(checkpoints, public_key=PUBLIC_KEY, heads={3: "e" * 64})
    # then
    assert problem == ChainProblem(
        3,
        1,
        "checkpoint_mismatch",
        "record seq 3 does not have the hash its checkpoint signs: the chain up to seq 3 was rewritten",
    )


def test_verify_checkpoints_names_a_seq_that_is_gone() -> None:
    # given a checkpoint of seq 5 while only records 1..3 are there
    records = build_chain(5)
    heads = {int(str(record["seq"])): str(record["hash"]) for record in records[:3]}
    # when verified without and with the last seq present
    without_head = verify_checkpoints(_checkpoints(records, (5,)), public_key=PUBLIC_KEY, heads=heads)
    with_head = verify_checkpoints(
        _checkpoints(records, (5,)), public_key=PUBLIC_KEY, heads=heads, head_seq=3
    )
    # then the checkpoint's seq, or the first missing seq, is named
    assert without_head == ChainProblem(
        5,
        1,
        "truncated_after_checkpoint",
        "a checkpoint signs seq 5 but the records end: seq 5 onwards removed",
    )
    assert with_head == ChainProblem(
        4,
        1,
        "truncated_after_checkpoint",
        "a checkpoint signs seq 5 but the records end at seq 3: seq 4 onwards removed",
    )


def test_a_checkpoint_of_the_empty_log_must_sign_the_genesis_hash() -> None:
    # given a seq 0 checkpoint over another hash
    checkpoint = sign_checkpoint(
        private_key=SIGNING_KEY, key_id="audit-2026", seq=0, head_hash="1" * 64, signed_at=SIGNED_AT
    )
    # when verified / then it does not match the empty log
    problem = verify_checkpoints([checkpoint], public_key=PUBLIC_KEY, heads={})
    assert problem is not None
    assert (problem.kind, problem.seq, problem.line) == ("checkpoint_mismatch", 0, 1)


def test_record_fields_builder_covers_every_hashed_field_but_seq_and_prev_hash() -> None:
    # given / when / then: the shared test records exercise the whole field list
    assert set(record_fields(1)) == set(RECORD_FIELDS) - {"seq", "prev_hash"}


def test_verify_records_with_the_record_key_names_a_record_made_without_it() -> None:
    # given a chain whose record 4 was re-made, hash and links intact, with another key's mac
    records = build_chain(6)
    records[3] = seal_record(
        records[3], seq=4, prev_hash=str(records[2]["hash"]), record_key=bytes(range(200, 232))
    )
    # when verified without and with the record key
    without_key = verify_records(records)
    with_key = verify_records(records, record_key=RECORD_KEY)
    # then only the key tells, naming record 4
    assert without_key.problem is None
    assert with_key.problem == ChainProblem(
        4,
        4,
        "bad_mac",
        "the record is not authenticated by the record key: forged or rewritten by someone without the key",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [("not base64!", "the record key is not base64"), ("c2hvcnQ=", "at least 32 bytes, this one is 5")],
)
def test_a_bad_record_key_is_refused(text: str, message: str) -> None:
    # given / when / then
    with pytest.raises(ValueError, match=message):
        load_record_key(text)
