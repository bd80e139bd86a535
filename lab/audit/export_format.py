"""The audit export format: writing an export, reading its checkpoints file and parsing its records file
into chain entries. What is verified of them: lab/audit/export_verify.py; the offline verifier's command line:
`python -m lab.audit.verify` (lab/audit/verify.py). No Django.

Export format
-------------
An export is two UTF-8 files side by side:

``EXPORT`` (e.g. ``audit-2026-05-09.jsonl``)
    The records, one per line, each line the canonical JSON object (see lab/audit/canonical.py: keys sorted,
    no whitespace, non-ASCII as UTF-8, ``null`` kept) of exactly the fields RECORD_FIELDS_LANED (every record
    written since lanes: with ``lane`` and ``lane_seq``) or RECORD_FIELDS (a record from before lanes) plus
    ``hash`` and ``mac`` (64 hex digits each), ending in ``\\n``. Lines are in increasing seq order; an
    export always holds the whole log: every lane from its first record (lane_seq 1, prev_hash 64 zeros) with
    no gap in lane_seq, and the records from before lanes as seqs 1, 2, 3... of lane 1. seq itself may skip
    numbers (a writer that rolled back). Anything else on a line (extra or missing keys, other whitespace,
    ``\\r``, other escapes, wrong value types) is reported as malformed.

``EXPORT`` with its last suffix replaced by ``.checkpoints.jsonl`` (``audit-2026-05-09.checkpoints.jsonl``)
    The checkpoints, one canonical JSON object per line with keys head_hash, key_id, lanes, seq, signature,
    signed_at (lanes: [lane, lane_seq, seq, hash] of every lane's head; a checkpoint from before lanes has no
    lanes and signs seq/head_hash of lane 1), in the order they were signed (seq never decreases, nor does
    any lane's lane_seq). The exporter signs a checkpoint of the heads at export time as the last line, so
    every record is covered by a signature; it holds every checkpoint the database has, also those past a
    head the exporter refused to sign.

The witness log (``--witness``) has the same format: the lab's signer appends every checkpoint to it outside
the database (lab/audit/witness.py) and may mail each line to the auditors, who keep their own copy.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from lab.audit.backdating import BackdatingCheck
from lab.audit.canonical import (
    EXPORT_FIELDS,
    EXPORT_FIELDS_LANED,
    NULLABLE_FIELDS,
    export_line,
    is_laned,
    record_type_error,
)
from lab.audit.chain_walk import ChainEntry, Malformed
from lab.audit.checkpoints import Checkpoint
from lab.audit.problems import ChainProblem
from lab.audit.witness import read_checkpoint_file

_HASH_MEMBER = b'"hash":"'
_MAC_MEMBER = b'"mac":"'
# '"hash":"' + 64 hex digits + '",' and '"mac":"' + 64 hex digits + '",': the bytes cut out of a canonical
# export line to get the hashed bytes (mac sorts after hash and before occurred_at, so both end in a comma).
_HASH_MEMBER_LENGTH = len(_HASH_MEMBER) + 64 + 2
_MAC_MEMBER_LENGTH = len(_MAC_MEMBER) + 64 + 2


def checkpoints_path(export_path: Path) -> Path:
    """Where the checkpoints of a records file live: its last suffix replaced by .checkpoints.jsonl."""
    return export_path.with_suffix(".checkpoints.jsonl")


def write_export(
    *, path: Path, records: Iterable[Mapping[str, object]], checkpoints: Iterable[Checkpoint]
) -> Path:
    """Write records (in seq order) and checkpoints in the export format; returns the checkpoints path."""
    target = checkpoints_path(path)
    with path.open("w", encoding="utf-8", newline="\n") as records_file:
        records_file.writelines(export_line(record) + "\n" for record in records)
    with target.open("w", encoding="utf-8", newline="\n") as checkpoints_file:
        checkpoints_file.writelines(checkpoint.to_line() + "\n" for checkpoint in checkpoints)
    return target


def read_checkpoints(path: Path) -> tuple[list[Checkpoint], ChainProblem | None]:
    """All checkpoints of a checkpoints file, or those before the first malformed line and its problem."""
    return read_checkpoint_file(path)


def _allowed_export_shapes() -> frozenset[tuple[type, ...]]:
    """Value types of an export line's fields in sorted-key order, for every legal null/str mix, in both
    formats (records from before lanes, and laned records)."""
    shapes: set[tuple[type, ...]] = set()
    for fields in (EXPORT_FIELDS, EXPORT_FIELDS_LANED):
        options = [
            (int,)
            if name in ("seq", "lane", "lane_seq")
            else (str, type(None))
            if name in NULLABLE_FIELDS
            else (str,)
            for name in sorted(fields)
        ]
        shapes.update(itertools.product(*options))
    return frozenset(shapes)


def export_entries(
    lines: Iterable[bytes], *, record_key: bytes | None = None, backdating: BackdatingCheck | None = None
) -> Iterator[ChainEntry | Malformed]:
    """Parse export lines into chain entries. This is the hot loop of a million-record verification: one
    json parse, one canonical re-encode (which also proves the line canonical), one sha256 per line and,
    with record_key, one HMAC; with backdating (a witness was given), every well-formed record is shown to
    it too."""
    loads = json.loads
    encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
    sha256 = hashlib.sha256
    digest = hmac.digest
    compare = hmac.compare_digest
    export_keys = frozenset(EXPORT_FIELDS)
    laned_keys = frozenset(EXPORT_FIELDS_LANED)
    shapes = _allowed_export_shapes()
    for line_number, line in enumerate(lines, start=1):
        raw = line[:-1] if line[-1:] == b"\n" else line
        try:
            text = raw.decode("utf-8")
            record = loads(text)
            is_canonical = type(record) is dict and encode(record) == text
        except (ValueError, RecursionError) as error:  # RecursionError: brackets nested too deeply
            yield Malformed(line_number, f"not a JSON line: {error}")
            continue
        keys = record.keys() if is_canonical else None
        laned = keys == laned_keys
        if not (
            (laned or keys == export_keys)
            and tuple(map(type, record.values())) in shapes
            and len(record["mac"]) == 64
            and (not laned or (record["lane"] >= 1 and record["lane_seq"] >= 1))
        ):
            yield Malformed(line_number, _describe_bad_line(record))
            continue
        # The line is canonical, so the hashed bytes are the line without its hash and mac members. A hash
        # value that is not 64 plain characters makes this cut wrong, but then it cannot equal the computed
        # digest either, so it is still reported as a mismatch.
        cut = raw.find(_HASH_MEMBER)
        mac_at = raw.find(_MAC_MEMBER, cut)
        hashed = raw[:cut] + raw[cut + _HASH_MEMBER_LENGTH : mac_at] + raw[mac_at + _MAC_MEMBER_LENGTH :]
        is_authentic = record_key is None or compare(
            digest(record_key, hashed, "sha256").hex(), record["mac"]
        )
        if backdating is not None:
            backdating.see(
                seq=record["seq"],
                lane=record["lane"] if laned else 1,
                lane_seq=record["lane_seq"] if laned else record["seq"],
                occurred_at=record["occurred_at"],
                line=line_number,
            )
        if laned:
            yield (
                line_number,
                record["seq"],
                record["prev_hash"],
                record["hash"],
                sha256(hashed).hexdigest(),
                is_authentic,
                record["lane"],
                record["lane_seq"],
            )
        else:
            yield (
                line_number,
                record["seq"],
                record["prev_hash"],
                record["hash"],
                sha256(hashed).hexdigest(),
                is_authentic,
            )


def _describe_bad_line(record: object) -> str:
    if type(record) is not dict:
        return f"a JSON {type(record).__name__}, not an object"
    fields = EXPORT_FIELDS_LANED if "lane" in record or "lane_seq" in record else EXPORT_FIELDS
    missing = sorted(set(fields) - set(record))
    unexpected = sorted(set(record) - set(fields))
    if missing or unexpected:
        return f"fields differ from the record fields: missing {missing}, unexpected {unexpected}"
    error = record_type_error(record)
    for name in ("hash", "mac"):
        if error is None and type(record[name]) is not str:
            error = f"{name} must be a string"
    if error is None and len(record["mac"]) != 64:
        error = "mac must be 64 hex digits"
    if error is None and fields is EXPORT_FIELDS_LANED and not is_laned(record):
        error = "lane_seq must be an integer, not NoneType"
    return error if error is not None else "not in canonical form (key order, whitespace or escapes)"
