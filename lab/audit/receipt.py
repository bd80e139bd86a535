"""Signed privacy receipts: their canonical bytes, the lab's signature over them, and the offline check a
customer runs with the lab's published public key:
`python -m lab.audit.verify --receipt FILE --public-key KEY [--witness CHECKPOINTS.jsonl]`. No Django.

A receipt file is one JSON object ``{"document": {...}, "signature": "<base64>", "key_id": "<16 hex>"}``.
``signature`` is Ed25519 (the audit signing key, the one that signs checkpoints) over the document's canonical
bytes: the same canonical JSON as audit records (keys sorted, no whitespace, UTF-8, ``null`` kept; strings,
integers, lists and objects only, so byte-identical to RFC 8785). The document's ``format`` tag keeps a
receipt signature from meaning anything else (a checkpoint's signed bytes carry their own format tag).

The document (format ``printlab.receipt.v1``):
    receipt_id, issued_at, key_id, issuer, order_ref (null: photos that were in no order), reason (shipped,
    purged, erased); photos [{asset_id, sha256 (of the original as stored), data_key_destroyed_at (null while
    the photo's key lives)}]; employee_views [{seq, occurred_at, action, purpose, role, asset_id, order_ref}]
    (the audit records of every employee shown one of these photos; roles, never identities); anchor:
    record {seq, lane, lane_seq, hash} is the audit record "receipt.issued" written with the receipt, whose
    content_sha256 is body_sha256, the SHA-256 of the document's canonical bytes without "anchor"; checkpoint
    is the latest signed checkpoint when the receipt was issued (a checkpoints-file object, or null), which
    precedes the record: the lab's next checkpoint covers the record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lab.audit.checkpoints import Checkpoint, checkpoint_lanes, checkpoint_signature_is_valid
from lab.audit.keys import public_key_fingerprint
from lab.audit.restore_marks import Restore, restores_in

RECEIPT_FORMAT = "printlab.receipt.v1"
REASONS = ("shipped", "purged", "erased")
# The fingerprint's first 16 hex digits: how checkpoints and receipts name the key that signed them.
KEY_ID_LENGTH = 16

_encode_canonical = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
_NULLABLE_TEXT: tuple[type, ...] = (str, type(None))
# Each object's members and their allowed types; the order is the order a reader meets them.
_DOCUMENT: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "receipt_id": (str,),
    "issued_at": (str,),
    "key_id": (str,),
    "issuer": (str,),
    "order_ref": _NULLABLE_TEXT,
    "reason": (str,),
    "photos": (list,),
    "employee_views": (list,),
    "anchor": (dict,),
}
_PHOTO: dict[str, tuple[type, ...]] = {
    "asset_id": (str,),
    "sha256": (str,),
    "data_key_destroyed_at": _NULLABLE_TEXT,
}
_VIEW: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "occurred_at": (str,),
    "action": (str,),
    "purpose": (str,),
    "role": (str,),
    "asset_id": _NULLABLE_TEXT,
    "order_ref": _NULLABLE_TEXT,
}
_ANCHOR: dict[str, tuple[type, ...]] = {
    "record": (dict,),
    "body_sha256": (str,),
    "checkpoint": (dict, type(None)),
}
_ANCHOR_RECORD: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "lane": (int,),
    "lane_seq": (int,),
    "hash": (str,),
}
_RECEIPT: dict[str, tuple[type, ...]] = {"document": (dict,), "signature": (str,), "key_id": (str,)}


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes a receipt's signature covers (and, without "anchor", the bytes its audit record hashes)."""
    return _encode_canonical(document).encode("utf-8")


def body_sha256(document: Mapping[str, Any]) -> str:
    """SHA-256 hex of the document without its anchor: the content_sha256 of its "receipt.issued" record."""
    return hashlib.sha256(canonical_bytes({k: v for k, v in document.items() if k != "anchor"})).hexdigest()


def key_id_of(public_key: Ed25519PublicKey) -> str:
    return public_key_fingerprint(public_key)[:KEY_ID_LENGTH]


