"""Tamper evidence for the audit log: canonical record bytes, the hash chains and Ed25519-signed checkpoints.
Pure Python (stdlib + cryptography), no Django: the Django model mirrors RECORD_FIELDS and calls in here.

Canonical form (also what an auditor re-implements in another language): a JSON object holding exactly the
fields of RECORD_FIELDS (a record written before lanes existed) or RECORD_FIELDS_LANED (every record since),
keys sorted, no whitespace, UTF-8, non-ASCII characters written as themselves, ``null`` kept, seq, lane and
lane_seq as integers, every other value a string. For these value types it is byte-identical to RFC 8785
(JSON Canonicalization Scheme). ``hash = sha256(canonical bytes).hexdigest()``.
``mac = HMAC-SHA256(record key, canonical bytes).hexdigest()``: the record key lives with the application,
never in the database, so someone who can only write the database cannot make a record (or rewrite one, or
recompute a chain) that carries a valid mac.

Lanes. The log is a fixed number of hash chains ("lanes", 1..16), so that writers in different lanes do not
wait for each other's commits. A record names its lane and its position there (lane_seq: 1, 2, 3... with no
gap); its prev_hash is the hash of the record before it in the same lane (GENESIS_HASH for the lane's first).
seq is the global order the records are read in (a database sequence: strictly increasing, gaps allowed, from
a transaction that rolled back). A record written before lanes existed has neither field: it is in lane 1 at
position seq, and the lanes' records continue lane 1 after it. Within a lane seq increases with lane_seq.

A checkpoint signs the head of every lane (lane, lane_seq, seq, hash): "the record at this position of this
lane has this hash", which pins every record of every lane up to its head through the chains; its seq and
head_hash are those of the newest head. A checkpoint from before lanes signs (seq, head_hash) only: lane 1 up
to seq. Checkpoints are written on a schedule even when nothing happened (so a quiet period cannot hide a
deletion) and on every export. The verifier takes the public key from the auditor, never from the export; a
checkpoint names its key by key_id (the fingerprint's first 16 hex digits), so after a rotation each one is
checked with its own key (KeyRing). A settled checkpoint (CHECKPOINT_FORMAT_SETTLED, the same fields signed
under another tag) also vouches for what no later record may be: numbered at or below it, or timed before it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS_HASH = "0" * 64

# Every hashed field of a record written before lanes, in the order the Django model declares them; "hash"
# itself is the only stored field that is not hashed. The canonical form sorts keys, so this order does not
# affect any hash.
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
# A record's lane and its position there: hashed in every record written since lanes.
LANE_FIELDS: tuple[str, ...] = ("lane", "lane_seq")
RECORD_FIELDS_LANED: tuple[str, ...] = (*RECORD_FIELDS, *LANE_FIELDS)
EXPORT_FIELDS_LANED: tuple[str, ...] = (*RECORD_FIELDS_LANED, "mac", "hash")
# The number of lanes; a record's lane is 1..LANES.
LANES = 16

CHECKPOINT_FORMAT = "printlab.audit.checkpoint.v1"
CHECKPOINT_FORMAT_LANED = "printlab.audit.checkpoint.v2"
# A settled checkpoint: the same fields, signed under this tag (so the line, and every copy of it in the
# witness, an export or a receipt's anchor, looks as before). It says two more things, which a checkpoint
# signed under v1/v2 does not: every seq up to its seq is written and covered by it or never will be (the
# signer waited for every append in flight first, and signs no record above the sequence's value then), and
# every record it does not cover was timed at or after its signed_at (read while every lane was held).
CHECKPOINT_FORMAT_SETTLED = "printlab.audit.checkpoint.v3"
CHECKPOINT_FIELDS: tuple[str, ...] = ("seq", "head_hash", "signed_at", "key_id", "signature")
CHECKPOINT_FIELDS_LANED: tuple[str, ...] = (*CHECKPOINT_FIELDS, "lanes")

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
    "bad_time",
    "witness_unreadable",
    "witness_unwritable",
    "backdated",
    "future_dated",
)

# Problems of the signer's liveness, not of the log's integrity: a checkpoint signed late (a lost beat send,
# a signer stopped for a while) or none lately. One is reported only when nothing is wrong with the records,
# the checkpoints or the witness's lines themselves: by the lowest seq alone, the gap one lost send leaves hid
# every deletion or rewrite above it for good.
LIVENESS_KINDS = frozenset({"coverage_gap", "stale_witness"})


def problem_rank(problem: ChainProblem) -> int:
    """0 for a problem of the log's integrity, 1 for one of the signer's liveness (reported after)."""
    return 1 if problem.kind in LIVENESS_KINDS else 0


_HEX64 = re.compile(r"[0-9a-f]{64}")
_UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
# The C encoder with fixed options; building it once avoids json.dumps' per-call option handling.
_encode_canonical = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


def utc_timestamp(moment: datetime) -> str:
    """Format an aware datetime the way occurred_at and signed_at are stored: UTC, microseconds, 'Z'."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_laned(record: Mapping[str, object]) -> bool:
    """Whether the record was written in a lane (it has a lane_seq), rather than before lanes existed."""
    return record.get("lane_seq") is not None


