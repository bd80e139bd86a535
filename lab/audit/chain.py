"""Tamper evidence for the audit log: canonical record bytes, the hash chain and Ed25519-signed checkpoints.
Pure Python (stdlib + cryptography), no Django: the Django model mirrors RECORD_FIELDS and calls in here.

Canonical form (also what an auditor re-implements in another language): a JSON object holding exactly the
fields of RECORD_FIELDS, keys sorted, no whitespace, UTF-8, non-ASCII characters written as themselves,
``null`` kept, seq as an integer, every other value a string. For these value types it is byte-identical to
RFC 8785 (JSON Canonicalization Scheme). ``hash = sha256(canonical bytes).hexdigest()``; every record's
prev_hash is the previous record's hash, and the first record's prev_hash is GENESIS_HASH.
``mac = HMAC-SHA256(record key, canonical bytes).hexdigest()``: the record key lives with the application,
never in the database, so someone who can only write the database cannot make a record (or rewrite one, or
recompute a chain) that carries a valid mac.

A checkpoint signs (seq, head_hash): "the record with this seq has this hash", which pins every record up to
seq through the chain. Checkpoints are written on a schedule even when nothing happened (so a quiet period
cannot hide a deletion) and on every export. The verifier takes the public key from the auditor, never from
the export.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS_HASH = "0" * 64

# Every hashed field, in the order the Django model declares them; "hash" itself is the only stored field
# that is not hashed. The canonical form sorts keys, so this order does not affect any hash.
RECORD_FIELDS: tuple[str, ...] = (
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
)
NULLABLE_FIELDS: frozenset[str] = frozenset({"actor_id", "asset_id", "order_ref", "client_ip"})
# One exported record: the hashed fields plus the stored hash and the record's mac.
EXPORT_FIELDS: tuple[str, ...] = (*RECORD_FIELDS, "mac", "hash")

CHECKPOINT_FORMAT = "printlab.audit.checkpoint.v1"
CHECKPOINT_FIELDS: tuple[str, ...] = ("seq", "head_hash", "signed_at", "key_id", "signature")

PROBLEM_KINDS: tuple[str, ...] = (
    "hash_mismatch",
    "prev_hash_mismatch",
    "seq_gap",
    "seq_out_of_order",
    "duplicate_seq",
    "bad_mac",
    "head_mismatch",
    "bad_checkpoint_signature",
    "checkpoint_mismatch",
    "truncated_after_checkpoint",
    "unsigned_tail",
    "witness_incomplete",
    "coverage_gap",
    "stale_witness",
    "malformed",
)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
# The C encoder with fixed options; building it once avoids json.dumps' per-call option handling.
_encode_canonical = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


def utc_timestamp(moment: datetime) -> str:
    """Format an aware datetime the way occurred_at and signed_at are stored: UTC, microseconds, 'Z'."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_type_error(record: Mapping[str, object]) -> str | None:
    """Say what makes the record's hashed fields unfit for hashing, or None when they are fit."""
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        return "missing field(s): " + ", ".join(missing)
    seq = record["seq"]
    # bool is an int subclass and would serialize as true/false.
    if type(seq) is not int:
        return f"seq must be an integer, not {type(seq).__name__}"
    for name in RECORD_FIELDS[1:]:
        value = record[name]
        if type(value) is str or (value is None and name in NULLABLE_FIELDS):
            continue
        allowed = "a string or null" if name in NULLABLE_FIELDS else "a string"
        return f"{name} must be {allowed}, not {type(value).__name__}"
    return None


def canonical_bytes(record: Mapping[str, object]) -> bytes:
    """The bytes that are hashed: the RECORD_FIELDS of the record in canonical JSON (other keys ignored)."""
    error = record_type_error(record)
    if error is not None:
        raise ValueError(error)
    # A lone surrogate cannot be encoded as UTF-8: encode() raises UnicodeEncodeError, a ValueError.
    return _encode_canonical({name: record[name] for name in RECORD_FIELDS}).encode("utf-8")


