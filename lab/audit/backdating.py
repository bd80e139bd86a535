"""The backdating rule of settled checkpoints (BackdatingCheck), for records read in seq order, and the
witnessed checkpoints no verifier may trust: one signed after its clock, one signed as not settled after a
settled one. No Django.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime

from lab.audit.canonical import utc_timestamp
from lab.audit.checkpoints import SETTLED_FORMATS, Checkpoint, checkpoint_lanes, checkpoint_signed_as
from lab.audit.keys import PublicKeys
from lab.audit.problems import ChainProblem
from lab.audit.restore_marks import is_restore_at, restores_in


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

    Both follow from how the signer settles (lab/audit/signer.py): every record it does not cover took
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