def record_fields(record: Mapping[str, object]) -> tuple[str, ...]:
    """The hashed fields of this record: RECORD_FIELDS_LANED for a laned record, else RECORD_FIELDS."""
    return RECORD_FIELDS_LANED if is_laned(record) else RECORD_FIELDS


def record_type_error(record: Mapping[str, object]) -> str | None:
    """Say what makes the record's hashed fields unfit for hashing, or None when they are fit."""
    names = record_fields(record)
    missing = [name for name in names if name not in record]
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
    if names is RECORD_FIELDS_LANED:
        for name in LANE_FIELDS:
            value = record[name]
            if type(value) is not int:
                return f"{name} must be an integer, not {type(value).__name__}"
            if value < 1:
                return f"{name} must be at least 1"
    return None


def canonical_bytes(record: Mapping[str, object]) -> bytes:
    """The bytes that are hashed: the hashed fields of the record in canonical JSON (other keys ignored)."""
    error = record_type_error(record)
    if error is not None:
        raise ValueError(error)
    # A lone surrogate cannot be encoded as UTF-8: encode() raises UnicodeEncodeError, a ValueError.
    return _encode_canonical({name: record[name] for name in record_fields(record)}).encode("utf-8")


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
    """One record as an export line (no newline): canonical JSON of its hashed fields plus hash and mac."""
    error = record_type_error(record)
    if error is not None:
        raise ValueError(error)
    for name in ("hash", "mac"):
        if type(record.get(name)) is not str:
            raise ValueError(f"{name} must be a string")
    names = EXPORT_FIELDS_LANED if is_laned(record) else EXPORT_FIELDS
    return _encode_canonical({name: record[name] for name in names})


def seal_record(
    fields: Mapping[str, object],
    *,
    seq: int,
    prev_hash: str,
    record_key: bytes,
    lane: int | None = None,
    lane_seq: int | None = None,
) -> dict[str, object]:
    """The next record of a chain: the given fields (seq/prev_hash/hash/mac there are replaced) with seq,
    prev_hash (the hash of the record before it in its lane, GENESIS_HASH for a lane's first), the resulting
    hash and its mac. lane/lane_seq place it in a lane; without them a laned record in fields keeps its lane
    and position, and fields without lane fields make a record in the format from before lanes."""
    record: dict[str, object] = {name: fields[name] for name in RECORD_FIELDS if name in fields}
    if lane is not None or lane_seq is not None:
        record["lane"], record["lane_seq"] = lane, lane_seq
    elif is_laned(fields):
        record["lane"], record["lane_seq"] = fields.get("lane"), fields["lane_seq"]
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


