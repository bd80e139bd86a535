"""Restore markers in a list of checkpoints (a witness log, the database's rows, an export's file): which are
valid, what they excuse, and how a verifier reports them. Pure Python (stdlib + cryptography), no Django.

A database restored from a backup holds the chain only up to some witnessed checkpoint (the restore point);
the witness also holds the checkpoints signed since, whose heads the database no longer reaches.
`manage.py audit_restore` (lab/audit/restoring.py) moves the record sequence past every seq the witness
named and signs a restore marker (checkpoints.RESTORE_FORMAT): a settled checkpoint of the heads the database
holds, whose mark names the restore point, the witness's last checkpoint before it (superseded) and the seqs
lost. Across a valid marker the verifiers:

- excuse, in every checkpoint before it, a lane head the records no longer hold whose seq is in the lost
  range; nothing else: a head below the restore point, or one whose record is still there, must match as
  always (a restore removes records, it does not replace them);
- let the marker's seq and lane positions go back to the restore point's (the lanes continue from there:
  the positions after it are new records, at new seqs), and compare the checkpoints after it with it;
- judge the records after it (seq above its own) by it: seq above its lost range, time not before it
  (backdating.BackdatingCheck), so a seq the witness vouched for is never taken again unnoticed; and the
  records it kept (at or below its seq) with the checkpoints of the epoch it continues from, where they were
  written (a second restore from a backup older than an earlier marker keeps records that marker named lost);
- do not count the time between the superseded checkpoint and the marker as a coverage gap (the window
  the restore lost, which the marker's report names); freshness is judged from the witness's last line, the
  marker or a checkpoint after it, as always.

A database that lacks records of a witnessed checkpoint yet holds a record numbered after it was signed is no
restore (first_settled_after: no snapshot holds both), and audit_restore refuses it; a deletion of every
lane's tail past a witnessed checkpoint cannot be told from a restore, and is then marked in the open.

In a witness log a marker is valid when its signature holds and it continues from a checkpoint earlier in
the same log that no earlier marker superseded, supersedes exactly the line before it, its lost range reaches
every seq named before it and no lane of it is behind the restore point's ("bad_restore" otherwise). In the
database's rows or an export's file (which hold neither the superseded checkpoints nor, always, the restore
point) a marker needs its signature only; the witness is what holds it to the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from lab.audit.checkpoints import (
    Checkpoint,
    RestoreMark,
    checkpoint_is_settled,
    checkpoint_lanes,
    checkpoint_signature_is_valid,
    lanes_rolled_back,
)
from lab.audit.keys import PublicKeys
from lab.audit.problems import ChainProblem


@dataclass(frozen=True)
class Restore:
    """A valid restore marker of a checkpoint list: its index there and, in a witness log, the index of the
    checkpoint it continues from (None in a list that need not hold it)."""

    index: int
    marker: Checkpoint
    continues: int | None = None

    @property
    def mark(self) -> RestoreMark:
        assert self.marker.restore is not None
        return self.marker.restore

    def excuses(self, seq: int) -> bool:
        """Whether a checkpoint before the marker may sign seq without the records holding it."""
        return self.mark.lost_from <= seq <= self.mark.lost_to

    def keeps(self, *, seq: int, lane: int) -> bool:
        """Whether the record at seq of lane, a seq of the lost range, is one the restored database still
        held when the marker was signed (the marker signs that lane at it or past it): a backup taken after
        the checkpoint the chain continues from holds the records written since, up to the backup."""
        return self.excuses(seq) and any(head[0] == lane and head[2] >= seq for head in self.marker.lanes)

    def note(self) -> str:
        """What the verifiers report of it."""
        mark = self.mark
        lost = (
            f"seq {mark.lost_from}"
            if mark.lost_from == mark.lost_to
            else f"seqs {mark.lost_from}..{mark.lost_to}"
        )
        return (
            f"restored at {self.marker.signed_at} by {mark.by} (key {self.marker.key_id}): {lost} lost, the"
            f" checkpoint of seq {mark.superseded_seq} signed at {mark.superseded_signed_at} superseded; the"
            f" chain continues from the checkpoint of seq {mark.from_seq} signed at {mark.from_signed_at}"
        )


def named_top(checkpoints: Sequence[Checkpoint]) -> int:
    """The highest seq the checkpoints name: a checkpoint's, a lane head's, or the end of a lost range."""
    top = 0
    for checkpoint in checkpoints:
        top = max(top, checkpoint.seq, *(head[2] for head in checkpoint_lanes(checkpoint)))
        if checkpoint.restore is not None:
            top = max(top, checkpoint.restore.lost_to)
    return top


def restores_in(
    checkpoints: Sequence[Checkpoint], *, public_key: PublicKeys, is_witness: bool = False
) -> tuple[list[Restore], ChainProblem | None]:
    """The valid restore markers among the checkpoints (in signing order), up to the first that is not, and
    the problem of that one ("bad_restore", at its line). A marker whose signature does not verify is left to
    the signature checks (and ends the list). is_witness: the list is a whole witness log, which holds what
    a marker names (see the module's docstring)."""
    restores: list[Restore] = []
    for index, checkpoint in enumerate(checkpoints):
        if checkpoint.restore is None:
            continue
        if not checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=public_key):
            return restores, None
        if not is_witness:
            restores.append(Restore(index, checkpoint))
            continue
        continues, why = _witnessed_restore(checkpoints, index, restores)
        if continues is None:
            return restores, ChainProblem(
                checkpoint.seq,
                index + 1,
                "bad_restore",
                f"the restore marker signed at {checkpoint.signed_at} {why}: it is not the restore the"
                " signer marks (made with the signing key by someone else, or the witness lost lines)",
            )
        restores.append(Restore(index, checkpoint, continues))
    return restores, None


