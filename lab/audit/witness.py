"""Checkpoints outside the database: the witness sinks signed checkpoints are appended to, and the checks both
verifiers run against a witness log (consistency with the chain, coverage, freshness). No Django.

A witness log is the checkpoints-file format (lab/audit/verify.py): one canonical JSON checkpoint per line, in
signing order. The file sink appends whole lines with O_APPEND and fsync under an exclusive lock. A torn tail
(a short write, a crash mid-line, bytes someone else added) is reported, never extended: the signer alerts
and signs nothing until an operator cuts the torn bytes off (they are a checkpoint that was never stored,
or not the signer's), because a line joined onto a torn one would be unreadable for good. Another sink (an
object store with a retention lock, e.g. S3 Object Lock in compliance mode: one object per checkpoint named
by its seq and signed_at, written with a conditional put) implements the same four methods; what matters is
that nobody who can reach the database or the application host can shorten or rewrite what was written.
"""

from __future__ import annotations

import bisect
import fcntl
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from lab.audit.canonical import GENESIS_HASH, utc_timestamp
from lab.audit.checkpoints import (
    SETTLED_FORMATS,
    Checkpoint,
    checkpoint_lanes,
    checkpoint_signed_as,
    lanes_rolled_back,
)
from lab.audit.keys import KeyRing, PublicKeys, checkpoint_key
from lab.audit.lane_heads import LaneHead
from lab.audit.problems import ChainProblem, checkpoint_signature_problem, lane_heads_problem
from lab.audit.restore_marks import Restore, excused_before, is_restore_at, restores_in
from lab.lib.append_only import directory_sync, write_whole