KEY_ID_LENGTH = 16


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key_id the lab's signer names its key by in every checkpoint: its fingerprint's first 16 digits."""
    return public_key_fingerprint(public_key)[:KEY_ID_LENGTH]


@dataclass(frozen=True)
class KeyRing:
    """The public keys checkpoints are checked with: the current one and those retired by a rotation (the
    database and every export keep the checkpoints an old key signed, and the witness log of its time).

    Each checkpoint is checked with the key its key_id names, and with that key only; a key_id that names
    none of the retired keys is checked with the current key (a checkpoint signed by any other key, however
    it names itself, is refused). A retired key must be one that did not leak: whoever holds it can sign
    checkpoints these keys accept (the witness's pinned hashes still stand against a rewrite)."""

    current: Ed25519PublicKey
    retired: tuple[Ed25519PublicKey, ...] = ()

    def key_for(self, key_id: str) -> Ed25519PublicKey:
        for key in self.retired:
            if key_id_of(key) == key_id:
                return key
        return self.current


# One pinned key, or a key ring (a rotation's retired keys with the current one).
PublicKeys = Ed25519PublicKey | KeyRing


def checkpoint_key(public_keys: PublicKeys, key_id: str) -> Ed25519PublicKey:
    """The key a checkpoint naming key_id is checked with."""
    return public_keys.key_for(key_id) if isinstance(public_keys, KeyRing) else public_keys


# --- checkpoints --------------------------------------------------------------------------------------

# One lane's head as a checkpoint signs it: (lane, lane_seq, seq, hash).
LaneHead = tuple[int, int, int, str]


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement about the heads of the lanes (seq 0: the empty log).

    lanes holds (lane, lane_seq, seq, hash) of every lane with a record, in lane order; seq and head_hash are
    the newest of them. A checkpoint from before lanes has no lanes and signs lane 1 up to seq."""

    seq: int
    head_hash: str
    signed_at: str
    key_id: str
    signature: str  # base64 of the 64-byte Ed25519 signature over checkpoint_message(...)
    lanes: tuple[LaneHead, ...] = ()

    def to_line(self) -> str:
        """The checkpoint as one canonical JSON line (no newline) of the checkpoints file."""
        body: dict[str, object] = {name: getattr(self, name) for name in CHECKPOINT_FIELDS}
        if self.lanes:
            body["lanes"] = [list(head) for head in self.lanes]
        return _encode_canonical(body)

    @classmethod
    def from_line(cls, line: str | bytes) -> Checkpoint:
        """Parse one checkpoints-file line; raise ValueError when it is not a well-formed checkpoint."""
        data = json.loads(line)
        if type(data) is not dict or set(data) not in (set(CHECKPOINT_FIELDS), set(CHECKPOINT_FIELDS_LANED)):
            raise ValueError("a checkpoint is an object with exactly: " + ", ".join(CHECKPOINT_FIELDS))
        for name in ("head_hash", "signed_at", "key_id", "signature"):
            if type(data[name]) is not str:
                raise ValueError(f"checkpoint {name} must be a string")
        if type(data["seq"]) is not int:
            raise ValueError("checkpoint seq must be an integer")
        lanes = lanes_from_json(data.pop("lanes")) if "lanes" in data else ()
        _check_checkpoint_fields(
            seq=data["seq"],
            head_hash=data["head_hash"],
            signed_at=data["signed_at"],
            key_id=data["key_id"],
            lanes=lanes,
        )
        return cls(**data, lanes=lanes)


def lanes_from_json(value: object) -> tuple[LaneHead, ...]:
    """A checkpoint's lanes from their JSON form, a list of [lane, lane_seq, seq, hash]."""
    if type(value) is not list or not value:
        raise ValueError("checkpoint lanes must be a non-empty list")
    heads: list[LaneHead] = []
    for item in value:
        if (
            type(item) is not list
            or len(item) != 4
            or any(type(number) is not int for number in item[:3])
            or type(item[3]) is not str
        ):
            raise ValueError("each checkpoint lane is [lane, lane_seq, seq, hash]")
        heads.append((item[0], item[1], item[2], item[3]))
    return tuple(heads)


def lanes_to_json(lanes: Iterable[LaneHead]) -> str:
    """A checkpoint's lanes as canonical JSON (how the database stores them; "" for none)."""
    heads = [list(head) for head in lanes]
    return _encode_canonical(heads) if heads else ""


def _check_checkpoint_fields(
    *,
    seq: int,
    head_hash: str,
    signed_at: str,
    key_id: str,
    lanes: tuple[LaneHead, ...] = (),
    is_signing: bool = False,
) -> None:
    """Refuse ill-formed fields. Only the signer must also name the newest lane head as seq and head_hash:
    a checkpoint read back whose fields disagree is refused by its signature, not as malformed."""
    if seq < 0:
        raise ValueError("checkpoint seq must be >= 0")
    if not _HEX64.fullmatch(head_hash):
        raise ValueError("checkpoint head_hash must be 64 lowercase hex digits")
    if not _UTC_TIMESTAMP.fullmatch(signed_at):
        raise ValueError("checkpoint signed_at must look like 2026-01-31T23:59:59.000000Z")
    if not key_id:
        raise ValueError("checkpoint key_id must not be empty")
    if not lanes:
        return
    previous_lane = 0
    for lane, lane_seq, lane_head_seq, lane_hash in lanes:
        if not previous_lane < lane <= LANES:
            raise ValueError(f"checkpoint lanes must be 1..{LANES}, each once, in order")
        if lane_seq < 1 or lane_head_seq < 1 or not _HEX64.fullmatch(lane_hash):
            raise ValueError("a checkpoint lane head is lane_seq >= 1, seq >= 1 and 64 lowercase hex digits")
        previous_lane = lane
    if is_signing and (seq, head_hash) != lanes_checkpoint_head(lanes):
        raise ValueError("checkpoint seq and head_hash must be those of its newest lane head")


def checkpoint_lanes(checkpoint: Checkpoint) -> tuple[LaneHead, ...]:
    """The lane heads a checkpoint signs; one from before lanes signs lane 1 up to its seq."""
    if checkpoint.lanes:
        return checkpoint.lanes
    if checkpoint.seq == 0:
        return ()
    return ((1, checkpoint.seq, checkpoint.seq, checkpoint.head_hash),)


def checkpoint_message(
    *,
    seq: int,
    head_hash: str,
    signed_at: str,
    key_id: str,
    lanes: Iterable[LaneHead] = (),
    is_settled: bool = False,
) -> bytes:
    """The exact bytes a checkpoint signature covers; the format tag keeps them from meaning anything else
    (and says whether the checkpoint is settled: CHECKPOINT_FORMAT_SETTLED)."""
    heads = [list(head) for head in lanes]
    body: dict[str, object] = {
        "format": _format_tag(is_settled=is_settled, has_lanes=bool(heads)),
        "head_hash": head_hash,
        "key_id": key_id,
        "seq": seq,
        "signed_at": signed_at,
    }
    if heads:
        body["lanes"] = heads
    return _encode_canonical(body).encode("utf-8")


def _format_tag(*, is_settled: bool, has_lanes: bool) -> str:
    if is_settled:
        return CHECKPOINT_FORMAT_SETTLED
    return CHECKPOINT_FORMAT_LANED if has_lanes else CHECKPOINT_FORMAT


def sign_checkpoint(
    *,
    private_key: Ed25519PrivateKey,
    key_id: str,
    seq: int,
    head_hash: str,
    signed_at: str,
    lanes: Iterable[LaneHead] = (),
    is_settled: bool = False,
) -> Checkpoint:
    """Sign (seq, head_hash) — and the lane heads, when given — at signed_at; key_id is a label for the
    key, covered by the signature. is_settled: only the lab's signer, which settled the log first, says so
    (CHECKPOINT_FORMAT_SETTLED)."""
    heads = tuple(lanes)
    _check_checkpoint_fields(
        seq=seq, head_hash=head_hash, signed_at=signed_at, key_id=key_id, lanes=heads, is_signing=True
    )
    message = checkpoint_message(
        seq=seq, head_hash=head_hash, signed_at=signed_at, key_id=key_id, lanes=heads, is_settled=is_settled
    )
    signature = base64.b64encode(private_key.sign(message)).decode("ascii")
    return Checkpoint(
        seq=seq, head_hash=head_hash, signed_at=signed_at, key_id=key_id, signature=signature, lanes=heads
    )


def lanes_checkpoint_head(lanes: Iterable[LaneHead]) -> tuple[int, str]:
    """(seq, head_hash) a checkpoint of these lane heads names: the newest head, or 0 and GENESIS_HASH."""
    heads = list(lanes)
    if not heads:
        return 0, GENESIS_HASH
    newest = max(heads, key=lambda head: head[2])
    return newest[2], newest[3]


def checkpoint_signature_is_valid(*, checkpoint: Checkpoint, public_key: PublicKeys) -> bool:
    """Whether the checkpoint was signed by the private half of this (pinned) public key, or of the key of
    the ring its key_id names, settled or not."""
    return checkpoint_signed_as(checkpoint=checkpoint, public_key=public_key) is not None


def checkpoint_is_settled(*, checkpoint: Checkpoint, public_key: PublicKeys) -> bool:
    """Whether the checkpoint is validly signed as settled (CHECKPOINT_FORMAT_SETTLED)."""
    return checkpoint_signed_as(checkpoint=checkpoint, public_key=public_key) == CHECKPOINT_FORMAT_SETTLED


def checkpoint_signed_as(*, checkpoint: Checkpoint, public_key: PublicKeys) -> str | None:
    """The format tag the checkpoint's signature is valid under (settled first, as the signer writes now;
    then the tag of its shape, as it wrote before), or None: not signed by that key."""
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except binascii.Error:
        return None
    key = checkpoint_key(public_key, checkpoint.key_id)
    raw_key = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for is_settled in (True, False):
        message = checkpoint_message(
            seq=checkpoint.seq,
            head_hash=checkpoint.head_hash,
            signed_at=checkpoint.signed_at,
            key_id=checkpoint.key_id,
            lanes=checkpoint.lanes,
            is_settled=is_settled,
        )
        if _signature_verifies(raw_key, signature, message):
            return _format_tag(is_settled=is_settled, has_lanes=bool(checkpoint.lanes))
    return None


# Ed25519 verifications already made, by (key, signature, sha256 of the message): a verifier checks each
# witnessed checkpoint up to three times (the witness's consistency, the database's or the export's copy, and
# the backdating rule), under two tags for a checkpoint signed before settling, at ~0.1 ms each. Bounded:
# emptied when full (a long-running signer adds one entry an interval).
_VERIFIED: dict[tuple[bytes, bytes, bytes], bool] = {}
_VERIFIED_MAX = 32768


def _signature_verifies(raw_key: bytes, signature: bytes, message: bytes) -> bool:
    remembered = (raw_key, signature, hashlib.sha256(message).digest())
    known = _VERIFIED.get(remembered)
    if known is not None:
        return known
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, message)
        is_valid = True
    except InvalidSignature:
        is_valid = False
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[remembered] = is_valid
    return is_valid