def receipt_sign(*, private_key: Ed25519PrivateKey, document: Mapping[str, Any]) -> str:
    """base64 of the Ed25519 signature over the document's canonical bytes."""
    return base64.b64encode(private_key.sign(canonical_bytes(document))).decode("ascii")


@dataclass(frozen=True)
class ReceiptProblem:
    # malformed, wrong_format, bad_signature, anchor_mismatch, bad_checkpoint_signature, not_witnessed
    kind: str
    message: str


@dataclass(frozen=True)
class ReceiptVerification:
    document: Mapping[str, Any] | None
    problem: ReceiptProblem | None
    # With a witness log: the first witnessed checkpoint that covers the receipt's record, if any yet.
    covered_by: Checkpoint | None = None
    witnessed: bool = False
    # With a witness log: the restore marker whose restore lost the receipt's record (a database restored
    # from a backup taken before it was written; lab/audit/restore_marks.py). The receipt is genuine (its
    # signature and anchor hold, covered_by says whether the record was witnessed first), but the lab's log no
    # longer holds its record: neither intact nor tampered ("LOST", exit status 3).
    lost_in: Restore | None = None

    @property
    def is_intact(self) -> bool:
        return self.problem is None and self.lost_in is None


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicated key would let a reader see one value while the verifier checks another.
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) {', '.join(duplicates)}")
    return dict(pairs)


def receipt_parse(text: bytes | str) -> Any:
    """The receipt file's JSON (duplicate keys refused); raises ValueError when it is not JSON."""
    return json.loads(text, object_pairs_hook=_refuse_duplicate_keys)


def _shape_error(value: object, members: Mapping[str, tuple[type, ...]], where: str) -> str | None:
    if type(value) is not dict:
        return f"{where} must be an object"
    missing = [name for name in members if name not in value]
    unexpected = sorted(set(value) - set(members))
    if missing or unexpected:
        return f"{where} has missing {missing}, unexpected {unexpected} members"
    for name, allowed in members.items():
        # type() and not isinstance(): a bool is an int, and would not be signed as one.
        if type(value[name]) not in allowed:
            return f"{where}.{name} must be {' or '.join(_type_name(kind) for kind in allowed)}"
    return None


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", list: "a list", dict: "an object"}.get(kind, "null")


def receipt_shape_error(receipt: object) -> str | None:
    """What makes the receipt file's object unfit to verify, or None."""
    error = _shape_error(receipt, _RECEIPT, "the receipt")
    if error is not None:
        return error
    assert isinstance(receipt, dict)
    document = receipt["document"]
    error = _shape_error(document, _DOCUMENT, "document")
    if error is not None:
        return error
    for position, photo in enumerate(document["photos"]):
        error = error or _shape_error(photo, _PHOTO, f"document.photos[{position}]")
    for position, view in enumerate(document["employee_views"]):
        error = error or _shape_error(view, _VIEW, f"document.employee_views[{position}]")
    error = error or _shape_error(document["anchor"], _ANCHOR, "document.anchor")
    return error or _shape_error(document["anchor"]["record"], _ANCHOR_RECORD, "document.anchor.record")


def _signature_is_valid(*, public_key: Ed25519PublicKey, document: Mapping[str, Any], signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, canonical_bytes(document))
    except (binascii.Error, InvalidSignature):
        return False
    return True


