"""The audit record's canonical form: its hashed fields, canonical bytes, chain hash, mac and export line.
Pure Python (stdlib), no Django: the Django model mirrors RECORD_FIELDS_LANED and calls in here.

Canonical form (also what an auditor re-implements in another language): a JSON object holding exactly the
fields of RECORD_FIELDS (a record written before lanes existed) or RECORD_FIELDS_LANED (every record since),
keys sorted, no whitespace, UTF-8, non-ASCII characters written as themselves, ``null`` kept, seq, lane and
lane_seq as integers, every other value a string. For these value types it is byte-identical to RFC 8785
(JSON Canonicalization Scheme). ``hash = sha256(canonical bytes).hexdigest()``.
``mac = HMAC-SHA256(record key, canonical bytes).hexdigest()``: the record key lives with the application,
never in the database, so someone who can only write the database cannot make a record (or rewrite one, or
recompute a chain) that carries a valid mac.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime

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
# The C encoder with fixed options; building it once avoids json.dumps' per-call option handling.
encode_canonical = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


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
    return encode_canonical({name: record[name] for name in record_fields(record)}).encode("utf-8")


def compute_hash(record: Mapping[str, object]) -> str:
    """The record's chain hash: sha256 hex over its canonical bytes, which include prev_hash."""
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def compute_mac(record: Mapping[str, object], *, record_key: bytes) -> str:
    """The record's authenticator: HMAC-SHA256 hex over the same canonical bytes the hash covers."""
    return mac_of_bytes(canonical_bytes(record), record_key=record_key)


def mac_of_bytes(canonical: bytes, *, record_key: bytes) -> str:
    return hmac.digest(record_key, canonical, "sha256").hex()


def export_line(record: Mapping[str, object]) -> str:
    """One record as an export line (no newline): canonical JSON of its hashed fields plus hash and mac."""
    error = record_type_error(record)
    if error is not None:
        raise ValueError(error)
    for name in ("hash", "mac"):
        if type(record.get(name)) is not str:
            raise ValueError(f"{name} must be a string")
    names = EXPORT_FIELDS_LANED if is_laned(record) else EXPORT_FIELDS
    return encode_canonical({name: record[name] for name in names})


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
