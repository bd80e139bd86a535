"""The offline verification of an audit export (its format: lab/audit/export_format.py) against the
auditor's pinned public key and, when given, the witness log and the record key; the command line is
`python -m lab.audit.verify` (lab/audit/verify.py). No Django, no database.

What is checked, and what cannot be
-----------------------------------
Every record's hash is recomputed; in its lane its lane_seq must be the next one and its prev_hash the hash
of the lane's previous record; seqs increase from line to line. A problem is named by seq (for a missing
record: the first seq after its lane's previous record that holds no record) and, for laned records, by
lane and lane_seq in the message. Every checkpoint must carry a valid Ed25519 signature by the PINNED key
(from the command line, never from the export; after a key rotation, ``--public-key`` once per key, the
current one first: each checkpoint is checked with the key its key_id names, or with the first key when it
names none of the others), the record of every lane head it signs must have the signed
hash, and the export must reach every lane head. Records after their lane's last checkpoint are refused
("unsigned_tail"). Because each lane links backwards, rewriting records *and* recomputing every later hash
of their lane is caught only by a checkpoint at or after the first rewritten record; and cutting a lane's
tail back to an earlier checkpoint *together with* the later checkpoints is only detectable against a later
checkpoint the auditor already holds. That is what the witness log is for:
with ``--witness`` every witnessed checkpoint must be signed by the pinned key and name a seq and hash still
in the export (a seq beyond its end is a truncation), every checkpoint of the export must be in the witness
(else the witness lost lines), consecutive witnessed checkpoints may be at most two ``--interval`` apart
(coverage) and the last one at most two intervals before ``--as-of`` (default: now; give the time the export
was made to verify an old export against a newer witness: a checkpoint witnessed after it signs nothing of
the export, and is only checked not to be dated ahead). And the backdating rule (backdating.BackdatingCheck):
a record first covered by witnessed checkpoint N+1, or by none yet, must have a seq above and a time not
before those of the last settled checkpoint at or before N (checkpoints.CHECKPOINT_FORMAT_SETTLED), else it is
named "backdated": it was written after that one and numbered or dated before it (a checkpoint signed as not
settled after a settled one is "bad_checkpoint_signature": the signer never signs one); and a time not
after N+1's signed_at when N+1 is
settled (covered by none: not after the auditor's clock now), else it is named "future_dated": it was dated
ahead of the clock. A witnessed checkpoint signed after the auditor's clock now is "future_dated" too.

After a database restore the witness holds a restore marker (a checkpoint line with a ``restore`` object:
``continues`` and ``supersedes`` name witnessed checkpoints by seq, signed_at and head_hash, ``lost`` the seqs
lost, ``by`` who ran it; signed under its own format tag, ``printlab.audit.restore.v1``). A valid one is
reported on the OK line ("restored at ..."); across it only the absence of records in its lost range is
excused, nothing else (lab/audit/restore_marks.py); one that does not name the line before it, or a checkpoint
before that, is "bad_restore". A marker the export holds and the witness copy lacks (its mail was lost) is
"witness_incomplete", naming it.

With ``--record-key`` (the lab's HMAC record key, when the auditor has been given it) every record's mac is
checked as well, so a record rewritten or inserted by someone without the key is named exactly; without it,
a rewrite is located between the last witnessed checkpoint that still matches and the first that does not.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lab.audit.backdating import BackdatingCheck, future_checkpoint_problem
from lab.audit.canonical import GENESIS_HASH
from lab.audit.chain_checks import verify_checkpoints
from lab.audit.chain_walk import VerifyResult, walk_chain
from lab.audit.checkpoints import Checkpoint, checkpoint_lanes, checkpoint_signature_is_valid
from lab.audit.export_format import checkpoints_path, export_entries, read_checkpoints
from lab.audit.keys import PublicKeys
from lab.audit.problems import ChainProblem, problem_rank
from lab.audit.restore_marks import Restore, restores_in
from lab.audit.witness_check import check_witness, parse_timestamp

_READ_BUFFER_BYTES = 1 << 20
DEFAULT_INTERVAL_SECONDS = 3600


@dataclass(frozen=True)
class WitnessOptions:
    """The witness log to check an export against, and the schedule it must keep."""

    path: Path
    as_of: datetime
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS


@dataclass(frozen=True)
class ExportVerification:
    """The outcome for one export: the record walk, the checkpoints read, the first problem with the file
    its line number refers to, and the witnessed checkpoints it was checked against (signed by --as-of)."""

    records: VerifyResult
    checkpoints: tuple[Checkpoint, ...]
    problem: ChainProblem | None
    problem_path: Path | None
    witnessed: tuple[Checkpoint, ...] = ()
    restores: tuple[Restore, ...] = ()  # the restore markers the log went through (reported, not problems)

    @property
    def is_intact(self) -> bool:
        return self.problem is None


def verify_export(
    *,
    export_path: Path,
    public_key: PublicKeys,
    checkpoints_file: Path | None = None,
    witness: WitnessOptions | None = None,
    record_key: bytes | None = None,
) -> ExportVerification:
    """Verify an export against the pinned public key (and the witness log, and the record key, when given);
    raises OSError when a file cannot be read."""
    checkpoint_path = checkpoints_file if checkpoints_file is not None else checkpoints_path(export_path)
    empty = VerifyResult(count=0, head_seq=0, head_hash=GENESIS_HASH, problem=None)
    checkpoints, checkpoint_problem = read_checkpoints(checkpoint_path)
    if checkpoint_problem is not None:
        return ExportVerification(empty, tuple(checkpoints), checkpoint_problem, checkpoint_path)
    witnessed: list[Checkpoint] = []
    in_scope: list[Checkpoint] = []
    backdating = None
    if witness is not None:
        witnessed, witness_problem = read_checkpoints(witness.path)
        if witness_problem is not None:
            return ExportVerification(empty, tuple(checkpoints), witness_problem, witness.path)
        in_scope = _in_scope(witnessed, witness.as_of)
        backdating = BackdatingCheck(in_scope, public_key=public_key, now=_clock_bound(witness.as_of))
    heads: dict[int, str] = {}
    # What signs the export: its own checkpoints and those witnessed by --as-of. A checkpoint witnessed after
    # it signs nothing of an export made then: counted, an old export with records made up past its last
    # checkpoint passed as signed by the newer witness lines of the real ones.
    signing = [*checkpoints, *in_scope]
    restores = _restores(checkpoints, in_scope if witness is not None else None, public_key)
    signed_positions: dict[int, int] = {}
    wanted = {checkpoint.seq for checkpoint in signing}
    # A lane's positions start again at a restore marker (its records after it are new ones, at positions a
    # superseded checkpoint signed for records now lost): only the last marker and what was signed after it
    # say how far each lane is signed (the marker signs every record the restore kept).
    since = max((restore.marker.signed_at for restore in restores), default="")
    for checkpoint in signing:
        for lane, lane_seq, seq, _ in checkpoint_lanes(checkpoint):
            if checkpoint.signed_at >= since:
                signed_positions[lane] = max(signed_positions.get(lane, 0), lane_seq)
            wanted.add(seq)
    with export_path.open("rb", buffering=_READ_BUFFER_BYTES) as records_file:
        result = walk_chain(
            export_entries(records_file, record_key=record_key, backdating=backdating),
            heads_wanted=frozenset(wanted),
            heads=heads,
            signed_positions=signed_positions,
        )
    problem, is_in_checkpoints = _first_problem(result, checkpoints, heads, public_key)
    problem_path = None if problem is None else checkpoint_path if is_in_checkpoints else export_path
    if witness is not None:
        witness_problem = _witness_problem(
            export_path, result, witnessed, checkpoints, heads, public_key, witness
        )
        if witness_problem is not None and _comes_first(witness_problem, problem):
            problem, problem_path = witness_problem, witness.path
    if backdating is not None:
        backdating.finish()
    if (
        backdating is not None
        and backdating.problem is not None
        and _comes_first(backdating.problem, problem)
    ):
        problem, problem_path = backdating.problem, export_path
    # Named before a coverage_gap or stale_witness (the signer's liveness), which hid records appended past
    # every signature; a problem of the records, checkpoints or witness lines still comes first: a record
    # broken within the tail is named as it is, not as unsigned.
    unsigned = _unsigned_problem(result, signing)
    if unsigned is not None and (problem is None or problem_rank(problem) > problem_rank(unsigned)):
        problem, problem_path = unsigned, export_path
    return ExportVerification(
        result, tuple(checkpoints), problem, problem_path, tuple(in_scope), tuple(restores)
    )


def _restores(
    checkpoints: Sequence[Checkpoint], witnessed: Sequence[Checkpoint] | None, public_key: PublicKeys
) -> list[Restore]:
    """The restore markers the export went through: the witness's valid ones when a witness is given (it
    holds what they name), else those of the export's checkpoints file whose signature holds."""
    if witnessed is not None:
        return restores_in(witnessed, public_key=public_key, is_witness=True)[0]
    return restores_in(checkpoints, public_key=public_key)[0]


