"""Ed25519-signed checkpoints of the audit log: their line format, the bytes a signature covers, signing,
and checking a signature with the pinned key or key ring. Pure Python (stdlib + cryptography), no Django.

A checkpoint signs the head of every lane (lane, lane_seq, seq, hash): "the record at this position of this
lane has this hash", which pins every record of every lane up to its head through the chains; its seq and
head_hash are those of the newest head. A checkpoint from before lanes signs (seq, head_hash) only: lane 1 up
to seq. Checkpoints are written on a schedule even when nothing happened (so a quiet period cannot hide a
deletion) and on every export. The verifier takes the public key from the auditor, never from the export; a
checkpoint names its key by key_id (the fingerprint's first 16 hex digits), so after a rotation each one is
checked with its own key (KeyRing). A settled checkpoint (CHECKPOINT_FORMAT_SETTLED, the same fields signed
under another tag) also vouches for what no later record may be: numbered at or below it, or timed before it.
A restore marker (RESTORE_FORMAT, written by `manage.py audit_restore` after a database restore) is a
settled checkpoint of the heads the restored database holds that also signs a RestoreMark: the witnessed
checkpoint the chain continues from, the witness's last checkpoint it supersedes and the seqs lost
(lab/audit/restore_marks.py says what the verifiers excuse across one, and what not).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lab.audit.canonical import encode_canonical
from lab.audit.keys import PublicKeys, checkpoint_key
from lab.audit.lane_heads import LANES, LaneHead, lanes_checkpoint_head, lanes_from_json

CHECKPOINT_FORMAT = "printlab.audit.checkpoint.v1"
CHECKPOINT_FORMAT_LANED = "printlab.audit.checkpoint.v2"
# A settled checkpoint: the same fields, signed under this tag (so the line, and every copy of it in the
# witness, an export or a receipt's anchor, looks as before). It says two more things, which a checkpoint
# signed under v1/v2 does not: every seq up to its seq is written and covered by it or never will be (the
# signer waited for every append in flight first, and signs no record above the sequence's value then), and
# every record it does not cover was timed at or after its signed_at (read while every lane was held).
CHECKPOINT_FORMAT_SETTLED = "printlab.audit.checkpoint.v3"
# A restore marker: a settled checkpoint (the restore waits for nothing in flight: every process is stopped,
# and the sequence is moved past every seq the witness named first) that also signs its RestoreMark. Only
# this tag's signature covers the mark, so a marker cannot be made of a checkpoint, nor the reverse.
RESTORE_FORMAT = "printlab.audit.restore.v1"
# The tags that vouch for what no later record may be (backdating.BackdatingCheck).
SETTLED_FORMATS = frozenset({CHECKPOINT_FORMAT_SETTLED, RESTORE_FORMAT})
CHECKPOINT_FIELDS: tuple[str, ...] = ("seq", "head_hash", "signed_at", "key_id", "signature")
CHECKPOINT_FIELDS_LANED: tuple[str, ...] = (*CHECKPOINT_FIELDS, "lanes")
CHECKPOINT_FIELDS_RESTORE: tuple[str, ...] = (*CHECKPOINT_FIELDS_LANED, "restore")
_BY_MAX_LENGTH = 200

_HEX64 = re.compile(r"[0-9a-f]{64}")
_UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


@dataclass(frozen=True)
class RestoreMark:
    """What a restore marker signs besides the lane heads the restored database holds: the witnessed
    checkpoint the chain continues from (the restore point: seq, signed_at, head_hash), the witness's last
    checkpoint before the marker, which it supersedes, the seqs lost (lost_from = the restore point's seq + 1
    up to lost_to, at least every seq the witness named before the marker: no later record takes one) and who
    ran the restore ("staff:<public id>" or "os:<user>")."""

    from_seq: int
    from_signed_at: str
    from_hash: str
    superseded_seq: int
    superseded_signed_at: str
    superseded_hash: str
    lost_from: int
    lost_to: int
    by: str

    def to_json(self) -> dict[str, object]:
        return {
            "by": self.by,
            "continues": {
                "head_hash": self.from_hash,
                "seq": self.from_seq,
                "signed_at": self.from_signed_at,
            },
            "lost": [self.lost_from, self.lost_to],
            "supersedes": {
                "head_hash": self.superseded_hash,
                "seq": self.superseded_seq,
                "signed_at": self.superseded_signed_at,
            },
        }

    @classmethod
    def from_json(cls, value: object) -> RestoreMark:
        """The mark of a checkpoint line's "restore" object; ValueError when it is not one."""
        if type(value) is not dict or set(value) != {"by", "continues", "lost", "supersedes"}:
            raise ValueError("a restore mark is an object with exactly: by, continues, lost, supersedes")
        continues = _restore_point(value["continues"], "continues")
        supersedes = _restore_point(value["supersedes"], "supersedes")
        lost, by = value["lost"], value["by"]
        if type(lost) is not list or len(lost) != 2 or any(type(seq) is not int for seq in lost):
            raise ValueError("a restore mark's lost is [first seq, last seq]")
        mark = cls(*continues, *supersedes, lost[0], lost[1], by)
        mark.check()
        return mark

    def check(self) -> None:
        """ValueError when the fields are not a restore mark's."""
        if type(self.by) is not str or not 0 < len(self.by) <= _BY_MAX_LENGTH or not self.by.isprintable():
            raise ValueError(f"a restore mark's by is 1..{_BY_MAX_LENGTH} printable characters")
        for seq, signed_at, head_hash in (
            (self.from_seq, self.from_signed_at, self.from_hash),
            (self.superseded_seq, self.superseded_signed_at, self.superseded_hash),
        ):
            if seq < 1 or not _UTC_TIMESTAMP.fullmatch(signed_at) or not _HEX64.fullmatch(head_hash):
                raise ValueError("a restore mark names checkpoints by seq >= 1, signed_at and head_hash")
        if self.lost_from != self.from_seq + 1 or self.lost_to < self.lost_from:
            raise ValueError("a restore mark's lost seqs run from the seq after the one it continues from")