def verify_receipt(
    *, receipt: object, public_key: Ed25519PublicKey, witnessed: Sequence[Checkpoint] | None = None
) -> ReceiptVerification:
    """Check a parsed receipt against the lab's pinned public key: its shape, the signature over the
    document's canonical bytes, the anchor's consistency and its checkpoint's signature; with the witness
    log's checkpoints also that the anchoring checkpoint was witnessed, and which witnessed checkpoint (if
    any yet) covers the receipt's own audit record."""
    error = receipt_shape_error(receipt)
    if error is not None:
        return ReceiptVerification(None, ReceiptProblem("malformed", error))
    assert isinstance(receipt, dict)
    document: dict[str, Any] = receipt["document"]
    if document["format"] != RECEIPT_FORMAT:
        return ReceiptVerification(
            document, ReceiptProblem("wrong_format", f"format {document['format']!r} is not {RECEIPT_FORMAT}")
        )
    given_key = key_id_of(public_key)
    if not _signature_is_valid(public_key=public_key, document=document, signature=receipt["signature"]):
        other_key = (
            f"; the receipt names key {document['key_id']}, the public key given is {given_key}"
            if document["key_id"] != given_key
            else ""
        )
        return ReceiptVerification(
            document,
            ReceiptProblem(
                "bad_signature",
                "the signature does not verify over the document with the public key given: the document"
                f" was changed after it was signed, or the signature belongs to another document{other_key}",
            ),
        )
    problem = _anchor_problem(document, receipt["key_id"], given_key, public_key)
    if problem is not None or witnessed is None:
        return ReceiptVerification(document, problem)
    return _check_witness(document, witnessed, public_key)


def _anchor_problem(
    document: Mapping[str, Any], outer_key_id: str, given_key: str, public_key: Ed25519PublicKey
) -> ReceiptProblem | None:
    """Problems a validly signed document can still have: the lab signed something inconsistent."""
    if document["key_id"] != given_key or outer_key_id != given_key:
        return ReceiptProblem("malformed", f"the receipt's key_id does not name the signing key {given_key}")
    anchor = document["anchor"]
    if anchor["body_sha256"] != body_sha256(document):
        return ReceiptProblem(
            "anchor_mismatch", "anchor.body_sha256 is not the SHA-256 of the document without its anchor"
        )
    if anchor["checkpoint"] is None:
        return None
    try:
        checkpoint = Checkpoint.from_line(_encode_canonical(anchor["checkpoint"]))
    except ValueError as error:
        return ReceiptProblem("malformed", f"anchor.checkpoint: {error}")
    if not checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=public_key):
        return ReceiptProblem(
            "bad_checkpoint_signature",
            f"the anchoring checkpoint (seq {checkpoint.seq}) is not signed by the public key given",
        )
    record = anchor["record"]
    signed = {lane: lane_seq for lane, lane_seq, _, _ in checkpoint_lanes(checkpoint)}
    if checkpoint.seq >= record["seq"] or signed.get(record["lane"], 0) >= record["lane_seq"]:
        return ReceiptProblem(
            "anchor_mismatch",
            f"the anchoring checkpoint (seq {checkpoint.seq}) does not precede the receipt's record"
            f" (seq {record['seq']}, lane {record['lane']} #{record['lane_seq']})",
        )
    return None


