"""Exporting the audit chain (`manage.py audit_export`, the auditor console): the records and checkpoints the
database holds, up to the checkpoint that signs the export (the format: lab/audit/export_format.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, transaction

from lab.audit.auditor_mail import _alert
from lab.audit.checkpoint_rows import _as_checkpoint, _stored_checkpoints
from lab.audit.checkpoints import Checkpoint, checkpoint_lanes
from lab.audit.export_format import write_export
from lab.audit.models import AuditCheckpoint
from lab.audit.problems import ChainProblem
from lab.audit.reading import records_in_seq_order
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.audit.signer import AuditChainBroken, audit_chain_check, checkpoint_write

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOutcome:
    path: Path
    records: int
    checkpoints: int
    problem: ChainProblem | None  # why the export could not be recorded or signed, if it could not


def audit_export(
    *, path: Path, actor_id: str | None, actor_role: str, meta: RequestMeta | None = None
) -> ExportOutcome:
    """Write the chain and the checkpoints the database holds, up to the checkpoint that signs the export: the
    export itself is recorded and then signed. When the chain is broken (e.g. a forged record holds the next
    seq) the whole chain is still written, unsigned past the last good checkpoint, and the problem is
    returned."""
    # Nothing is appended to a chain that fails the signer's check: the export shows it as it was found.
    signed: AuditCheckpoint | None = None
    # A checkpoint row that cannot be read is left out of the export, which is then not signed either.
    problem = audit_chain_check() or _stored_checkpoints(AuditCheckpoint.objects.all())[1]
    if problem is not None:
        _alert(problem)
    else:
        try:
            with transaction.atomic():
                audit_append(
                    Entry(
                        action="audit.export",
                        actor_id=actor_id,
                        actor_role=actor_role,
                        outcome="done",
                        rule="auditor_export",
                        purpose="audit",
                        meta=meta or RequestMeta(),
                    )
                )
        except DatabaseError:
            # E.g. a record forged since the check holds the next seq; the signer below names it.
            logger.error("audit export could not be recorded: the chain's next seq is taken")
        try:
            signed = checkpoint_write(reason="export")
        except AuditChainBroken as broken:
            problem = broken.problem
    rows = AuditCheckpoint.objects.all()
    # Signed, the export ends at the checkpoint it just signed: the records appended since (while the signer
    # walked, wrote the witness and mailed it) and the checkpoints signed since are the next export's; in it,
    # no checkpoint covered them and the offline verifier named them an unsigned tail.
    covered = _covered_by(_as_checkpoint(signed)) if signed is not None else None
    checkpoints, rows_problem = _stored_checkpoints(rows.filter(pk__lte=signed.pk) if signed else rows)
    problem = problem or rows_problem
    written = 0

    def counted() -> Iterator[dict[str, object]]:
        nonlocal written
        for record in records_in_seq_order(as_found=True):
            # As found, nothing is Unreadable; the guard is for the type checker.
            if isinstance(record, dict) and (covered is None or covered(record)):
                written += 1
                yield record

    write_export(path=path, records=counted(), checkpoints=checkpoints)
    return ExportOutcome(path=path, records=written, checkpoints=len(checkpoints), problem=problem)


def _covered_by(checkpoint: Checkpoint) -> Callable[[Mapping[str, object]], bool]:
    """Whether a record (as records_in_seq_order gives it) is at or below the head the checkpoint signs of
    its lane; a record from before lanes is in lane 1, up to its head's seq."""
    heads = {lane: (position, seq) for lane, position, seq, _ in checkpoint_lanes(checkpoint)}

    def covered(record: Mapping[str, object]) -> bool:
        if "lane_seq" not in record:
            return 1 in heads and int(str(record["seq"])) <= heads[1][1]
        head = heads.get(int(str(record["lane"])))
        return head is not None and int(str(record["lane_seq"])) <= head[0]

    return covered