def _comes_first(candidate: ChainProblem, current: ChainProblem | None) -> bool:
    if current is None:
        return True
    if problem_rank(candidate) != problem_rank(current):
        return problem_rank(candidate) < problem_rank(current)
    if candidate.seq is None or current.seq is None:
        return False
    return candidate.seq < current.seq


def _witness_problem(
    export_path: Path,
    result: VerifyResult,
    witnessed: Sequence[Checkpoint],
    checkpoints: Sequence[Checkpoint],
    heads: Mapping[int, str],
    public_key: PublicKeys,
    witness: WitnessOptions,
) -> ChainProblem | None:
    as_of = witness.as_of
    in_scope = _in_scope(witnessed, as_of)
    # Left out of scope by an as_of in the past, a checkpoint is still never signed after the clock now.
    future = future_checkpoint_problem(witnessed, now=_clock_bound(as_of))
    if future is not None:
        return future
    return check_witness(
        in_scope,
        public_key=public_key,
        heads=heads,
        head_seq=result.head_seq,
        first_record_at=_first_record_at(export_path) if result.count else None,
        now=as_of,
        interval_seconds=witness.interval_seconds,
        known=[
            c
            for c in checkpoints
            if parse_timestamp(c.signed_at) <= as_of
            and checkpoint_signature_is_valid(checkpoint=c, public_key=public_key)
        ],
        # Past a broken record nothing is known: only what the walk verified can be compared.
        is_chain_whole=result.problem is None,
        lane_heads=result.lanes,
        absent=result.absent,
    )