def compute_hash(record: Mapping[str, object]) -> str:
    """The record's chain hash: sha256 hex over its canonical bytes, which include prev_hash."""
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def compute_mac(record: Mapping[str, object], *, record_key: bytes) -> str:
    """The record's authenticator: HMAC-SHA256 hex over the same canonical bytes the hash covers."""
    return mac_of_bytes(canonical_bytes(record), record_key=record_key)


def mac_of_bytes(canonical: bytes, *, record_key: bytes) -> str:
    return hmac.digest(record_key, canonical, "sha256").hex()


def load_record_key(text: str) -> bytes:
    """The record (HMAC) key from its base64 text; at least 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as error:
        raise ValueError("the record key is not base64") from error
    if len(raw) < 32:
        raise ValueError(f"the record key must be at least 32 bytes, this one is {len(raw)}")
    return raw


def export_line(record: Mapping[str, object]) -> str:
    """One record as an export line (no newline): canonical JSON of RECORD_FIELDS plus hash and mac."""
    error = record_type_error(record)
    if error is not None:
        raise ValueError(error)
    for name in ("hash", "mac"):
        if type(record.get(name)) is not str:
            raise ValueError(f"{name} must be a string")
    return _encode_canonical({name: record[name] for name in EXPORT_FIELDS})


def seal_record(
    fields: Mapping[str, object], *, seq: int, prev_hash: str, record_key: bytes
) -> dict[str, object]:
    """The next record of the chain: the given fields (seq/prev_hash/hash/mac there are replaced) with seq,
    prev_hash (the current head's hash, GENESIS_HASH for seq 1), the resulting hash and its mac."""
    record: dict[str, object] = {name: fields[name] for name in RECORD_FIELDS if name in fields}
    record["seq"] = seq
    record["prev_hash"] = prev_hash
    canonical = canonical_bytes(record)
    record["hash"] = hashlib.sha256(canonical).hexdigest()
    record["mac"] = mac_of_bytes(canonical, record_key=record_key)
    return record


# --- keys -------------------------------------------------------------------------------------------


def load_private_key(pem_or_b64: str) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from PKCS#8 PEM or from base64 of its 32 raw bytes."""
    text = pem_or_b64.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM private key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_key_bytes(text))


def load_public_key(pem_or_b64: str) -> Ed25519PublicKey:
    """Read an Ed25519 public key from SubjectPublicKeyInfo PEM or from base64 of its 32 raw bytes."""
    text = pem_or_b64.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM public key is not an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_key_bytes(text))


