"""Verifying the audit log from the database (`manage.py audit_verify`): every record's hash and mac, every
checkpoint row, each lane's head row, and the chain against the witness log; the first problem found is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings

from lab.audit.backdating import BackdatingCheck
from lab.audit.canonical import GENESIS_HASH
from lab.audit.chain_checks import verify_checkpoints, verify_records
from lab.audit.checkpoint_rows import _stored_checkpoints
from lab.audit.checkpoints import Checkpoint, checkpoint_lanes, checkpoint_signature_is_valid
from lab.audit.configured import key_ring, record_key, witness_sink
from lab.audit.head_rows import head_rows_problem
from lab.audit.keys import KeyRing
from lab.audit.models import AuditCheckpoint, AuditRecord
from lab.audit.problems import ChainProblem, problem_rank
from lab.audit.reading import first_record_time, records_in_seq_order
from lab.audit.restore_marks import Restore, restores_in
from lab.audit.settling import RecordWatch
from lab.audit.witness import FileWitness
from lab.audit.witness_check import check_witness
from lab.lib.clock import database_now


@dataclass(frozen=True)
class DatabaseVerification:
    count: int
    head_seq: int
    checkpoints: int
    problem: ChainProblem | None
    witnessed: int = 0
    lanes: int = 0  # lanes holding records
    restores: tuple[Restore, ...] = ()  # the restore markers the log went through (reported, not problems)


def audit_verify_database(
    *,
    pinned_public_key: Ed25519PublicKey | None = None,
    witness_path: Path | None = None,
    now: datetime | None = None,
) -> DatabaseVerification:
    """Recompute the whole chain with every record's mac, every checkpoint, and the chain against the witness
    log (the configured one, or witness_path: an auditor's copy); name the first broken seq or range.
    now: what the witness's freshness is judged at; by default the database's clock, which records and
    checkpoints are timed on, whatever this host's clock says."""
    key = key_ring(pinned_public_key)
    witness = FileWitness(witness_path) if witness_path is not None else witness_sink()
    # The checkpoint rows, then the witness (which must then hold them all), then the records: every head
    # they sign was committed before them, so the walk, which reads the records as they are when it starts,
    # holds it; a checkpoint signed during a long walk is left out, not taken for a truncation. The records
    # after the last checkpoint read are then the unsigned tail of a live log. The witness is also what the
    # backdating rule judges by (a record no checkpoint of it covers is judged against its last one), and
    # its freshness is judged when it was read.
    rows, rows_problem = _stored_checkpoints(AuditCheckpoint.objects.all())
    witnessed, witness_read_problem = witness.read_all()
    return database_verification(
        rows=rows,
        rows_problem=rows_problem,
        witnessed=witnessed,
        witness_read_problem=witness_read_problem,
        key=key,
        judged_at=now or database_now(),
    )


def database_verification(
    *,
    rows: list[Checkpoint],
    rows_problem: ChainProblem | None,
    witnessed: list[Checkpoint],
    witness_read_problem: ChainProblem | None,
    key: KeyRing,
    judged_at: datetime,
) -> DatabaseVerification:
    """audit_verify_database on checkpoint rows and witness lines read before (lab/audit/restoring.py also
    checks a restore marker it has not appended yet this way)."""
    records = RecordWatch(BackdatingCheck(witnessed, public_key=key))
    result = verify_records(records.watch(records_in_seq_order()), record_key=record_key())
    wanted = {checkpoint.seq for checkpoint in [*rows, *witnessed]}
    wanted.update(head[2] for checkpoint in [*rows, *witnessed] for head in checkpoint_lanes(checkpoint))
    heads = dict(AuditRecord.objects.filter(seq__in=wanted).values_list("seq", "hash"))
    heads[0] = GENESIS_HASH
    last_good = result.head_seq
    is_whole = result.problem is None
    checkpoint_problem = verify_checkpoints(
        [c for c in rows if is_whole or c.seq <= last_good],
        public_key=key,
        heads=heads,
        head_seq=None if not is_whole else last_good,
        lane_heads=result.lanes if is_whole else None,
        absent=result.absent,
    )
    problems = [result.problem, records.problem, checkpoint_problem, rows_problem, witness_read_problem]
    if is_whole:
        # Each lane's head row (what the next record chains from) against the walk's last record of it: a
        # head row rewritten or reset is found now, not only when the signer next refuses to sign.
        problems.append(head_rows_problem(result.lanes))
    if witness_read_problem is None:
        problems.append(
            check_witness(
                witnessed,
                public_key=key,
                heads=heads,
                head_seq=last_good,
                first_record_at=first_record_time(),
                now=judged_at,
                interval_seconds=settings.AUDIT_CHECKPOINT_SECONDS,
                known=[c for c in rows if checkpoint_signature_is_valid(checkpoint=c, public_key=key)],
                is_chain_whole=is_whole,
                lane_heads=result.lanes,
                absent=result.absent,
            )
        )
    restores = (
        restores_in(witnessed, public_key=key, is_witness=True)[0] if witness_read_problem is None else []
    )
    return DatabaseVerification(
        result.count,
        result.head_seq,
        len(rows),
        _first(problems),
        len(witnessed),
        len(result.lanes),
        tuple(restores),
    )


def _first(problems: list[ChainProblem | None]) -> ChainProblem | None:
    """A problem of the log's integrity before one of the signer's liveness (problem_rank: a
    coverage_gap one lost checkpoint left must not hide a later deletion or rewrite), then the one at the
    lowest seq; on a tie (or no seq), the one found first (records before checkpoints before the witness)."""
    found = [problem for problem in problems if problem is not None]
    if not found:
        return None
    return min(
        found,
        key=lambda problem: (problem_rank(problem), problem.seq if problem.seq is not None else -1),
    )
