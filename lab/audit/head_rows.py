"""Each lane's head row (audit_audithead: the position and hash the next record of the lane chains from)
against the last record a walk of the chain verified in that lane. The signer checks them before it signs,
`audit_verify` after its walk: a head row rewritten, reset below its records, or left pointing past records
deleted behind the triggers' back is `head_mismatch`, named at the seq it concerns."""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Q, QuerySet

from lab.audit.canonical import GENESIS_HASH
from lab.audit.lane_heads import LaneHead
from lab.audit.models import AuditHead, AuditRecord
from lab.audit.problems import ChainProblem


def head_rows_problem(walked: Mapping[int, LaneHead]) -> ChainProblem | None:
    """The first lane (by id) whose head row disagrees with `walked`, the last record verified per lane.
    Read after the walk: a record and its lane's head move commit together, so a head is at or past every
    genuine record the walk saw in its lane; past it only by records committed since, which must be there."""
    for lane, position, head_hash in AuditHead.objects.order_by("id").values_list("id", "seq", "hash"):
        problem = _head_problem(lane, position, head_hash, walked.get(lane))
        if problem is not None:
            return problem
    return None


def _head_problem(lane: int, position: int, head_hash: str, walked: LaneHead | None) -> ChainProblem | None:
    """The head row of a lane against the last record the walk verified in it."""
    walked_position, walked_seq, walked_hash = (
        (walked[1], walked[2], walked[3]) if walked else (0, 0, GENESIS_HASH)
    )
    if position == walked_position and head_hash != walked_hash:
        return ChainProblem(
            walked_seq or None,
            None,
            "head_mismatch",
            f"lane {lane}'s head row does not hold the hash of its record #{position} (seq {walked_seq}):"
            " the head row was changed",
            lane,
        )
    if position < walked_position or (
        position > walked_position and not lane_records(lane).filter(lane_seq=walked_position + 1).exists()
    ):
        return ChainProblem(
            walked_seq + 1,
            None,
            "head_mismatch",
            f"lane {lane}'s head row says #{position} but its records end at #{walked_position}"
            f" (seq {walked_seq}): the head row was reset or the records after seq {walked_seq} were removed",
            lane,
        )
    return None


def lane_records(lane: int) -> QuerySet[AuditRecord]:
    """The records of a lane; lane 1 includes the records from before lanes."""
    if lane == 1:
        return AuditRecord.objects.filter(Q(lane=1) | Q(lane_seq__isnull=True))
    return AuditRecord.objects.filter(lane=lane, lane_seq__isnull=False)