def _raw_key_bytes(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise ValueError("the key is neither PEM nor base64") from error
    if len(raw) != 32:
        raise ValueError(f"a raw Ed25519 key is 32 bytes, this one is {len(raw)}")
    return raw


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """The public key as base64 of its 32 raw bytes: what the verifier's --public-key accepts."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """sha256 hex of the 32 raw public key bytes: the short value an auditor pins and compares."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


# --- checkpoints --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the record with this seq has this hash (seq 0: the empty log)."""

    seq: int
    head_hash: str
    signed_at: str
    key_id: str
    signature: str  # base64 of the 64-byte Ed25519 signature over checkpoint_message(...)

    def to_line(self) -> str:
        """The checkpoint as one canonical JSON line (no newline) of the checkpoints file."""
        return _encode_canonical({name: getattr(self, name) for name in CHECKPOINT_FIELDS})

    @classmethod
    def from_line(cls, line: str | bytes) -> Checkpoint:
        """Parse one checkpoints-file line; raise ValueError when it is not a well-formed checkpoint."""
        data = json.loads(line)
        if type(data) is not dict or set(data) != set(CHECKPOINT_FIELDS):
            raise ValueError("a checkpoint is an object with exactly: " + ", ".join(CHECKPOINT_FIELDS))
        for name in ("head_hash", "signed_at", "key_id", "signature"):
            if type(data[name]) is not str:
                raise ValueError(f"checkpoint {name} must be a string")
        if type(data["seq"]) is not int:
            raise ValueError("checkpoint seq must be an integer")
        _check_checkpoint_fields(
            seq=data["seq"], head_hash=data["head_hash"], signed_at=data["signed_at"], key_id=data["key_id"]
        )
        return cls(**data)


def _check_checkpoint_fields(*, seq: int, head_hash: str, signed_at: str, key_id: str) -> None:
    if seq < 0:
        raise ValueError("checkpoint seq must be >= 0")
    if not _HEX64.fullmatch(head_hash):
        raise ValueError("checkpoint head_hash must be 64 lowercase hex digits")
    if not _UTC_TIMESTAMP.fullmatch(signed_at):
        raise ValueError("checkpoint signed_at must look like 2026-01-31T23:59:59.000000Z")
    if not key_id:
        raise ValueError("checkpoint key_id must not be empty")


def checkpoint_message(*, seq: int, head_hash: str, signed_at: str, key_id: str) -> bytes:
    """The exact bytes a checkpoint signature covers; the format tag keeps them from meaning anything else."""
    body = {
        "format": CHECKPOINT_FORMAT,
        "head_hash": head_hash,
        "key_id": key_id,
        "seq": seq,
        "signed_at": signed_at,
    }
    return _encode_canonical(body).encode("utf-8")


def sign_checkpoint(
    *, private_key: Ed25519PrivateKey, key_id: str, seq: int, head_hash: str, signed_at: str
) -> Checkpoint:
    """Sign (seq, head_hash) at signed_at; key_id is a label for the key, covered by the signature."""
    _check_checkpoint_fields(seq=seq, head_hash=head_hash, signed_at=signed_at, key_id=key_id)
    message = checkpoint_message(seq=seq, head_hash=head_hash, signed_at=signed_at, key_id=key_id)
    signature = base64.b64encode(private_key.sign(message)).decode("ascii")
    return Checkpoint(seq=seq, head_hash=head_hash, signed_at=signed_at, key_id=key_id, signature=signature)


def checkpoint_signature_is_valid(*, checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """Whether the checkpoint was signed by the private half of this (pinned) public key."""
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except binascii.Error:
        return False
    message = checkpoint_message(
        seq=checkpoint.seq,
        head_hash=checkpoint.head_hash,
        signed_at=checkpoint.signed_at,
        key_id=checkpoint.key_id,
    )
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# --- verification -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainProblem:
    """The first thing found wrong. For record problems line is the 1-based record line (or position),
    for checkpoint problems the line of the checkpoints file. seq is where the chain breaks: the missing
    seq for seq_gap and truncated_after_checkpoint, the repeated seq for duplicate_seq, the checkpoint's
    seq for other checkpoint problems, otherwise the seq expected on that line (the record's own seq
    unless its seq was altered or the record was moved)."""

    seq: int | None
    line: int | None
    kind: str
    message: str


@dataclass(frozen=True)
class VerifyResult:
    """count records verified; head_seq/head_hash is the last good record (start_seq - 1 and
    start_prev_hash when none); problem is the first one found, where verification stopped."""

    count: int
    head_seq: int
    head_hash: str
    problem: ChainProblem | None

    @property
    def is_intact(self) -> bool:
        return self.problem is None


# One record reduced to what the chain walk needs: (line, seq, prev_hash, stored hash, computed hash, whether
# its mac is valid: always True when no record key was given).
ChainEntry = tuple[int, int, str, str, str, bool]


@dataclass(frozen=True)
class Malformed:
    """A record that could not be read as a record; the walk turns it into a "malformed" problem."""

    line: int
    reason: str


def verify_records(
    records: Iterable[Mapping[str, object]],
    *,
    start_prev_hash: str = GENESIS_HASH,
    start_seq: int = 1,
    record_key: bytes | None = None,
) -> VerifyResult:
    """Walk records (each exactly EXPORT_FIELDS) in order, in O(1) memory, and stop at the first problem.
    start_prev_hash/start_seq resume from a record already verified (e.g. one pinned by a checkpoint);
    with record_key every record's mac is checked too."""
    return walk_chain(
        _mapping_entries(records, record_key), start_prev_hash=start_prev_hash, start_seq=start_seq
    )


def _mapping_entries(
    records: Iterable[Mapping[str, object]], record_key: bytes | None
) -> Iterator[ChainEntry | Malformed]:
    export_keys = frozenset(EXPORT_FIELDS)
    for line, record in enumerate(records, start=1):
        if record.keys() != export_keys:
            yield Malformed(line, _key_error(record.keys()))
            continue
        error = record_type_error(record)
        stored_hash, stored_mac = record["hash"], record["mac"]
        if error is None and not isinstance(stored_hash, str):
            error = "hash must be a string"
        if error is None and not isinstance(stored_mac, str):
            error = "mac must be a string"
        if error is not None:
            yield Malformed(line, error)
            continue
        try:
            canonical = canonical_bytes(record)
        except ValueError as encode_error:
            yield Malformed(line, f"cannot be encoded: {encode_error}")
            continue
        computed = hashlib.sha256(canonical).hexdigest()
        is_authentic = record_key is None or hmac.compare_digest(
            mac_of_bytes(canonical, record_key=record_key), cast(str, stored_mac)
        )
        # record_type_error has established these types.
        yield (
            line,
            cast(int, record["seq"]),
            cast(str, record["prev_hash"]),
            cast(str, stored_hash),
            computed,
            is_authentic,
        )


def _key_error(keys: Iterable[str]) -> str:
    present = set(keys)
    missing = sorted(set(EXPORT_FIELDS) - present)
    unexpected = sorted(present - set(EXPORT_FIELDS))
    parts = []
    if missing:
        parts.append("missing field(s): " + ", ".join(missing))
    if unexpected:
        parts.append("unexpected field(s): " + ", ".join(unexpected))
    return "; ".join(parts)


def walk_chain(
    entries: Iterator[ChainEntry | Malformed],
    *,
    start_prev_hash: str = GENESIS_HASH,
    start_seq: int = 1,
    heads_wanted: frozenset[int] = frozenset(),
    heads: dict[int, str] | None = None,
) -> VerifyResult:
    """The chain walk shared by verify_records and the export reader. Stores the hash of every record
    whose seq is in heads_wanted into heads, so checkpoints can be matched without a second pass."""
    expected = start_seq
    head_hash = start_prev_hash
    # The hash of the record before the head: tells which of two records with one seq was inserted.
    before_head_hash = start_prev_hash
    problem: ChainProblem | None = None
    for entry in entries:
        if isinstance(entry, Malformed):
            problem = ChainProblem(expected, entry.line, "malformed", entry.reason)
            break
        line, seq, prev_hash, stored_hash, computed_hash, is_authentic = entry
        # The record's own hash first: an altered seq or prev_hash is then reported as what it is.
        if computed_hash != stored_hash:
            claim = "" if seq == expected else f" (it claims seq {seq})"
            problem = ChainProblem(
                expected,
                line,
                "hash_mismatch",
                f"the record{claim} does not match its stored hash: a field was altered",
            )
            break
        # Then its mac: a record made or rewritten without the record key, however well chained.
        if not is_authentic:
            claim = "" if seq == expected else f" (it claims seq {seq})"
            problem = ChainProblem(
                expected,
                line,
                "bad_mac",
                f"the record{claim} is not authenticated by the record key: forged or rewritten"
                " by someone without the key",
            )
            break
        if seq != expected:
            problem = _seq_problem(entry, expected, start_seq, (before_head_hash, head_hash), entries)
            break
        if prev_hash != head_hash:
            problem = ChainProblem(
                seq,
                line,
                "prev_hash_mismatch",
                f"record seq {seq} does not link to the record before it (seq {seq - 1}):"
                " that record was replaced, or this one was",
            )
            break
        before_head_hash = head_hash
        head_hash = stored_hash
        expected += 1
        if seq in heads_wanted and heads is not None:
            heads[seq] = stored_hash
    return VerifyResult(
        count=expected - start_seq, head_seq=expected - 1, head_hash=head_hash, problem=problem
    )


def _seq_problem(
    entry: ChainEntry,
    expected: int,
    start_seq: int,
    last_two_hashes: tuple[str, str],
    entries: Iterator[ChainEntry | Malformed],
) -> ChainProblem:
    line, seq, prev_hash, stored_hash, _, _ = entry
    before_head_hash, head_hash = last_two_hashes
    # One record of look-ahead (only on this failure path) tells a deletion from a move, and which of two
    # records with the same seq the chain actually continues from.
    following = next(entries, None)
    following_seq, following_prev_hash = (
        (following[1], following[2]) if isinstance(following, tuple) else (None, None)
    )
    if seq == expected - 1 and seq >= start_seq:
        # An exact copy is not "inserted before": the later line is then the one named.
        is_different_record = stored_hash != head_hash
        chain_continues_here = following_seq == expected and following_prev_hash == stored_hash
        if is_different_record and chain_continues_here and prev_hash == before_head_hash:
            return ChainProblem(
                seq,
                line - 1,
                "duplicate_seq",
                f"a second record with seq {seq}, not part of the chain (the chain continues through"
                f" line {line}): inserted",
            )
        return ChainProblem(seq, line, "duplicate_seq", f"seq {seq} again (already on line {line - 1})")
    if start_seq <= seq < expected:
        return ChainProblem(
            seq, line, "duplicate_seq", f"seq {seq} again (already on line {seq - start_seq + 1})"
        )
    if seq > expected and (following is None or following_seq == seq + 1):
        missing = f"seq {expected} is" if seq == expected + 1 else f"seqs {expected}..{seq - 1} are"
        return ChainProblem(
            expected, line, "seq_gap", f"{missing} missing (this line holds seq {seq}): deleted"
        )
    return ChainProblem(
        expected,
        line,
        "seq_out_of_order",
        f"holds seq {seq} where seq {expected} belongs: records were moved",
    )


def verify_checkpoints(
    checkpoints: Iterable[Checkpoint],
    *,
    public_key: Ed25519PublicKey,
    heads: Mapping[int, str] | Callable[[int], str | None],
    head_seq: int | None = None,
) -> ChainProblem | None:
    """Check each checkpoint's signature with the pinned key and that the record it names has the signed
    hash; heads maps seq -> stored hash (None/absent: not present). head_seq, when given, is the last seq
    present, so a checkpoint beyond it reports the first missing seq. Returns the first problem or None."""
    lookup = heads.get if isinstance(heads, Mapping) else heads
    previous_seq = -1
    for line, checkpoint in enumerate(checkpoints, start=1):
        seq = checkpoint.seq
        if not checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=public_key):
            return ChainProblem(
                seq,
                line,
                "bad_checkpoint_signature",
                f"checkpoint for seq {seq}: the signature is not valid for the pinned public key",
            )
        if seq < previous_seq:
            return ChainProblem(
                seq,
                line,
                "checkpoint_mismatch",
                f"checkpoint for seq {seq} comes after one for seq {previous_seq}: the log was rolled back",
            )
        previous_seq = seq
        actual = GENESIS_HASH if seq == 0 else lookup(seq)
        if actual is None or (head_seq is not None and seq > head_seq):
            first_missing = seq if head_seq is None else head_seq + 1
            return ChainProblem(
                first_missing,
                line,
                "truncated_after_checkpoint",
                f"a checkpoint signs seq {seq} but the records end"
                + ("" if head_seq is None else f" at seq {head_seq}")
                + f": seq {first_missing} onwards removed",
            )
        if actual != checkpoint.head_hash:
            return ChainProblem(
                seq,
                line,
                "checkpoint_mismatch",
                f"record seq {seq} does not have the hash its checkpoint signs: the chain up to seq {seq}"
                " was rewritten",
            )
    return None