# --- verification -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainProblem:
    """The first thing found wrong. For record problems line is the 1-based record line (or position),
    for checkpoint problems the line of the checkpoints file. seq is where the chain breaks: the missing
    seq for seq_gap and truncated_after_checkpoint, the repeated seq for duplicate_seq, the checkpoint's
    seq for other checkpoint problems, otherwise the seq expected on that line (the record's own seq
    unless its seq was altered or the record was moved). lane is the lane the problem is in, for records
    written in lanes (None for the log from before lanes, and for problems of the log as a whole); there a
    missing record's seq is not known, and seq is the one after the last good record of its lane."""

    seq: int | None
    line: int | None
    kind: str
    message: str
    lane: int | None = None

    @property
    def place(self) -> str:
        """Where, for a summary line: "at seq N", or "at line N" for a problem of a file (a witness line)
        that names no seq, or "(no seq)" for one of a whole file (it read "at seq None")."""
        if self.seq is not None:
            return f"at seq {self.seq}"
        if self.line is not None:
            return f"at line {self.line}"
        return "(no seq)"


@dataclass(frozen=True)
class VerifyResult:
    """count records verified; head_seq/head_hash is the last good record (start_seq - 1 and
    start_prev_hash when none); problem is the first one found, where verification stopped. lanes: the last
    good record of every lane that has one, as (lane, lane_seq, seq, hash); first_seq: the first record's
    seq; laned: whether any record was written in a lane; first_unsigned: (seq, line, lane, lane_seq) of the
    first record beyond the positions the walk was told are signed."""

    count: int
    head_seq: int
    head_hash: str
    problem: ChainProblem | None
    lanes: Mapping[int, LaneHead] = field(default_factory=dict)
    first_seq: int | None = None
    laned: bool = False
    first_unsigned: tuple[int, int, int, int] | None = None
    absent: tuple[tuple[int, int], ...] = ()  # ranges of seqs the walk found no record for (from, to)

    @property
    def is_intact(self) -> bool:
        return self.problem is None