def _restore_point(value: object, name: str) -> tuple[int, str, str]:
    if (
        type(value) is not dict
        or set(value) != {"head_hash", "seq", "signed_at"}
        or type(value["seq"]) is not int
        or type(value["signed_at"]) is not str
        or type(value["head_hash"]) is not str
    ):
        raise ValueError(f"a restore mark's {name} is an object with exactly: head_hash, seq, signed_at")
    return value["seq"], value["signed_at"], value["head_hash"]


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
    restore: RestoreMark | None = None  # a restore marker's mark (RESTORE_FORMAT)

    def to_line(self) -> str:
        """The checkpoint as one canonical JSON line (no newline) of the checkpoints file."""
        body: dict[str, object] = {name: getattr(self, name) for name in CHECKPOINT_FIELDS}
        if self.lanes:
            body["lanes"] = [list(head) for head in self.lanes]
        if self.restore is not None:
            body["restore"] = self.restore.to_json()
        return encode_canonical(body)

    @classmethod
    def from_line(cls, line: str | bytes) -> Checkpoint:
        """Parse one checkpoints-file line; raise ValueError when it is not a well-formed checkpoint."""
        data = json.loads(line)
        shapes = (set(CHECKPOINT_FIELDS), set(CHECKPOINT_FIELDS_LANED), set(CHECKPOINT_FIELDS_RESTORE))
        if type(data) is not dict or set(data) not in shapes:
            raise ValueError("a checkpoint is an object with exactly: " + ", ".join(CHECKPOINT_FIELDS))
        for name in ("head_hash", "signed_at", "key_id", "signature"):
            if type(data[name]) is not str:
                raise ValueError(f"checkpoint {name} must be a string")
        if type(data["seq"]) is not int:
            raise ValueError("checkpoint seq must be an integer")
        lanes = lanes_from_json(data.pop("lanes")) if "lanes" in data else ()
        restore = RestoreMark.from_json(data.pop("restore")) if "restore" in data else None
        _check_checkpoint_fields(
            seq=data["seq"],
            head_hash=data["head_hash"],
            signed_at=data["signed_at"],
            key_id=data["key_id"],
            lanes=lanes,
        )
        return cls(**data, lanes=lanes, restore=restore)


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
    restore: RestoreMark | None = None,
) -> bytes:
    """The exact bytes a checkpoint signature covers; the format tag keeps them from meaning anything else
    (and says whether the checkpoint is settled: CHECKPOINT_FORMAT_SETTLED, or a restore marker:
    RESTORE_FORMAT, whose mark is signed too)."""
    heads = [list(head) for head in lanes]
    tag = RESTORE_FORMAT if restore is not None else _format_tag(is_settled=is_settled, has_lanes=bool(heads))
    body: dict[str, object] = {
        "format": tag,
        "head_hash": head_hash,
        "key_id": key_id,
        "seq": seq,
        "signed_at": signed_at,
    }
    if heads:
        body["lanes"] = heads
    if restore is not None:
        body["restore"] = restore.to_json()
    return encode_canonical(body).encode("utf-8")


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
    restore: RestoreMark | None = None,
) -> Checkpoint:
    """Sign (seq, head_hash) — and the lane heads, when given — at signed_at; key_id is a label for the
    key, covered by the signature. is_settled: only the lab's signer, which settled the log first, says so
    (CHECKPOINT_FORMAT_SETTLED). restore: a restore marker's mark (RESTORE_FORMAT; it needs lane heads)."""
    heads = tuple(lanes)
    _check_checkpoint_fields(
        seq=seq, head_hash=head_hash, signed_at=signed_at, key_id=key_id, lanes=heads, is_signing=True
    )
    if restore is not None:
        restore.check()
        if not heads:
            raise ValueError("a restore marker signs the lane heads the restored database holds")
    message = checkpoint_message(
        seq=seq,
        head_hash=head_hash,
        signed_at=signed_at,
        key_id=key_id,
        lanes=heads,
        is_settled=is_settled,
        restore=restore,
    )
    signature = base64.b64encode(private_key.sign(message)).decode("ascii")
    return Checkpoint(
        seq=seq,
        head_hash=head_hash,
        signed_at=signed_at,
        key_id=key_id,
        signature=signature,
        lanes=heads,
        restore=restore,
    )


