"""The chain walk: records in seq order, every lane checked as its own hash chain, stopping at the first
problem; shared by verify_records and the export reader. Pure Python (stdlib), no Django.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from lab.audit.canonical import GENESIS_HASH
from lab.audit.lane_heads import LaneHead, lanes_checkpoint_head
from lab.audit.problems import ChainProblem, first_absent


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
