"""What a verifier finds wrong with the audit log: the problem kinds, ChainProblem, and a checkpoint's lane
heads the records no longer match (shared by the checkpoint check and the witness check). No Django.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lab.audit.checkpoints import Checkpoint, checkpoint_signature_is_valid
from lab.audit.keys import PublicKeys
from lab.audit.lane_heads import LaneHead

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
    "bad_restore",
)

# Problems of the signer's liveness, not of the log's integrity: a checkpoint signed late (a lost beat send,
# a signer stopped for a while) or none lately. One is reported only when nothing is wrong with the records,
# the checkpoints or the witness's lines themselves: by the lowest seq alone, the gap one lost send leaves hid
# every deletion or rewrite above it for good.
LIVENESS_KINDS = frozenset({"coverage_gap", "stale_witness"})


def problem_rank(problem: ChainProblem) -> int:
    """0 for a problem of the log's integrity, 1 for one of the signer's liveness (reported after)."""
    return 1 if problem.kind in LIVENESS_KINDS else 0


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


def checkpoint_signature_problem(
    checkpoint: Checkpoint, *, line: int, public_key: PublicKeys, named: str = "checkpoint", why: str = ""
) -> ChainProblem | None:
    """bad_checkpoint_signature when the checkpoint is not signed by the pinned key (or by the ring's key its
    key_id names), else None; named: what the message calls the checkpoint, why: what that may mean."""
    if checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=public_key):
        return None
    return ChainProblem(
        checkpoint.seq,
        line,
        "bad_checkpoint_signature",
        f"{named} for seq {checkpoint.seq}: the signature is not valid for the pinned public key{why}",
    )


def lane_heads_problem(
    checkpoint: Checkpoint,
    *,
    line: int,
    lookup: Callable[[int], str | None],
    head_seq: int | None,
    lane_heads: Mapping[int, LaneHead] | None,
    absent: Sequence[tuple[int, int]] = (),
    by: str = "",
    rewritten: Callable[[int, int, int], str],
    excused: Callable[[int], bool] | None = None,
) -> ChainProblem | None:
    """The problem at the lowest seq among the lane heads this checkpoint signs, or None. lookup: seq -> the
    stored hash (None: not present); head_seq: the last seq read (None: the records were not read to the
    end); by: who signed, for truncated_lane_problem; rewritten(lane, lane_seq, seq): the message for a head
    whose record has another hash; excused: the seqs a later restore marker names lost, whose records may be
    missing (but, when present, must still match: lab/audit/restore_marks.py)."""
    found: list[ChainProblem] = []
    for lane, lane_seq, seq, lane_hash in checkpoint.lanes:
        actual = lookup(seq)
        if actual is None and excused is not None and excused(seq):
            continue
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
                    by=by,
                    absent=absent,
                    end=head_seq,
                )
            )
        elif actual != lane_hash:
            found.append(ChainProblem(seq, line, "checkpoint_mismatch", rewritten(lane, lane_seq, seq), lane))
    return min(found, key=lambda problem: problem.seq or 0) if found else None