def _check_witness(
    document: Mapping[str, Any], witnessed: Sequence[Checkpoint], public_key: Ed25519PublicKey
) -> ReceiptVerification:
    anchor = document["anchor"]
    anchored_at = -1  # the anchoring checkpoint's index in the witness (-1: none)
    if anchor["checkpoint"] is not None:
        line = _encode_canonical(anchor["checkpoint"])
        lines = [checkpoint.to_line() for checkpoint in witnessed]
        anchored_at = lines.index(line) if line in lines else -1
        if anchored_at < 0:
            return ReceiptVerification(
                document,
                ReceiptProblem(
                    "not_witnessed",
                    f"the anchoring checkpoint (seq {anchor['checkpoint']['seq']}, signed at"
                    f" {anchor['checkpoint']['signed_at']}) is not in the witness log",
                ),
            )
    record = anchor["record"]
    # After a restore marker a lane's positions start again from the restore point
    # (lab/audit/restore_marks.py): a record after it (every seq after it is above its lost range) is covered
    # from it on, not by a superseded checkpoint that signed the same position for a record the restore lost.
    # A record of its lost range issued before it (its anchor comes before the marker) was written before
    # it: covered, if at all, by the checkpoints before it, up to the marker that lost it (one that names its
    # seq lost and does not keep it); the checkpoints after that one sign the positions again for new
    # records. No checkpoint before the anchor covers the record.
    restores, _ = restores_in(witnessed, public_key=public_key, is_witness=True)
    after = [restore.index for restore in restores if restore.mark.lost_to < record["seq"]]
    since = max(0, anchored_at, *after)
    lost_in = next(
        (
            restore
            for restore in restores
            if restore.index >= since
            and restore.index > anchored_at
            and restore.excuses(record["seq"])
            and not restore.keeps(seq=record["seq"], lane=record["lane"])
        ),
        None,
    )
    until = lost_in.index if lost_in is not None else len(witnessed)
    for checkpoint in witnessed[since:until]:
        if not checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=public_key):
            continue
        for lane, lane_seq, _, head_hash in checkpoint_lanes(checkpoint):
            if lane != record["lane"] or lane_seq < record["lane_seq"]:
                continue
            if lane_seq == record["lane_seq"] and head_hash != record["hash"]:
                return ReceiptVerification(
                    document,
                    ReceiptProblem(
                        "anchor_mismatch",
                        f"the witnessed checkpoint signed at {checkpoint.signed_at} signs lane {lane}"
                        f" #{lane_seq} with another hash than the receipt's record: the log holds another"
                        " record there",
                    ),
                    witnessed=True,
                )
            return ReceiptVerification(document, None, covered_by=checkpoint, witnessed=True, lost_in=lost_in)
    return ReceiptVerification(document, None, witnessed=True, lost_in=lost_in)


def receipt_summary(outcome: ReceiptVerification, *, fingerprint: str, path: str) -> str:
    """The verifier's one line: OK with what the receipt says and how it is anchored, or TAMPERED and why."""
    problem = outcome.problem
    if problem is not None:
        return f"TAMPERED: {problem.kind} in {path}: {problem.message}"
    document = outcome.document
    assert document is not None
    if outcome.lost_in is not None:
        return _lost_summary(outcome, outcome.lost_in, document, fingerprint=fingerprint)
    record = document["anchor"]["record"]
    checkpoint = document["anchor"]["checkpoint"]
    order = f"order {document['order_ref']}" if document["order_ref"] else "photos in no order"
    after = (
        f" after checkpoint seq {checkpoint['seq']} signed at {checkpoint['signed_at']}"
        if checkpoint is not None
        else " (no checkpoint before it)"
    )
    witness = ""
    if outcome.witnessed:
        covered = outcome.covered_by
        witness = (
            f"; covered by the witnessed checkpoint seq {covered.seq} signed at {covered.signed_at}"
            if covered is not None
            else "; not yet covered by a witnessed checkpoint (the lab's next one covers it)"
        )
    views = len(document["employee_views"])
    photos = len(document["photos"])
    return (
        f"OK: receipt {document['receipt_id']} ({document['reason']}, {order},"
        f" issued {document['issued_at']}):"
        f" {photos} photo{'s' if photos != 1 else ''}, {views} employee view{'s' if views != 1 else ''};"
        f" signed by key {fingerprint}; audit record seq {record['seq']} (lane {record['lane']}"
        f" #{record['lane_seq']}){after}{witness}"
    )


def _lost_summary(
    outcome: ReceiptVerification, lost_in: Restore, document: Mapping[str, Any], *, fingerprint: str
) -> str:
    record = document["anchor"]["record"]
    covered = outcome.covered_by
    witnessed = (
        f"witnessed by the checkpoint seq {covered.seq} signed at {covered.signed_at}, then lost"
        if covered is not None
        else "lost before any witnessed checkpoint covered it"
    )
    return (
        f"LOST: receipt {document['receipt_id']} ({document['reason']}, issued {document['issued_at']}) is"
        f" signed by key {fingerprint}, but its audit record seq {record['seq']} (lane {record['lane']}"
        f" #{record['lane_seq']}) was {witnessed} in the restore of {lost_in.marker.signed_at}: the lab's"
        f" database was restored from a backup taken before it was written; {lost_in.note()}"
    )