class WitnessError(Exception):
    """The witness cannot be read, or refuses or fails an append. problem says what and where (the witness
    line), for the signer's alert: "witness_unreadable" (a damaged or torn line, an unreadable file) or
    "witness_unwritable" (the append did not write its whole line, or came before the witness's last)."""

    def __init__(self, problem: ChainProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


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
            except (ValueError, RecursionError) as error:
                # RecursionError: a line of deeply nested brackets, which json gives up on that way; uncaught,
                # it stopped the signer before its alert and the verifiers with a traceback.
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
        """WitnessError ("witness_unwritable") when the lock file cannot be made: a folder the process may not
        write (a read-only mount, a sandbox that does not list it) must reach the signer's alert, not stop it
        with a bare OSError before anyone is told."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_file = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115 (closed below)
        except OSError as error:
            raise WitnessError(
                self._problem("witness_unwritable", None, f"its lock file cannot be made ({error})")
            ) from error
        with lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def append(self, checkpoint: Checkpoint) -> None:
        """Append the checkpoint's line, whole: after a whole last line only (last() refuses a torn tail),
        and every byte of it written (os.write may write fewer), or WitnessError ("witness_unwritable"); the
        torn line such a failure leaves is then reported by every later last(), not extended."""
        checkpoints = self._whole()
        last = checkpoints[-1] if checkpoints else None
        line_number = len(checkpoints) + 1
        # A restore marker goes back to the heads the restored database holds (its signature is the verifiers'
        # to check; this sink holds no key): only its time may not go back.
        goes_back = checkpoint.seq < last.seq and checkpoint.restore is None if last is not None else False
        if last is not None and (goes_back or checkpoint.signed_at < last.signed_at):
            raise WitnessError(
                self._problem(
                    "witness_unwritable",
                    line_number,
                    f"checkpoint seq {checkpoint.seq} is older than the witness's last one (seq {last.seq},"
                    f" signed at {last.signed_at}): not appended",
                )
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not self.path.exists()
        data = (checkpoint.to_line() + "\n").encode("utf-8")
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                write_whole(descriptor, data, what="the witness")
            finally:
                os.close(descriptor)
        except OSError as error:
            raise WitnessError(
                self._problem(
                    "witness_unwritable",
                    line_number,
                    f"the checkpoint of seq {checkpoint.seq} could not be written whole ({error}): the"
                    " witness may end in a torn line, which is reported until it is cut off",
                )
            ) from error
        if is_new:
            directory_sync(self.path.parent)

    def read_all(self) -> tuple[list[Checkpoint], ChainProblem | None]:
        if not self.path.exists():
            return [], None
        checkpoints, problem = read_checkpoint_file(self.path)
        if problem is not None:
            problem = replace(problem, message=f"in the witness {self.location}: {problem.message}")
        return checkpoints, problem

    def last(self) -> Checkpoint | None:
        """The last checkpoint, the one the next is appended after; WitnessError ("witness_unreadable", at
        the line) when a line cannot be read or the last one lacks its newline (a torn append, however
        whole its JSON looks: the next line would be joined onto it)."""
        checkpoints = self._whole()
        return checkpoints[-1] if checkpoints else None

    def _whole(self) -> list[Checkpoint]:
        """Every checkpoint, if every line is a whole one (see last)."""
        try:
            checkpoints, problem = read_checkpoint_file(self.path) if self.path.exists() else ([], None)
            is_torn = self._ends_without_newline()
        except OSError as error:
            raise WitnessError(
                self._problem("witness_unreadable", None, f"the file cannot be read ({error})")
            ) from error
        if problem is not None:
            raise WitnessError(self._problem("witness_unreadable", problem.line, problem.message))
        if is_torn:
            raise WitnessError(
                self._problem(
                    "witness_unreadable",
                    len(checkpoints),
                    "the last line ends without its newline: a torn append, which nothing is appended after",
                )
            )
        return checkpoints

    def _problem(self, kind: str, line: int | None, what: str) -> ChainProblem:
        where = f", line {line}" if line is not None else ""
        return ChainProblem(
            None,
            line,
            kind,
            f"the witness {self.location}{where}: {what}; nothing is signed until it is mended",
        )

    def _ends_without_newline(self) -> bool:
        if not self.path.exists():
            return False
        with self.path.open("rb") as witness_file:
            if witness_file.seek(0, os.SEEK_END) == 0:
                return False
            witness_file.seek(-1, os.SEEK_END)
            return witness_file.read(1) != b"\n"


def witness_from_url(url: str) -> WitnessSink:
    """The sink an AUDIT_WITNESS URL names: file:///absolute/path.jsonl (the only sink built in)."""
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.path:
        return FileWitness(Path(unquote(parsed.path)))
    raise ValueError(f"unsupported audit witness {url!r}: use file:///absolute/path/checkpoints.jsonl")


# --- checks ---------------------------------------------------------------------------------------------


class _Epoch:
    """The witnessed checkpoints of one epoch (BackdatingCheck): each with whether it is settled and the seq
    no record after it may be at or below (its own, or a restore marker's lost range's end), by index the
    last settled one at or before it, and by lane the position each signs it at (never decreasing)."""

    def __init__(self, floor: int = 0) -> None:
        self.floor = (
            floor  # after a restore marker: the end of its lost range, which no later seq is at or below
        )
        self.checkpoints: list[tuple[Checkpoint, bool, int]] = []
        self.last_settled: list[int | None] = []
        self.positions: dict[int, list[int]] = {}
        self._signed: dict[int, int] = {}

    def add(self, checkpoint: Checkpoint, *, is_settled: bool) -> None:
        for lane, lane_seq, _, _ in checkpoint_lanes(checkpoint):
            self._signed[lane] = max(self._signed.get(lane, 0), lane_seq)
        index = len(self.checkpoints)
        self.checkpoints.append((checkpoint, is_settled, max(checkpoint.seq, self.floor)))
        self.last_settled.append(index if is_settled else self.last_settled[-1] if index else None)
        for lane, lane_seq in self._signed.items():
            self.positions.setdefault(lane, [0] * index).append(lane_seq)


class BackdatingCheck:
    """The rule of settled checkpoints (CHECKPOINT_FORMAT_SETTLED), for records read in seq order: a
    record first covered by witnessed checkpoint N+1, or by none yet (then N is the last one), must have a
    seq above N's and a time not before N's signed_at, when N is settled; else it was written after N was
    signed and numbered or dated before it (a record "from months ago" first witnessed today). And its time
    must not be after N+1's signed_at when N+1 is settled (or, covered by none, after the verifier's now);
    else it is named "future_dated": it was dated ahead of the clock that signed (a clock the app was made
    to read wrong, e.g. a shadowing clock_timestamp() in its search_path), which would carry it past a
    review day or out of a technician's shift.

    Both follow from how the signer settles (lab/audit/services.py): every record it does not cover took
    its lane after every lane had been held by the signer, so its seq is above every seq the checkpoint
    covers and its time was read after the checkpoint's; every record it covers was timed before its commit,
    which came before the signer read its clock. Records and checkpoints are timed on the one database
    clock, so no tolerance is allowed. A checkpoint signed before settling existed does not say so: a record
    is judged against the last settled checkpoint at or before N (a settled one says the same of every record
    it does not cover), and skipped only when there is none. An unsettled checkpoint after a settled one
    (which only someone else holding the signing key signs: unsettled_checkpoint_problem) so never shields
    the records after it. Only the witnessed checkpoints before the first whose signature does not verify
    are used (that one the witness check names). see() keeps the first problem in `problem`; a record covered
    by no checkpoint is judged against the verifier's clock by finish(). A restore marker is settled, and
    the records after it must have a seq above its lost range too (lab/audit/restore_marks.py): a seq the
    witness vouched for, taken again, is "backdated".

    now (or start()): the verifier's clock before the walk reads its first record; a record covered by no
    checkpoint and timed after it is kept (as a running maximum, so few are) until finish() judges it
    against the clock read after the walk, which every record the walk read was committed before."""

    def __init__(
        self, witnessed: Sequence[Checkpoint], *, public_key: PublicKeys, now: datetime | None = None
    ) -> None:
        self.problem: ChainProblem | None = None
        # The checkpoints as epochs: one, and one more after each restore marker (restore_marks.py), which
        # ends the epoch before it (covering the records the restored database held) and starts the next
        # (judging the records after it). A record at or below a marker's seq was kept by that restore and
        # written in the epoch of the checkpoint the marker continues from: the first marker (in signing
        # order) whose seq it is not above says which (_kept: each marker's seq and that epoch; None when
        # this list does not hold the checkpoint it continues from). A record above every marker's seq was
        # written after the last one (every seq after a marker is above its lost range). Without the epoch a
        # marker continues from, a record is in the epoch of the last marker whose seq is below its own
        # (_bounds: those seqs). A second restore from a backup older than the first marker keeps records
        # that marker named lost: they are judged with the checkpoints of their own epoch, not as seqs taken
        # again after the first marker.
        self._epochs: list[_Epoch] = [_Epoch()]
        self._bounds: list[int] = []
        self._kept: list[tuple[int, int | None]] = []
        self._since: str | None = None
        self._until: datetime | None = None
        # (seq, line, lane, lane_seq, occurred_at) of the uncovered records timed after _since, each later
        # than every one before it: the first after the final clock is among them.
        self._ahead: list[tuple[int, int, int, int, str]] = []
        if now is not None:
            self.start(now)
        # Markers by their signature alone (the signer judges records by the witness's last line only); the
        # witness check names a marker that is not the restore it claims ("bad_restore").
        restores, _ = restores_in(witnessed, public_key=public_key)
        epoch_at: list[int] = []  # by index: the epoch a checkpoint starts, or else the one it is in
        for index, checkpoint in enumerate(witnessed):
            signed_as = checkpoint_signed_as(checkpoint=checkpoint, public_key=public_key)
            if signed_as is None:
                break
            is_settled = signed_as in SETTLED_FORMATS
            self._epochs[-1].add(checkpoint, is_settled=is_settled)
            if checkpoint.restore is not None and is_restore_at(restores, index):
                mark = checkpoint.restore
                continues = next(
                    (
                        epoch_at[at]
                        for at in range(index - 1, -1, -1)
                        if (witnessed[at].seq, witnessed[at].signed_at, witnessed[at].head_hash)
                        == (mark.from_seq, mark.from_signed_at, mark.from_hash)
                    ),
                    None,
                )
                epoch = _Epoch(mark.lost_to)
                epoch.add(checkpoint, is_settled=True)
                self._epochs.append(epoch)
                self._bounds.append(checkpoint.seq)
                self._kept.append((checkpoint.seq, continues))
            epoch_at.append(len(self._epochs) - 1)

    def start(self, now: datetime) -> None:
        """The verifier's clock before the walk: records covered by no checkpoint are judged against it (or,
        by finish(), against a later reading)."""
        self._since = utc_timestamp(now)
        self._until = now

    def see(self, *, seq: int, lane: int, lane_seq: int, occurred_at: str, line: int) -> None:
        """Judge one record (a record from before lanes: lane 1 at position seq)."""
        if self.problem is not None:
            return
        epoch = self._epochs[self._epoch_of(seq)]
        checkpoints = epoch.checkpoints
        count = len(checkpoints)
        column = epoch.positions.get(lane)
        first = bisect.bisect_left(column, lane_seq) if column is not None else count
        if first == count:
            latest = self._ahead[-1][4] if self._ahead else self._since
            if latest is not None and occurred_at > latest:
                self._ahead.append((seq, line, lane, lane_seq, occurred_at))
        else:
            covering, is_covering_settled, _ = checkpoints[first]
            if is_covering_settled and occurred_at > covering.signed_at:
                self.problem = self._future_dated(
                    seq,
                    line,
                    lane,
                    lane_seq,
                    occurred_at,
                    f"first signed by the witnessed checkpoint of seq {covering.seq}, which was signed"
                    f" earlier, at {covering.signed_at}",
                )
                return
        judge = epoch.last_settled[first - 1] if first > 0 else None
        if judge is None:
            return
        settled, _, floor = checkpoints[judge]
        if seq > floor and occurred_at >= settled.signed_at:
            return
        covered = (
            f"first signed by the witnessed checkpoint of seq {checkpoints[first][0].seq} signed at"
            f" {checkpoints[first][0].signed_at}"
            if first < count
            else "signed by no witnessed checkpoint yet"
        )
        what = f"the settled checkpoint of seq {settled.seq} signed at {settled.signed_at}"
        if floor != settled.seq:
            what += f" (after a restore marker naming seqs up to {epoch.floor} lost)"
        why = (
            f"its seq is not above {floor}"
            if seq <= floor
            else f"its time {occurred_at} is before {settled.signed_at}"
        )
        self.problem = ChainProblem(
            seq,
            line,
            "backdated",
            f"record seq {seq} (lane {lane} #{lane_seq}) is {covered}, after {what}, but {why}: it was"
            " written after that checkpoint and numbered or dated before it (backdated)",
            lane,
        )

    def _epoch_of(self, seq: int) -> int:
        """The epoch a record at seq was written in (see __init__)."""
        for kept_up_to, continues in self._kept:
            if seq <= kept_up_to:
                if continues is not None:
                    return continues
                break
        number = 0
        for at, bound in enumerate(self._bounds, start=1):
            if bound < seq:
                number = at
        return number

    def finish(self, now: datetime | None = None) -> ChainProblem | None:
        """After the walk: the first record covered by no checkpoint and timed after now (the verifier's
        clock read once the walk has read every record; default: the one given to start()), unless a
        problem at a lower seq was found; the first problem either way."""
        until = utc_timestamp(now) if now is not None else None
        if until is None and self._until is not None:
            until = utc_timestamp(self._until)
        if until is None:
            return self.problem
        for seq, line, lane, lane_seq, occurred_at in self._ahead:
            if occurred_at <= until:
                continue
            if self.problem is None or self.problem.seq is None or seq < self.problem.seq:
                self.problem = self._future_dated(
                    seq,
                    line,
                    lane,
                    lane_seq,
                    occurred_at,
                    f"signed by no witnessed checkpoint yet, and the verifier's clock says {until}",
                )
            break
        self._ahead = []
        return self.problem

    @staticmethod
    def _future_dated(
        seq: int, line: int, lane: int, lane_seq: int, occurred_at: str, covered: str
    ) -> ChainProblem:
        return ChainProblem(
            seq,
            line,
            "future_dated",
            f"record seq {seq} (lane {lane} #{lane_seq}) is timed {occurred_at} but {covered}: it was dated"
            " ahead of the clock (forward-dated)",
            lane,
        )


def future_checkpoint_problem(witnessed: Sequence[Checkpoint], *, now: datetime) -> ChainProblem | None:
    """The first witnessed checkpoint signed after now (the verifier's clock), which no freshness judges
    fresh: its signer's clock ran ahead, or its signed_at was made up."""
    until = utc_timestamp(now)
    for line, checkpoint in enumerate(witnessed, start=1):
        if checkpoint.signed_at > until:
            return ChainProblem(
                checkpoint.seq,
                line,
                "future_dated",
                f"witnessed checkpoint for seq {checkpoint.seq} is signed at {checkpoint.signed_at}, after"
                f" the verifier's clock ({until}): its time was dated ahead (forward-dated)",
            )
    return None


def unsettled_checkpoint_problem(
    witnessed: Sequence[Checkpoint], *, public_key: PublicKeys
) -> ChainProblem | None:
    """The first witnessed checkpoint signed as not settled (v1/v2) after a settled one. The signer has
    signed every checkpoint settled since it learnt to, so that line was signed by someone else holding the
    signing key (an app-host admin), to have the backdating rule skip the records after it. Lines from the
    first whose signature does not verify on are left to the consistency check, which names that one."""
    has_settled = False
    for line, checkpoint in enumerate(witnessed, start=1):
        signed_as = checkpoint_signed_as(checkpoint=checkpoint, public_key=public_key)
        if signed_as is None:
            return None
        if signed_as in SETTLED_FORMATS:
            has_settled = True
        elif has_settled:
            return ChainProblem(
                checkpoint.seq,
                line,
                "bad_checkpoint_signature",
                f"witnessed checkpoint for seq {checkpoint.seq} (signed at {checkpoint.signed_at}) is signed"
                " as not settled after a settled one, which the signer never does: it was signed by someone"
                " else holding the signing key",
            )
    return None


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
