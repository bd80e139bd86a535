"""Verifying records given as mappings (the database's, a test's) through the chain walk, and checkpoints
against the records they sign. Pure Python (stdlib + cryptography), no Django.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import cast

from lab.audit.canonical import (
    EXPORT_FIELDS,
    EXPORT_FIELDS_LANED,
    GENESIS_HASH,
    canonical_bytes,
    is_laned,
    mac_of_bytes,
    record_type_error,
)
from lab.audit.chain_walk import ChainEntry, Malformed, VerifyResult, walk_chain
from lab.audit.checkpoints import (
    Checkpoint,
    checkpoint_lanes,
    lanes_rolled_back,
)
from lab.audit.keys import PublicKeys
from lab.audit.lane_heads import LaneHead
from lab.audit.problems import ChainProblem, checkpoint_signature_problem, lane_heads_problem
from lab.audit.restore_marks import excused_before, is_restore_at, restores_in


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
    (VerifyResult), so a checkpoint beyond them reports the first missing seq. A restore marker whose
    signature holds lets the seq and the lanes go back, and excuses the heads before it that the records no
    longer hold in its lost range (lab/audit/restore_marks.py; the witness holds it to the rest). Returns the
    first problem or None."""
    gaps = tuple(absent)
    lookup = heads.get if isinstance(heads, Mapping) else heads
    ordered = list(checkpoints)
    restores, _ = restores_in(ordered, public_key=public_key)
    previous_seq = -1
    previous_positions: dict[int, int] = {}
    for line, checkpoint in enumerate(ordered, start=1):
        seq = checkpoint.seq
        problem = checkpoint_signature_problem(checkpoint, line=line, public_key=public_key)
        if problem is not None:
            return problem
        if is_restore_at(restores, line - 1):
            previous_seq, previous_positions = -1, {}
        excused = excused_before(restores, line - 1)
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
            lane_heads_problem(
                checkpoint,
                line=line,
                lookup=lookup,
                head_seq=head_seq,
                lane_heads=lane_heads,
                absent=gaps,
                rewritten=_rewritten_since_checkpoint,
                excused=excused,
            )
            if checkpoint.lanes
            else _legacy_checkpoint_problem(checkpoint, line, lookup, head_seq, lane_heads, excused)
        )
        if problem is not None:
            return problem
    return None


def _legacy_checkpoint_problem(
    checkpoint: Checkpoint,
    line: int,
    lookup: Callable[[int], str | None],
    head_seq: int | None,
    lane_heads: Mapping[int, LaneHead] | None,
    excused: Callable[[int], bool] | None = None,
) -> ChainProblem | None:
    seq = checkpoint.seq
    actual = GENESIS_HASH if seq == 0 else lookup(seq)
    if actual is None and excused is not None and excused(seq):
        return None
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


def _rewritten_since_checkpoint(lane: int, lane_seq: int, seq: int) -> str:
    return (
        f"record seq {seq} (lane {lane} #{lane_seq}) does not have the hash its checkpoint signs:"
        f" lane {lane} up to seq {seq} was rewritten"
    )