# One record reduced to what the chain walk needs: (line, seq, prev_hash, stored hash, computed hash, whether
# its mac is valid: always True when no record key was given), plus (lane, lane_seq) for a laned record.
ChainEntry = tuple[int, int, str, str, str, bool] | tuple[int, int, str, str, str, bool, int, int]


@dataclass(frozen=True)
class Malformed:
    """A record that could not be read as a record; the walk turns it into a problem of this kind, at this
    seq when the reader knows it (else at the seq expected there)."""

    line: int
    reason: str
    seq: int | None = None
    kind: str = "malformed"
    lane: int | None = None


@dataclass(frozen=True)
class Unreadable:
    """A stored record its reader could not turn into the record's fields, given to verify_records in its
    place: named at its seq as `kind` (e.g. "bad_time": a time the database holds but no reader can take,
    which the app never writes), where the walk reaches it."""

    seq: int
    kind: str
    reason: str
    lane: int | None = None


def verify_records(
    records: Iterable[Mapping[str, object] | Unreadable],
    *,
    start_prev_hash: str = GENESIS_HASH,
    start_seq: int = 1,
    record_key: bytes | None = None,
    lane_starts: Mapping[int, LaneHead] | None = None,
) -> VerifyResult:
    """Walk records (each exactly EXPORT_FIELDS or EXPORT_FIELDS_LANED) in order, in O(1) memory, and stop
    at the first problem. start_prev_hash/start_seq resume lane 1 from a record already verified (e.g. one
    pinned by a checkpoint), lane_starts every lane; with record_key every record's mac is checked too."""
    return walk_chain(
        _mapping_entries(records, record_key),
        start_prev_hash=start_prev_hash,
        start_seq=start_seq,
        lane_starts=lane_starts,
    )


def _mapping_entries(
    records: Iterable[Mapping[str, object] | Unreadable], record_key: bytes | None
) -> Iterator[ChainEntry | Malformed]:
    export_keys = frozenset(EXPORT_FIELDS)
    laned_keys = frozenset(EXPORT_FIELDS_LANED)
    for line, record in enumerate(records, start=1):
        if isinstance(record, Unreadable):
            yield Malformed(line, record.reason, record.seq, record.kind, record.lane)
            continue
        keys = record.keys()
        if keys != export_keys and keys != laned_keys:
            yield Malformed(line, _key_error(keys, laned=is_laned(record)))
            continue
        error = record_type_error(record)
        stored_hash, stored_mac = record["hash"], record["mac"]
        if error is None and not isinstance(stored_hash, str):
            error = "hash must be a string"
        if error is None and not isinstance(stored_mac, str):
            error = "mac must be a string"
        if error is None and keys == laned_keys and not is_laned(record):
            error = "lane_seq must be an integer, not NoneType"
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
        seq, prev_hash = cast(int, record["seq"]), cast(str, record["prev_hash"])
        if keys == laned_keys:
            lane, lane_seq = cast(int, record["lane"]), cast(int, record["lane_seq"])
            yield (line, seq, prev_hash, cast(str, stored_hash), computed, is_authentic, lane, lane_seq)
        else:
            yield (line, seq, prev_hash, cast(str, stored_hash), computed, is_authentic)


def _key_error(keys: Iterable[str], *, laned: bool = False) -> str:
    present = set(keys)
    expected = set(EXPORT_FIELDS_LANED if laned else EXPORT_FIELDS)
    missing = sorted(expected - present)
    unexpected = sorted(present - expected)
    parts = []
    if missing:
        parts.append("missing field(s): " + ", ".join(missing))
    if unexpected:
        parts.append("unexpected field(s): " + ", ".join(unexpected))
    return "; ".join(parts)


@dataclass
class _Lane:
    """The walk's state of one lane: the position it expects next and its last good record."""

    expected: int
    head_hash: str
    before_head_hash: str
    head_seq: int
    head_line: int | None = None