def _clock_bound(as_of: datetime) -> datetime:
    """What nothing may be timed after: the auditor's clock now (or a later --as-of); a record or checkpoint
    timed after it is "future_dated". An --as-of in the past still bounds freshness, not this."""
    return max(as_of, datetime.now(UTC))


def _in_scope(witnessed: Sequence[Checkpoint], as_of: datetime) -> list[Checkpoint]:
    """A checkpoint signed after as_of is of no concern to an export made before it."""
    return [c for c in witnessed if parse_timestamp(c.signed_at) <= as_of]


def _first_record_at(export_path: Path) -> str | None:
    with export_path.open("rb") as records_file:
        first = records_file.readline()
    try:
        value = json.loads(first).get("occurred_at")
    except (ValueError, RecursionError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _first_problem(
    result: VerifyResult,
    checkpoints: Sequence[Checkpoint],
    heads: dict[int, str],
    public_key: PublicKeys,
) -> tuple[ChainProblem | None, bool]:
    """The earlier (by seq) of the record problem and a checkpoint problem, and whether it is the latter."""
    records_problem = result.problem
    if records_problem is None:
        found = verify_checkpoints(
            checkpoints,
            public_key=public_key,
            heads=heads,
            head_seq=result.head_seq,
            lane_heads=result.lanes,
            absent=result.absent,
        )
        return found, found is not None
    # Past a broken record nothing is known, so only the checkpoints up to the last good seq are checked.
    covered = itertools.takewhile(lambda checkpoint: checkpoint.seq <= result.head_seq, checkpoints)
    found = verify_checkpoints(covered, public_key=public_key, heads=heads)
    if found is None or found.seq is None or records_problem.seq is None or found.seq >= records_problem.seq:
        return records_problem, False
    return found, True


def _unsigned_problem(result: VerifyResult, checkpoints: Sequence[Checkpoint]) -> ChainProblem | None:
    if not checkpoints:
        return ChainProblem(
            result.first_seq,
            1 if result.count else None,
            "unsigned_tail",
            "the checkpoints file holds no checkpoint: nothing in this export is signed",
        )
    if result.first_unsigned is None:
        return None
    seq, line, lane, lane_seq = result.first_unsigned
    if not result.laned:
        last_signed = max(checkpoint.seq for checkpoint in checkpoints)
        return ChainProblem(
            seq,
            line,
            "unsigned_tail",
            f"seqs {last_signed + 1}..{result.head_seq} come after the last checkpoint (seq {last_signed})"
            " and are not covered by any signature: appended, or the signer refused to sign them",
        )
    return ChainProblem(
        seq,
        line,
        "unsigned_tail",
        f"seq {seq} (lane {lane} #{lane_seq}) comes after the last checkpoint of lane {lane}: neither it nor"
        " any later record of that lane is covered by a signature: appended, or the signer refused to sign",
        lane,
    )
