"""The checkpoint rows the database keeps: storing a signed (and witnessed) checkpoint, and reading the rows
back as checkpoints, leaving out (and naming) a row that cannot be read.
"""

from __future__ import annotations

import json

from django.db.models import QuerySet

from lab.audit.canonical import encode_canonical
from lab.audit.checkpoints import Checkpoint, RestoreMark
from lab.audit.lane_heads import lanes_from_json, lanes_to_json
from lab.audit.models import AuditCheckpoint
from lab.audit.problems import ChainProblem


def _as_checkpoint(row: AuditCheckpoint) -> Checkpoint:
    """The row as a checkpoint; ValueError when its lanes are not a checkpoint's lanes in JSON, or its restore
    not a restore marker's mark."""
    try:
        lanes = lanes_from_json(json.loads(row.lanes)) if row.lanes else ()
        restore = RestoreMark.from_json(json.loads(row.restore)) if row.restore else None
    except RecursionError as error:  # brackets nested too deeply
        raise ValueError(str(error)) from error
    if restore is not None and not lanes:
        raise ValueError("a restore marker signs lane heads")
    return Checkpoint(
        seq=row.seq,
        head_hash=row.head_hash,
        signed_at=row.signed_at,
        key_id=row.key_id,
        signature=row.signature,
        lanes=lanes,
        restore=restore,
    )


def checkpoint_store(checkpoint: Checkpoint, *, reason: str) -> AuditCheckpoint:
    """Store a signed (and witnessed) checkpoint as a row."""
    return AuditCheckpoint.objects.create(
        seq=checkpoint.seq,
        head_hash=checkpoint.head_hash,
        signed_at=checkpoint.signed_at,
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
        reason=reason,
        lanes=lanes_to_json(checkpoint.lanes),
        restore=encode_canonical(checkpoint.restore.to_json()) if checkpoint.restore is not None else "",
    )


def _stored_checkpoints(
    rows: QuerySet[AuditCheckpoint],
) -> tuple[list[Checkpoint], ChainProblem | None]:
    """The checkpoint rows in pk order as checkpoints, leaving out those that cannot be read, and the problem
    of the first of these: a row the app's role inserted with junk for lanes crashed every verification and
    export for good, since rows can be inserted but not deleted by it."""
    checkpoints: list[Checkpoint] = []
    problem: ChainProblem | None = None
    for line, row in enumerate(rows.order_by("pk"), start=1):
        try:
            checkpoints.append(_as_checkpoint(row))
        except ValueError as error:
            problem = problem or ChainProblem(
                row.seq,
                line,
                "malformed",
                f"checkpoint row {row.pk} (seq {row.seq}, signed at {row.signed_at!r}): its lanes are not a"
                f" checkpoint's ({error}): the signer did not store it",
            )
    return checkpoints, problem