def walk_chain(
    entries: Iterator[ChainEntry | Malformed],
    *,
    start_prev_hash: str = GENESIS_HASH,
    start_seq: int = 1,
    lane_starts: Mapping[int, LaneHead] | None = None,
    heads_wanted: frozenset[int] = frozenset(),
    heads: dict[int, str] | None = None,
    signed_positions: Mapping[int, int] | None = None,
) -> VerifyResult:
    """The chain walk shared by verify_records and the export reader: records in seq order, every lane
    checked as its own chain. Stores the hash of every record whose seq is in heads_wanted into heads, so
    checkpoints can be matched without a second pass. lane_starts resumes each lane after a verified head
    (default: lane 1 after start_seq - 1 / start_prev_hash); signed_positions (lane -> last signed lane_seq)
    makes the walk note the first record that no signature covers."""
    lanes: dict[int, _Lane] = {}
    if lane_starts is None:
        lanes[1] = _Lane(start_seq, start_prev_hash, start_prev_hash, start_seq - 1)
    else:
        for lane, (lane_seq, seq, lane_hash) in ((k, v[1:]) for k, v in lane_starts.items()):
            lanes[lane] = _Lane(lane_seq + 1, lane_hash, lane_hash, seq)
    count = 0
    laned = False
    last: tuple[int, str, int] | None = None  # seq, hash and line of the last good record
    first_seq: int | None = None
    first_unsigned: tuple[int, int, int, int] | None = None
    # Seqs with no record (a rolled-back writer's, or a deleted record's): where a lane's missing record was.
    absent: list[tuple[int, int]] = []
    previous_seq: int | None = 0 if lane_starts is None and start_seq == 1 else None
    problem: ChainProblem | None = None
    for entry in entries:
        if isinstance(entry, Malformed):
            if entry.seq is not None:
                expected_seq = entry.seq
            elif laned:
                expected_seq = (last[0] if last is not None else max(s.head_seq for s in lanes.values())) + 1
            else:
                expected_seq = lanes[1].expected if 1 in lanes else 1
            problem = ChainProblem(expected_seq, entry.line, entry.kind, entry.reason, entry.lane)
            break
        is_laned_entry = len(entry) == 8
        laned = laned or is_laned_entry
        if laned:
            problem = _laned_step(entry, lanes, last, absent, previous_seq)
        else:
            lane_one = lanes.setdefault(1, _Lane(1, GENESIS_HASH, GENESIS_HASH, 0))
            problem = _legacy_step(entry, lane_one, start_seq, entries)
        if problem is not None:
            break
        line, seq, _, stored_hash = entry[:4]
        lane, lane_seq = lane_of(entry)
        state = lanes.setdefault(lane, _Lane(1, GENESIS_HASH, GENESIS_HASH, 0))
        state.before_head_hash = state.head_hash
        state.head_hash = stored_hash
        state.head_seq = seq
        state.head_line = line
        state.expected = lane_seq + 1
        last = (seq, stored_hash, line)
        if previous_seq is not None and seq > previous_seq + 1:
            absent.append((previous_seq + 1, seq - 1))
        previous_seq = seq
        count += 1
        if first_seq is None:
            first_seq = seq
        if seq in heads_wanted and heads is not None:
            heads[seq] = stored_hash
        if (
            first_unsigned is None
            and signed_positions is not None
            and lane_seq > signed_positions.get(lane, 0)
        ):
            first_unsigned = (seq, line, lane, lane_seq)
    if last is not None:
        head_seq, head_hash = last[0], last[1]
    elif lane_starts is None:
        head_seq, head_hash = start_seq - 1, start_prev_hash
    else:
        head_seq, head_hash = lanes_checkpoint_head(lane_starts.values())
    return VerifyResult(
        count=count,
        head_seq=head_seq,
        head_hash=head_hash,
        problem=problem,
        lanes={
            lane: (lane, state.expected - 1, state.head_seq, state.head_hash)
            for lane, state in sorted(lanes.items())
            if state.expected > 1
        },
        first_seq=first_seq,
        laned=laned,
        first_unsigned=first_unsigned,
        absent=tuple(absent),
    )


def first_absent(
    absent: Iterable[tuple[int, int]], *, after: int, before: int | None = None, end: int | None = None
) -> int | None:
    """The first seq after `after` (and before `before`) that holds no record: in an absent range, or past
    the last record (end). None when there is none."""
    for start, stop in absent:
        if stop > after:
            candidate = max(start, after + 1)
            return candidate if before is None or candidate < before else None
    if end is not None and (before is None or max(end, after) + 1 < before):
        return max(end, after) + 1
    return None


def lane_of(entry: ChainEntry) -> tuple[int, int]:
    """(lane, lane_seq) of a chain entry; a record from before lanes is in lane 1 at position seq."""
    if len(entry) == 8:
        return entry[6], entry[7]
    return 1, entry[1]