def _witnessed_restore(
    witnessed: Sequence[Checkpoint], index: int, earlier: Sequence[Restore]
) -> tuple[int | None, str]:
    """The index of the witnessed checkpoint the marker at index continues from, or None and why not."""
    marker = witnessed[index]
    mark = marker.restore
    assert mark is not None
    if index == 0:
        return None, "is the witness's first line"
    superseded = witnessed[index - 1]
    if (superseded.seq, superseded.signed_at, superseded.head_hash) != (
        mark.superseded_seq,
        mark.superseded_signed_at,
        mark.superseded_hash,
    ):
        return None, (
            f"supersedes the checkpoint of seq {mark.superseded_seq} signed at {mark.superseded_signed_at},"
            f" but the line before it is the one of seq {superseded.seq} signed at {superseded.signed_at}"
        )
    continues = next(
        (
            at
            for at in range(index - 2, -1, -1)
            if (witnessed[at].seq, witnessed[at].signed_at, witnessed[at].head_hash)
            == (mark.from_seq, mark.from_signed_at, mark.from_hash)
        ),
        None,
    )
    if continues is None:
        return None, (
            f"continues from a checkpoint of seq {mark.from_seq} signed at {mark.from_signed_at} that is not"
            " in the witness before the checkpoint it supersedes"
        )
    if any(superseded_by(restore, continues) for restore in earlier):
        return None, (
            f"continues from the checkpoint of seq {mark.from_seq} signed at {mark.from_signed_at}, which an"
            " earlier restore marker superseded"
        )
    top = named_top(witnessed[:index])
    if mark.lost_to < top:
        return None, f"names seqs up to {mark.lost_to} lost, but the witness named seq {top} before it"
    rolled_back = lanes_rolled_back(
        marker, {lane: lane_seq for lane, lane_seq, _, _ in checkpoint_lanes(witnessed[continues])}
    )
    if rolled_back is not None:
        return None, (
            f"signs lane {rolled_back[0]} at #{rolled_back[1]}, behind the checkpoint it continues from"
        )
    return continues, ""


def excused_before(restores: Sequence[Restore], index: int) -> Callable[[int], bool] | None:
    """For the checkpoint at index: whether a seq it signs may be missing from the records (a later valid
    marker names it lost); None when no marker comes after it."""
    later = [restore for restore in restores if restore.index > index]
    if not later:
        return None
    return lambda seq: any(restore.excuses(seq) for restore in later)


def loses_one_of(restores: Sequence[Restore], index: int, present: Iterable[tuple[int, int]]) -> bool:
    """Whether a record the database holds ((seq, lane) in present) is one that a marker at or before index
    names lost and did not keep: the marker at or before index that last names its seq lost decides (a later
    restore from an older backup keeps, in its own wider lost range, records an earlier one lost). Then the
    database is older than that marker: no checkpoint from it on describes it."""
    earlier = [restore for restore in restores if restore.index <= index]
    for seq, lane in present:
        fate = None
        for restore in earlier:
            if restore.excuses(seq):
                fate = restore.keeps(seq=seq, lane=lane)
        if fate is False:
            return True
    return False


def first_settled_after(
    witnessed: Sequence[Checkpoint], restores: Sequence[Restore], point: int, *, public_key: PublicKeys
) -> tuple[int, int] | None:
    """The first witnessed checkpoint after the restore point at index point that is settled and that no
    marker superseded, with the seq no record of a backup that lacks it can be above (its index, that seq):
    its own, or a marker's lost range's end (every record written after a marker is numbered past it).
    None when there is none.

    A backup that does not hold that checkpoint in full was taken before one of the records it signs was
    committed, and so before it was signed; a record numbered above it was given its seq after it was
    signed (it is settled), so no such backup holds one: a database holding both lost records by deletion,
    not by a restore."""
    for index in range(point + 1, len(witnessed)):
        checkpoint = witnessed[index]
        if any(superseded_by(restore, index) for restore in restores):
            continue
        if not checkpoint_is_settled(checkpoint=checkpoint, public_key=public_key):
            continue
        lost_to = checkpoint.restore.lost_to if checkpoint.restore is not None else 0
        return index, max(checkpoint.seq, lost_to)
    return None


def is_restore_at(restores: Sequence[Restore], index: int) -> bool:
    return any(restore.index == index for restore in restores)


def superseded_by(restore: Restore, index: int) -> bool:
    """Whether the witnessed checkpoint at index is one the marker supersedes: after the one it continues
    from, before it (its heads past the restore point no longer bind; nothing continues from it again)."""
    return restore.continues is not None and restore.continues < index < restore.index