def checkpoint_signature_is_valid(*, checkpoint: Checkpoint, public_key: PublicKeys) -> bool:
    """Whether the checkpoint was signed by the private half of this (pinned) public key, or of the key of
    the ring its key_id names, settled or not."""
    return checkpoint_signed_as(checkpoint=checkpoint, public_key=public_key) is not None


def checkpoint_is_settled(*, checkpoint: Checkpoint, public_key: PublicKeys) -> bool:
    """Whether the checkpoint is validly signed as settled (CHECKPOINT_FORMAT_SETTLED, or as a restore
    marker)."""
    return checkpoint_signed_as(checkpoint=checkpoint, public_key=public_key) in SETTLED_FORMATS


def checkpoint_signed_as(*, checkpoint: Checkpoint, public_key: PublicKeys) -> str | None:
    """The format tag the checkpoint's signature is valid under (settled first, as the signer writes now;
    then the tag of its shape, as it wrote before; a restore marker's under RESTORE_FORMAT only), or None:
    not signed by that key."""
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except binascii.Error:
        return None
    key = checkpoint_key(public_key, checkpoint.key_id)
    raw_key = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if checkpoint.restore is not None:
        message = checkpoint_message(
            seq=checkpoint.seq,
            head_hash=checkpoint.head_hash,
            signed_at=checkpoint.signed_at,
            key_id=checkpoint.key_id,
            lanes=checkpoint.lanes,
            restore=checkpoint.restore,
        )
        return RESTORE_FORMAT if _signature_verifies(raw_key, signature, message) else None
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


def lanes_rolled_back(checkpoint: Checkpoint, positions: Mapping[int, int]) -> tuple[int, int] | None:
    """(lane, lane_seq) of a lane this checkpoint signs behind the position an earlier one signed, or None."""
    for lane, lane_seq, _, _ in checkpoint_lanes(checkpoint):
        if lane_seq < positions.get(lane, 0):
            return lane, lane_seq
    return None