def _legacy_step(
    entry: ChainEntry, state: _Lane, start_seq: int, entries: Iterator[ChainEntry | Malformed]
) -> ChainProblem | None:
    """One record of a log from before lanes: seqs 1, 2, 3... with no gap, each linked to the one before."""
    line, seq, prev_hash, stored_hash, computed_hash, is_authentic = entry[:6]
    expected = state.expected
    # The record's own hash first: an altered seq or prev_hash is then reported as what it is.
    if computed_hash != stored_hash:
        claim = "" if seq == expected else f" (it claims seq {seq})"
        return ChainProblem(
            expected,
            line,
            "hash_mismatch",
            f"the record{claim} does not match its stored hash: a field was altered",
        )
    # Then its mac: a record made or rewritten without the record key, however well chained.
    if not is_authentic:
        claim = "" if seq == expected else f" (it claims seq {seq})"
        return ChainProblem(
            expected,
            line,
            "bad_mac",
            f"the record{claim} is not authenticated by the record key: forged or rewritten"
            " by someone without the key",
        )
    if seq != expected:
        return _seq_problem(entry, expected, start_seq, (state.before_head_hash, state.head_hash), entries)
    if prev_hash != state.head_hash:
        return ChainProblem(
            seq,
            line,
            "prev_hash_mismatch",
            f"record seq {seq} does not link to the record before it (seq {seq - 1}):"
            " that record was replaced, or this one was",
        )
    return None


def _laned_step(
    entry: ChainEntry,
    lanes: dict[int, _Lane],
    last: tuple[int, str, int] | None,
    absent: list[tuple[int, int]],
    previous_seq: int | None,
) -> ChainProblem | None:
    """One record once lanes are in use: its hash and mac, its place in the global seq order, its position in
    its lane and its link to the record before it there. A record from before lanes counts as lane 1 at
    position seq."""
    line, seq, prev_hash, stored_hash, computed_hash, is_authentic = entry[:6]
    lane, lane_seq = lane_of(entry)
    where = f"lane {lane} #{lane_seq}"
    if computed_hash != stored_hash:
        return ChainProblem(
            seq,
            line,
            "hash_mismatch",
            f"the record ({where}) does not match its stored hash: a field was altered",
            lane,
        )
    if not is_authentic:
        return ChainProblem(
            seq,
            line,
            "bad_mac",
            f"the record ({where}) is not authenticated by the record key: forged or rewritten by someone"
            " without the key",
            lane,
        )
    if last is not None and seq <= last[0]:
        if seq == last[0]:
            return ChainProblem(
                seq, line, "duplicate_seq", f"seq {seq} again (already on line {last[2]})", lane
            )
        return ChainProblem(
            seq,
            line,
            "seq_out_of_order",
            f"holds seq {seq} after seq {last[0]} (line {last[2]}): records were moved",
            lane,
        )
    state = lanes.get(lane) or _Lane(1, GENESIS_HASH, GENESIS_HASH, 0)
    if lane_seq < state.expected:
        forked = lane_seq == state.expected - 1 and prev_hash == state.before_head_hash
        fork = (
            f"; it and seq {state.head_seq} (line {state.head_line}) both follow the same record: one of the"
            " two was inserted"
            if forked
            else ""
        )
        return ChainProblem(
            seq,
            line,
            "duplicate_seq",
            f"{where} again: lane {lane} is already at #{state.expected - 1} (seq {state.head_seq}){fork}",
            lane,
        )
    if lane_seq > state.expected:
        missing = (
            f"#{state.expected} is"
            if lane_seq == state.expected + 1
            else f"#{state.expected}..#{lane_seq - 1} are"
        )
        after = f"after seq {state.head_seq} " if state.head_seq else ""
        # The deleted record's seq is one the log holds no record for, between the lane's last good record
        # and this one: the first such seq is named (exact when one record was deleted and no writer rolled
        # back in between).
        gap = [(previous_seq + 1, seq - 1)] if previous_seq is not None and seq > previous_seq + 1 else []
        first = first_absent([*absent, *gap], after=state.head_seq, before=seq)
        return ChainProblem(
            first if first is not None else state.head_seq + 1,
            line,
            "seq_gap",
            f"lane {lane} {missing} missing ({after}before seq {seq}, which holds {where}): deleted",
            lane,
        )
    if prev_hash != state.head_hash:
        before = f"seq {state.head_seq}" if state.head_seq else "none"
        return ChainProblem(
            seq,
            line,
            "prev_hash_mismatch",
            f"record seq {seq} ({where}) does not link to the record before it in lane {lane} ({before}):"
            " that record was replaced, or this one was",
            lane,
        )
    return None


