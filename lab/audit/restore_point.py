"""Where a database restored from a backup stands against the witness: the last witnessed checkpoint it holds
in full (the restore point), and a deletion past it that no restore leaves (RecordsDeleted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Q

from lab.audit.checkpoints import Checkpoint, checkpoint_lanes, checkpoint_signature_is_valid
from lab.audit.keys import KeyRing
from lab.audit.lane_heads import LaneHead
from lab.audit.models import AuditRecord
from lab.audit.restore_marks import Restore, first_settled_after, loses_one_of, superseded_by


def restore_point_in_database(
    witnessed: Sequence[Checkpoint], restores: Sequence[Restore], key: KeyRing
) -> int | None:
    """The index of the last witnessed checkpoint the database holds in full (every lane head it signs, with
    the signed hash), among those no restore marker superseded and none at or after a marker that names lost a
    record the database holds (and no marker after it, up to that checkpoint, kept: a backup older than that
    marker, restored again); None: none."""
    lost = [restore.mark for restore in restores]
    present: list[tuple[int, int]] = []
    if lost:
        in_lost = Q()
        for mark in lost:
            in_lost |= Q(seq__range=(mark.lost_from, mark.lost_to))
        rows = AuditRecord.objects.filter(in_lost).values_list("seq", "lane", "lane_seq")
        present = [(seq, lane if lane_seq is not None else 1) for seq, lane, lane_seq in rows]
    for index in range(len(witnessed) - 1, -1, -1):
        checkpoint = witnessed[index]
        if any(superseded_by(restore, index) for restore in restores):
            continue
        if loses_one_of(restores, index, present):
            continue
        heads = checkpoint_lanes(checkpoint)
        if not heads or not checkpoint_signature_is_valid(checkpoint=checkpoint, public_key=key):
            continue
        stored = dict(
            AuditRecord.objects.filter(seq__in=[head[2] for head in heads]).values_list("seq", "hash")
        )
        if all(stored.get(seq) == head_hash for _, _, seq, head_hash in heads):
            return index
    return None


@dataclass(frozen=True)
class RecordsDeleted:
    """What no restore leaves: the database lacks records of a witnessed checkpoint after the restore point
    (restore_marks.first_settled_after) yet holds a record numbered after it was signed."""

    checkpoint: Checkpoint
    floor: int  # the seq no record of a backup lacking it can be above
    missing: LaneHead | None  # a lane head it signs that the database does not hold with its hash
    record_seq: int  # the first record the database holds above floor

    @property
    def message(self) -> str:
        checkpoint = self.checkpoint
        what = "restore marker" if checkpoint.restore is not None else "checkpoint"
        lacks = (
            f"lacks lane {self.missing[0]} #{self.missing[1]} (seq {self.missing[2]}), which the witnessed"
            f" {what} of seq {checkpoint.seq} signed at {checkpoint.signed_at} signs"
            if self.missing is not None
            else f"holds records the witnessed {what} of seq {checkpoint.seq} signed at"
            f" {checkpoint.signed_at} names lost (a backup from before it)"
        )
        return (
            f"the database {lacks}, yet holds seq {self.record_seq}, numbered after that was signed (above"
            f" {self.floor}): no backup holds records written after a checkpoint whose records it lacks:"
            " records were deleted"
        )


def deleted_past(
    witnessed: Sequence[Checkpoint], restores: Sequence[Restore], point: int, key: KeyRing
) -> RecordsDeleted | None:
    """The deletion the database shows past the restore point at index point (RecordsDeleted), or None."""
    later = first_settled_after(witnessed, restores, point, public_key=key)
    if later is None:
        return None
    index, floor = later
    above = AuditRecord.objects.filter(seq__gt=floor).order_by("seq").values_list("seq", flat=True).first()
    if above is None:
        return None
    checkpoint = witnessed[index]
    heads = checkpoint_lanes(checkpoint)
    stored = dict(AuditRecord.objects.filter(seq__in=[head[2] for head in heads]).values_list("seq", "hash"))
    missing = next((head for head in heads if stored.get(head[2]) != head[3]), None)
    return RecordsDeleted(checkpoint, floor, missing, above)
