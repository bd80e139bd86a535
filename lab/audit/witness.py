"""Checkpoints outside the database: the witness sinks signed checkpoints are appended to, and the checks both
verifiers run against a witness log (consistency with the chain, coverage, freshness). No Django.

A witness log is the checkpoints-file format (lab/audit/verify.py): one canonical JSON checkpoint per line, in
signing order. The file sink appends with O_APPEND and fsync under an exclusive lock. Another sink (an object
store with a retention lock, e.g. S3 Object Lock in compliance mode: one object per checkpoint named by its
seq and signed_at, written with a conditional put) implements the same four methods; what matters is that
nobody who can reach the database or the application host can shorten or rewrite what was written.
"""

from __future__ import annotations

import fcntl
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lab.audit.chain import (
    GENESIS_HASH,
    ChainProblem,
    Checkpoint,
    LaneHead,
    checkpoint_lanes,
    checkpoint_signature_is_valid,
    lanes_rolled_back,
    truncated_lane_problem,
)


class WitnessError(Exception):
    """The witness cannot be read or refuses an append (a checkpoint older than its last one)."""


class WitnessSink(Protocol):
    location: str

    def lock(self) -> AbstractContextManager[None]:
        """Held by the signer from reading the last checkpoint to appending the next: one signer at a time."""
        ...

    def append(self, checkpoint: Checkpoint) -> None:
        """Durably add the checkpoint (on stable storage when this returns)."""
        ...

    def read_all(self) -> tuple[list[Checkpoint], ChainProblem | None]:
        """Every checkpoint, or those before the first malformed entry and its problem."""
        ...

    def last(self) -> Checkpoint | None: ...


def read_checkpoint_file(path: Path) -> tuple[list[Checkpoint], ChainProblem | None]:
    """All checkpoints of a checkpoints file, or those before the first malformed line and its problem."""
    checkpoints: list[Checkpoint] = []
    with path.open("rb") as checkpoints_file:
        for line_number, raw in enumerate(checkpoints_file, start=1):
            try:
                text = raw.decode("utf-8").removesuffix("\n")
                checkpoint = Checkpoint.from_line(text)
                if checkpoint.to_line() != text:
                    raise ValueError("not in canonical form")
            except ValueError as error:
                return checkpoints, ChainProblem(None, line_number, "malformed", f"bad checkpoint: {error}")
            checkpoints.append(checkpoint)
    return checkpoints, None


class FileWitness:
    """An append-only JSONL file, ideally on another disk or a host the database's administrators cannot reach
    (a mount the application host may only append to)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = f"file://{path}"

    @contextmanager
    def lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def append(self, checkpoint: Checkpoint) -> None:
        last = self.last()
        if last is not None and (checkpoint.seq < last.seq or checkpoint.signed_at < last.signed_at):
            raise WitnessError(f"checkpoint seq {checkpoint.seq} is older than the witness's last one")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not self.path.exists()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(descriptor, (checkpoint.to_line() + "\n").encode("utf-8"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if is_new:
            # The new directory entry must survive a crash too.
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def read_all(self) -> tuple[list[Checkpoint], ChainProblem | None]:
        if not self.path.exists():
            return [], None
        return read_checkpoint_file(self.path)

    def last(self) -> Checkpoint | None:
        checkpoints, problem = self.read_all()
        if problem is not None:
            raise WitnessError(f"the witness {self.location} is damaged at line {problem.line}")
        return checkpoints[-1] if checkpoints else None


def witness_from_url(url: str) -> WitnessSink:
    """The sink an AUDIT_WITNESS URL names: file:///absolute/path.jsonl (the only sink built in)."""
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.path:
        return FileWitness(Path(unquote(parsed.path)))
    raise ValueError(f"unsupported audit witness {url!r}: use file:///absolute/path/checkpoints.jsonl")


# --- checks ---------------------------------------------------------------------------------------------


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def check_witness(
    witnessed: Sequence[Checkpoint],
    *,
    public_key: Ed25519PublicKey,
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
    freshness allow two checkpoint intervals. Line numbers refer to the witness log. is_chain_whole False:
    the chain walk stopped at a problem after head_seq, so checkpoints beyond it cannot be compared.
    lane_heads: the last record present of every lane (for a laned log) and absent the seqs with no record,
    so a truncated lane is named with the first seq removed."""
    lookup = heads.get if isinstance(heads, Mapping) else heads
    comparable = witnessed if is_chain_whole else [c for c in witnessed if c.seq <= head_seq]
    return (
        _consistency_problem(
            comparable,
            public_key=public_key,
            lookup=lookup,
            head_seq=head_seq,
            lane_heads=lane_heads,
            absent=absent,
        )
        or _incomplete_problem(witnessed, known)
        or _coverage_problem(witnessed, interval_seconds=interval_seconds)
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
    public_key: Ed25519PublicKey,
    lookup: Callable[[int], str | None],
    head_seq: int,
    lane_heads: Mapping[int, LaneHead] | None = None,
    absent: Sequence[tuple[int, int]] = (),
) -> ChainProblem | None:
    previous: Checkpoint | None = None
    positions: dict[int, int] = {}
    matched: dict[int, int] = {}  # lane -> seq of its head in the last witnessed checkpoint that matched
    last_matching_seq = 0
    for line, checkpoint in enumerate(witnessed, start=1):
        seq = checkpoint.seq
        if not checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=public_key):
            return ChainProblem(
                seq,
                line,
                "bad_checkpoint_signature",
                f"witnessed checkpoint for seq {seq}: the signature is not valid for the pinned public key"
                " (a replaced signing key, or a forged line)",
            )
        if previous is not None and (seq < previous.seq or checkpoint.signed_at < previous.signed_at):
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
            problem = _lanes_problem(checkpoint, line, lookup, head_seq, lane_heads, matched, absent)
            if problem is not None:
                return problem
            matched.update((lane, lane_head_seq) for lane, _, lane_head_seq, _ in checkpoint.lanes)
            last_matching_seq = seq
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
) -> ChainProblem | None:
    """The lane heads of a witnessed checkpoint against the records: the problem at the lowest seq. matched:
    the seq each lane's head had in the last witnessed checkpoint that still matched."""
    found: list[ChainProblem] = []
    for lane, lane_seq, seq, lane_hash in checkpoint.lanes:
        actual = lookup(seq)
        present = (lane_heads or {}).get(lane)
        reaches = present is not None and present[1] >= lane_seq
        if seq > head_seq or (actual is None and not reaches):
            found.append(
                truncated_lane_problem(
                    lane=lane,
                    lane_seq=lane_seq,
                    seq=seq,
                    line=line,
                    present=present,
                    known=True,
                    by=f" witnessed at {checkpoint.signed_at}",
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
                    f"record seq {seq} (lane {lane} #{lane_seq}) does not have the hash the witness signed at"
                    f" {checkpoint.signed_at}: the chain was rewritten within seqs"
                    f" {matched.get(lane, 0) + 1}..{seq}",
                    lane,
                )
            )
    return min(found, key=lambda problem: problem.seq or 0) if found else None


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


def _coverage_problem(witnessed: Sequence[Checkpoint], *, interval_seconds: int) -> ChainProblem | None:
    allowed = 2 * interval_seconds
    for line, (before, after) in enumerate(itertools.pairwise(witnessed), start=2):
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