def _seq_problem(
    entry: ChainEntry,
    expected: int,
    start_seq: int,
    last_two_hashes: tuple[str, str],
    entries: Iterator[ChainEntry | Malformed],
) -> ChainProblem:
    line, seq, prev_hash, stored_hash = entry[0], entry[1], entry[2], entry[3]
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
    public_key: PublicKeys,
    heads: Mapping[int, str] | Callable[[int], str | None],
    head_seq: int | None = None,
    lane_heads: Mapping[int, LaneHead] | None = None,
    absent: Iterable[tuple[int, int]] = (),
) -> ChainProblem | None:
    """Check each checkpoint's signature with the pinned key and that the record of every head it signs has
    the signed hash; heads maps seq -> stored hash (None/absent: not present). head_seq, when given, is the
    last seq present, lane_heads the last record present of each lane and absent the seqs with no record
    (VerifyResult), so a checkpoint beyond them reports the first missing seq. Returns the first problem or
    None."""
    gaps = tuple(absent)
    lookup = heads.get if isinstance(heads, Mapping) else heads
    previous_seq = -1
    previous_positions: dict[int, int] = {}
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
        rolled_back = lanes_rolled_back(checkpoint, previous_positions)
        if rolled_back is not None:
            lane, lane_seq = rolled_back
            return ChainProblem(
                seq,
                line,
                "checkpoint_mismatch",
                f"checkpoint for seq {seq} signs lane {lane} at #{lane_seq}, behind an earlier checkpoint"
                f" (#{previous_positions[lane]}): the log was rolled back",
                lane,
            )
        previous_seq = seq
        previous_positions.update((head[0], head[1]) for head in checkpoint_lanes(checkpoint))
        problem = (
            _laned_checkpoint_problem(checkpoint, line, lookup, head_seq, lane_heads, gaps)
            if checkpoint.lanes
            else _legacy_checkpoint_problem(checkpoint, line, lookup, head_seq, lane_heads)
        )
        if problem is not None:
            return problem
    return None


def lanes_rolled_back(checkpoint: Checkpoint, positions: Mapping[int, int]) -> tuple[int, int] | None:
    """(lane, lane_seq) of a lane this checkpoint signs behind the position an earlier one signed, or None."""
    for lane, lane_seq, _, _ in checkpoint_lanes(checkpoint):
        if lane_seq < positions.get(lane, 0):
            return lane, lane_seq
    return None


def _legacy_checkpoint_problem(
    checkpoint: Checkpoint,
    line: int,
    lookup: Callable[[int], str | None],
    head_seq: int | None,
    lane_heads: Mapping[int, LaneHead] | None,
) -> ChainProblem | None:
    seq = checkpoint.seq
    actual = GENESIS_HASH if seq == 0 else lookup(seq)
    if actual is None or (head_seq is not None and seq > head_seq):
        first_missing = seq
        if head_seq is not None:
            first_missing = head_seq + 1
            if lane_heads is not None:
                first_missing = (lane_heads[1][2] if 1 in lane_heads else 0) + 1
        return ChainProblem(
            first_missing,
            line,
            "truncated_after_checkpoint",
            f"a checkpoint signs seq {seq} but the records end"
            + ("" if head_seq is None else f" at seq {first_missing - 1}")
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


def _laned_checkpoint_problem(
    checkpoint: Checkpoint,
    line: int,
    lookup: Callable[[int], str | None],
    head_seq: int | None,
    lane_heads: Mapping[int, LaneHead] | None,
    absent: tuple[tuple[int, int], ...] = (),
) -> ChainProblem | None:
    """The problem at the lowest seq among the lane heads this checkpoint signs, or None."""
    found: list[ChainProblem] = []
    for lane, lane_seq, seq, lane_hash in checkpoint.lanes:
        actual = lookup(seq)
        present = (lane_heads or {}).get(lane)
        reaches = present is not None and present[1] >= lane_seq
        beyond = head_seq is not None and seq > head_seq
        if (actual is None and not reaches) or beyond:
            found.append(
                truncated_lane_problem(
                    lane=lane,
                    lane_seq=lane_seq,
                    seq=seq,
                    line=line,
                    present=present,
                    known=head_seq is not None,
                    absent=absent,
                    end=head_seq,
                )
            )
        elif actual != lane_hash:
            found.append(
                ChainProblem(
                    seq,
                    line,
                    "checkpoint_mismatch",
                    f"record seq {seq} (lane {lane} #{lane_seq}) does not have the hash its checkpoint signs:"
                    f" lane {lane} up to seq {seq} was rewritten",
                    lane,
                )
            )
    return min(found, key=lambda problem: problem.seq or 0) if found else None


def truncated_lane_problem(
    *,
    lane: int,
    lane_seq: int,
    seq: int,
    line: int | None,
    present: LaneHead | None,
    known: bool,
    by: str = "",
    absent: Iterable[tuple[int, int]] = (),
    end: int | None = None,
) -> ChainProblem:
    """A signed lane head (lane, lane_seq, seq) that the records no longer reach; present is the last record
    of that lane that is there (known: whether the records were read to the end; then absent and end, the
    last seq read, tell the first seq after it that holds no record: the first one removed)."""
    if not known:
        return ChainProblem(
            seq,
            line,
            "truncated_after_checkpoint",
            f"a checkpoint{by} signs lane {lane} up to #{lane_seq} (seq {seq}) but the records end:"
            f" seq {seq} onwards removed",
            lane,
        )
    last_seq = present[2] if present is not None else 0
    ends = f"at #{present[1]} (seq {present[2]})" if present is not None else "before its first record"
    first_missing = first_absent(absent, after=last_seq, end=end)
    return ChainProblem(
        first_missing if first_missing is not None else last_seq + 1,
        line,
        "truncated_after_checkpoint",
        f"a checkpoint{by} signs lane {lane} up to #{lane_seq} (seq {seq}) but lane {lane} ends {ends}:"
        f" its records after seq {last_seq} were removed",
        lane,
    )
