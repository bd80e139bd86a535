"""The check both verifiers run against a witness log (check_witness): consistency with the chain, lines the
witness lost, coverage and freshness. No Django.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from lab.audit.backdating import future_checkpoint_problem, unsettled_checkpoint_problem
from lab.audit.canonical import GENESIS_HASH
from lab.audit.checkpoints import Checkpoint, checkpoint_lanes, lanes_rolled_back
from lab.audit.keys import KeyRing, PublicKeys, checkpoint_key
from lab.audit.lane_heads import LaneHead
from lab.audit.problems import ChainProblem, checkpoint_signature_problem, lane_heads_problem
from lab.audit.restore_marks import Restore, excused_before, is_restore_at, restores_in


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def check_witness(
    witnessed: Sequence[Checkpoint],
    *,
    public_key: PublicKeys,
    heads: Mapping[int, str] | Callable[[int], str | None],
    head_seq: int,
    first_record_at: str | None,
    now: datetime,
    interval_seconds: int,
    known: Sequence[Checkpoint] = (),
    is_chain_whole: bool = True,
    lane_heads: Mapping[int, LaneHead] | None = None,
    absent: Sequence[tuple[int, int]] = (),
) -> ChainProblem | None:
    """The first problem of the chain against the witness log, or None.

    heads maps seq -> stored hash of the records present (up to head_seq, the last seq verified); known are
    checkpoints found elsewhere (the database, the export) that the witness must also hold; first_record_at
    is record 1's occurred_at (None: no records), so a young log may not have been witnessed yet. Coverage and
    freshness allow two checkpoint intervals; a checkpoint signed after now is "future_dated", never fresh.
    Line numbers refer to the witness log. is_chain_whole False:
    the chain walk stopped at a problem after head_seq, so checkpoints beyond it cannot be compared.
    lane_heads: the last record present of every lane (for a laned log) and absent the seqs with no record,
    so a truncated lane is named with the first seq removed. Restore markers: lab/audit/restore_marks.py (a
    marker that is not a valid one is "bad_restore"; the window it closes is not a coverage gap)."""
    lookup = heads.get if isinstance(heads, Mapping) else heads
    restores, restore_problem = restores_in(witnessed, public_key=public_key, is_witness=True)
    must_hold = _signed_like_the_witness(known, witnessed, public_key)
    return (
        # Before the consistency check: without the marker, every lane head its restore lost reads as a
        # rewrite or a truncation, when the copy only lacks a line (a lost mail).
        _missing_marker_problem(witnessed, must_hold)
        or _consistency_problem(
            witnessed,
            public_key=public_key,
            lookup=lookup,
            head_seq=head_seq,
            lane_heads=lane_heads,
            absent=absent,
            restores=restores,
            restore_problem=restore_problem,
            up_to=None if is_chain_whole else head_seq,
        )
        or unsettled_checkpoint_problem(witnessed, public_key=public_key)
        or _incomplete_problem(witnessed, must_hold)
        or future_checkpoint_problem(witnessed, now=now)
        or _coverage_problem(witnessed, interval_seconds=interval_seconds, restores=restores)
        or _freshness_problem(
            witnessed,
            head_seq=head_seq,
            first_record_at=first_record_at,
            now=now,
            interval_seconds=interval_seconds,
        )
    )


def _consistency_problem(
    witnessed: Sequence[Checkpoint],
    *,
    public_key: PublicKeys,
    lookup: Callable[[int], str | None],
    head_seq: int,
    lane_heads: Mapping[int, LaneHead] | None = None,
    absent: Sequence[tuple[int, int]] = (),
    restores: Sequence[Restore] = (),
    restore_problem: ChainProblem | None = None,
    up_to: int | None = None,
) -> ChainProblem | None:
    """up_to: compare only the checkpoints of seq up to it (the chain is broken after it)."""
    previous: Checkpoint | None = None
    positions: dict[int, int] = {}
    matched: dict[int, int] = {}  # lane -> seq of its head in the last witnessed checkpoint that matched
    last_matching_seq = 0
    for line, checkpoint in enumerate(witnessed, start=1):
        seq = checkpoint.seq
        if up_to is not None and seq > up_to:
            continue
        problem = checkpoint_signature_problem(
            checkpoint,
            line=line,
            public_key=public_key,
            named="witnessed checkpoint",
            why=" (a replaced signing key, or a forged line)",
        )
        if problem is not None:
            return problem
        if restore_problem is not None and restore_problem.line == line:
            return restore_problem
        is_restore = is_restore_at(restores, line - 1)
        excused = excused_before(restores, line - 1)
        if is_restore:
            # The lanes continue from the restore point (restore_marks checked the marker against it).
            positions = {}
        if previous is not None and (
            (seq < previous.seq and not is_restore) or checkpoint.signed_at < previous.signed_at
        ):
            return ChainProblem(
                seq,
                line,
                "checkpoint_mismatch",
                f"witnessed checkpoint for seq {seq} comes after one for seq {previous.seq}"
                f" signed at {previous.signed_at}: the witness log was reordered",
            )
        rolled_back = lanes_rolled_back(checkpoint, positions)
        if rolled_back is not None:
            return ChainProblem(
                seq,
                line,
                "checkpoint_mismatch",
                f"witnessed checkpoint for seq {seq} signs lane {rolled_back[0]} at #{rolled_back[1]}, behind"
                f" an earlier one (#{positions[rolled_back[0]]}): the witness log was reordered",
                rolled_back[0],
            )
        previous = checkpoint
        positions.update((lane, lane_seq) for lane, lane_seq, _, _ in checkpoint_lanes(checkpoint))
        if checkpoint.lanes:
            problem = _lanes_problem(checkpoint, line, lookup, head_seq, lane_heads, matched, absent, excused)
            if problem is not None:
                return problem
            matched.update((lane, lane_head_seq) for lane, _, lane_head_seq, _ in checkpoint.lanes)
            last_matching_seq = seq
            continue
        if excused is not None and excused(seq) and lookup(seq) is None:
            continue
        if seq > head_seq:
            highest = max(c.seq for c in witnessed)
            return ChainProblem(
                head_seq + 1,
                line,
                "truncated_after_checkpoint",
                f"the witness holds a checkpoint of seq {seq} (signed at {checkpoint.signed_at}) but the"
                f" chain ends at seq {head_seq}: seqs {head_seq + 1}..{highest} were removed",
            )
        actual = GENESIS_HASH if seq == 0 else lookup(seq)
        if actual != checkpoint.head_hash:
            return ChainProblem(
                seq,
                line,
                "checkpoint_mismatch",
                f"record seq {seq} does not have the hash the witness signed at {checkpoint.signed_at}:"
                f" the chain was rewritten within seqs {last_matching_seq + 1}..{seq}",
            )
        last_matching_seq = seq
        if seq > 0:
            matched[1] = seq
    return None


def _lanes_problem(
    checkpoint: Checkpoint,
    line: int,
    lookup: Callable[[int], str | None],
    head_seq: int,
    lane_heads: Mapping[int, LaneHead] | None,
    matched: Mapping[int, int],
    absent: Sequence[tuple[int, int]] = (),
    excused: Callable[[int], bool] | None = None,
) -> ChainProblem | None:
    """The lane heads of a witnessed checkpoint against the records: the problem at the lowest seq. matched:
    the seq each lane's head had in the last witnessed checkpoint that still matched; excused: the seqs a
    later restore marker names lost."""

    def rewritten(lane: int, lane_seq: int, seq: int) -> str:
        return (
            f"record seq {seq} (lane {lane} #{lane_seq}) does not have the hash the witness signed at"
            f" {checkpoint.signed_at}: the chain was rewritten within seqs {matched.get(lane, 0) + 1}..{seq}"
        )

    return lane_heads_problem(
        checkpoint,
        line=line,
        lookup=lookup,
        head_seq=head_seq,
        lane_heads=lane_heads,
        absent=absent,
        by=f" witnessed at {checkpoint.signed_at}",
        rewritten=rewritten,
        excused=excused,
    )


def _signed_like_the_witness(
    known: Sequence[Checkpoint], witnessed: Sequence[Checkpoint], public_keys: PublicKeys
) -> list[Checkpoint]:
    """The known checkpoints this witness log must hold: those signed by a key that signed in it (the
    current key, for an empty one). A rotation starts a new witness log; the checkpoints of the retired key
    are in the old log, which the new one is not missing lines of."""
    if not isinstance(public_keys, KeyRing) or not public_keys.retired:
        return list(known)
    signers = {id(checkpoint_key(public_keys, c.key_id)) for c in witnessed} or {id(public_keys.current)}
    return [c for c in known if id(checkpoint_key(public_keys, c.key_id)) in signers]


def _missing_marker_problem(
    witnessed: Sequence[Checkpoint], known: Sequence[Checkpoint]
) -> ChainProblem | None:
    """A restore marker signed with the key (the caller checked each known checkpoint's signature) that the
    database's rows or the export hold and the witness does not: the witness lost its line, most likely an
    auditor's copy whose mail of it never arrived ("witness_incomplete", naming it)."""
    present = {checkpoint.to_line() for checkpoint in witnessed}
    for index, checkpoint in enumerate(known):
        if checkpoint.restore is None or checkpoint.to_line() in present:
            continue
        return ChainProblem(
            checkpoint.seq,
            None,
            "witness_incomplete",
            f"the restore marker signed at {checkpoint.signed_at} ({Restore(index, checkpoint).note()}) is"
            " signed with the key but not in the witness: the witness lost its line (an auditor's copy whose"
            " mail of it did not arrive); add the line the lab's witness holds for it and verify again",
        )
    return None


def _incomplete_problem(witnessed: Sequence[Checkpoint], known: Sequence[Checkpoint]) -> ChainProblem | None:
    """A checkpoint signed with the key but absent from the witness: the witness lost lines (the key's
    signatures cannot be made by whoever removed them)."""
    present = {(checkpoint.seq, checkpoint.signed_at) for checkpoint in witnessed}
    last = witnessed[-1] if witnessed else None
    for checkpoint in known:
        if (checkpoint.seq, checkpoint.signed_at) in present:
            continue
        if last is None or checkpoint.signed_at > last.signed_at:
            last_seq = 0 if last is None else last.seq
            where = "holds no line" if last is None else f"ends at seq {last.seq} signed at {last.signed_at}"
            return ChainProblem(
                last_seq + 1,
                len(witnessed) + 1,
                "witness_incomplete",
                f"a checkpoint of seq {checkpoint.seq} signed at {checkpoint.signed_at} is not in the"
                f" witness, which {where}: the witness lost its last lines;"
                f" seqs {last_seq + 1}..{checkpoint.seq} are not witnessed",
            )
        return ChainProblem(
            checkpoint.seq,
            None,
            "witness_incomplete",
            f"a checkpoint of seq {checkpoint.seq} signed at {checkpoint.signed_at} is not in the witness"
            " although later ones are: the witness lost a line",
        )
    return None


def _coverage_problem(
    witnessed: Sequence[Checkpoint], *, interval_seconds: int, restores: Sequence[Restore] = ()
) -> ChainProblem | None:
    """Consecutive witnessed checkpoints more than two intervals apart; but for the window a restore marker
    closes (from the checkpoint it supersedes to it): what was written then is lost, as the marker says."""
    allowed = 2 * interval_seconds
    for line, (before, after) in enumerate(itertools.pairwise(witnessed), start=2):
        if is_restore_at(restores, line - 1):
            continue
        gap = (parse_timestamp(after.signed_at) - parse_timestamp(before.signed_at)).total_seconds()
        if gap > allowed:
            return ChainProblem(
                before.seq + 1,
                line,
                "coverage_gap",
                f"no witnessed checkpoint between {before.signed_at} (seq {before.seq}) and"
                f" {after.signed_at} (seq {after.seq}), more than {allowed} s: seqs"
                f" {before.seq + 1}..{after.seq} were written in an unwitnessed window",
            )
    return None


def _freshness_problem(
    witnessed: Sequence[Checkpoint],
    *,
    head_seq: int,
    first_record_at: str | None,
    now: datetime,
    interval_seconds: int,
) -> ChainProblem | None:
    allowed = 2 * interval_seconds
    if witnessed:
        last = witnessed[-1]
        age = (now - parse_timestamp(last.signed_at)).total_seconds()
        if age <= allowed:
            return None
        return ChainProblem(
            last.seq + 1,
            len(witnessed),
            "stale_witness",
            f"the last witnessed checkpoint (seq {last.seq}) was signed at {last.signed_at}, {int(age)} s"
            f" ago, more than {allowed} s: the signer stopped or the witness lost its last lines;"
            f" seqs {last.seq + 1}..{max(head_seq, last.seq + 1)} are not witnessed",
        )
    if first_record_at is None or (now - parse_timestamp(first_record_at)).total_seconds() <= allowed:
        return None
    return ChainProblem(
        1,
        None,
        "stale_witness",
        f"the witness holds no checkpoint although record 1 was written at {first_record_at}, more than"
        f" {allowed} s ago: seqs 1..{head_seq} are not witnessed",
    )
