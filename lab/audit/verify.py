"""The audit export format and its offline verifier:
`python -m lab.audit.verify EXPORT --public-key KEY [--witness CHECKPOINTS.jsonl] [--record-key KEY]`.
Needs only the export files, the auditor's pinned public key and (strongly advised) the auditor's copy of the
witness log: no Django, no database. The same command verifies a customer's signed privacy receipt:
`python -m lab.audit.verify --receipt RECEIPT.json --public-key KEY [--witness CHECKPOINTS.jsonl]`
(format and checks in lab/audit/receipt.py).

Export format
-------------
An export is two UTF-8 files side by side:

``EXPORT`` (e.g. ``audit-2026-05-09.jsonl``)
    The records, one per line, each line the canonical JSON object (see lab/audit/canonical.py: keys sorted,
    no whitespace, non-ASCII as UTF-8, ``null`` kept) of exactly the fields RECORD_FIELDS_LANED (every record
    written since lanes: with ``lane`` and ``lane_seq``) or RECORD_FIELDS (a record from before lanes) plus
    ``hash`` and ``mac`` (64 hex digits each), ending in ``\\n``. Lines are in increasing seq order; an
    export always holds the whole log: every lane from its first record (lane_seq 1, prev_hash 64 zeros) with
    no gap in lane_seq, and the records from before lanes as seqs 1, 2, 3... of lane 1. seq itself may skip
    numbers (a writer that rolled back). Anything else on a line (extra or missing keys, other whitespace,
    ``\\r``, other escapes, wrong value types) is reported as malformed.

``EXPORT`` with its last suffix replaced by ``.checkpoints.jsonl`` (``audit-2026-05-09.checkpoints.jsonl``)
    The checkpoints, one canonical JSON object per line with keys head_hash, key_id, lanes, seq, signature,
    signed_at (lanes: [lane, lane_seq, seq, hash] of every lane's head; a checkpoint from before lanes has no
    lanes and signs seq/head_hash of lane 1), in the order they were signed (seq never decreases, nor does
    any lane's lane_seq). The exporter signs a checkpoint of the heads at export time as the last line, so
    every record is covered by a signature; it holds every checkpoint the database has, also those past a
    head the exporter refused to sign.

The witness log (``--witness``) has the same format: the lab's signer appends every checkpoint to it outside
the database (lab/audit/witness.py) and may mail each line to the auditors, who keep their own copy.

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
"witness_incomplete", naming it. A receipt whose audit record a marker names lost (and did not keep) is
reported "LOST", neither OK nor TAMPERED.

With ``--record-key`` (the lab's HMAC record key, when the auditor has been given it) every record's mac is
checked as well, so a record rewritten or inserted by someone without the key is named exactly; without it,
a rewrite is located between the last witnessed checkpoint that still matches and the first that does not.

Exit status: 0 intact (one summary line), 1 a problem (the first one: kind, seq, file and line), 2 the
export or a key could not be read or a key does not have a --fingerprint given (with --fingerprint, every
key given must be pinned). For a receipt checked against a witness, 3 and a line starting "LOST:" when the
receipt is genuine but a restore marker names its audit record lost (the lab's database was restored from a
backup taken before the record was written).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lab.audit.backdating import BackdatingCheck, future_checkpoint_problem
from lab.audit.canonical import (
    EXPORT_FIELDS,
    EXPORT_FIELDS_LANED,
    GENESIS_HASH,
    NULLABLE_FIELDS,
    export_line,
    is_laned,
    record_type_error,
)
from lab.audit.chain_checks import verify_checkpoints
from lab.audit.chain_walk import ChainEntry, Malformed, VerifyResult, walk_chain
from lab.audit.checkpoints import Checkpoint, checkpoint_lanes, checkpoint_signature_is_valid
from lab.audit.keys import KeyRing, PublicKeys, load_public_key, load_record_key, public_key_fingerprint
from lab.audit.problems import ChainProblem, problem_rank
from lab.audit.receipt import receipt_parse, receipt_summary, verify_receipt
from lab.audit.restore_marks import Restore, restores_in
from lab.audit.witness import read_checkpoint_file
from lab.audit.witness_check import check_witness, parse_timestamp

_READ_BUFFER_BYTES = 1 << 20
_HASH_MEMBER = b'"hash":"'
_MAC_MEMBER = b'"mac":"'
# '"hash":"' + 64 hex digits + '",' and '"mac":"' + 64 hex digits + '",': the bytes cut out of a canonical
# export line to get the hashed bytes (mac sorts after hash and before occurred_at, so both end in a comma).
_HASH_MEMBER_LENGTH = len(_HASH_MEMBER) + 64 + 2
_MAC_MEMBER_LENGTH = len(_MAC_MEMBER) + 64 + 2
DEFAULT_INTERVAL_SECONDS = 3600
# A genuine receipt whose audit record a database restore lost ("LOST": lab/audit/receipt.py).
RECEIPT_LOST_STATUS = 3


def checkpoints_path(export_path: Path) -> Path:
    """Where the checkpoints of a records file live: its last suffix replaced by .checkpoints.jsonl."""
    return export_path.with_suffix(".checkpoints.jsonl")


def write_export(
    *, path: Path, records: Iterable[Mapping[str, object]], checkpoints: Iterable[Checkpoint]
) -> Path:
    """Write records (in seq order) and checkpoints in the export format; returns the checkpoints path."""
    target = checkpoints_path(path)
    with path.open("w", encoding="utf-8", newline="\n") as records_file:
        records_file.writelines(export_line(record) + "\n" for record in records)
    with target.open("w", encoding="utf-8", newline="\n") as checkpoints_file:
        checkpoints_file.writelines(checkpoint.to_line() + "\n" for checkpoint in checkpoints)
    return target


def read_checkpoints(path: Path) -> tuple[list[Checkpoint], ChainProblem | None]:
    """All checkpoints of a checkpoints file, or those before the first malformed line and its problem."""
    return read_checkpoint_file(path)


def _allowed_export_shapes() -> frozenset[tuple[type, ...]]:
    """Value types of an export line's fields in sorted-key order, for every legal null/str mix, in both
    formats (records from before lanes, and laned records)."""
    shapes: set[tuple[type, ...]] = set()
    for fields in (EXPORT_FIELDS, EXPORT_FIELDS_LANED):
        options = [
            (int,)
            if name in ("seq", "lane", "lane_seq")
            else (str, type(None))
            if name in NULLABLE_FIELDS
            else (str,)
            for name in sorted(fields)
        ]
        shapes.update(itertools.product(*options))
    return frozenset(shapes)


def export_entries(
    lines: Iterable[bytes], *, record_key: bytes | None = None, backdating: BackdatingCheck | None = None
) -> Iterator[ChainEntry | Malformed]:
    """Parse export lines into chain entries. This is the hot loop of a million-record verification: one
    json parse, one canonical re-encode (which also proves the line canonical), one sha256 per line and,
    with record_key, one HMAC; with backdating (a witness was given), every well-formed record is shown to
    it too."""
    loads = json.loads
    encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
    sha256 = hashlib.sha256
    digest = hmac.digest
    compare = hmac.compare_digest
    export_keys = frozenset(EXPORT_FIELDS)
    laned_keys = frozenset(EXPORT_FIELDS_LANED)
    shapes = _allowed_export_shapes()
    for line_number, line in enumerate(lines, start=1):
        raw = line[:-1] if line[-1:] == b"\n" else line
        try:
            text = raw.decode("utf-8")
            record = loads(text)
            is_canonical = type(record) is dict and encode(record) == text
        except (ValueError, RecursionError) as error:  # RecursionError: brackets nested too deeply
            yield Malformed(line_number, f"not a JSON line: {error}")
            continue
        keys = record.keys() if is_canonical else None
        laned = keys == laned_keys
        if not (
            (laned or keys == export_keys)
            and tuple(map(type, record.values())) in shapes
            and len(record["mac"]) == 64
            and (not laned or (record["lane"] >= 1 and record["lane_seq"] >= 1))
        ):
            yield Malformed(line_number, _describe_bad_line(record))
            continue
        # The line is canonical, so the hashed bytes are the line without its hash and mac members. A hash
        # value that is not 64 plain characters makes this cut wrong, but then it cannot equal the computed
        # digest either, so it is still reported as a mismatch.
        cut = raw.find(_HASH_MEMBER)
        mac_at = raw.find(_MAC_MEMBER, cut)
        hashed = raw[:cut] + raw[cut + _HASH_MEMBER_LENGTH : mac_at] + raw[mac_at + _MAC_MEMBER_LENGTH :]
        is_authentic = record_key is None or compare(
            digest(record_key, hashed, "sha256").hex(), record["mac"]
        )
        if backdating is not None:
            backdating.see(
                seq=record["seq"],
                lane=record["lane"] if laned else 1,
                lane_seq=record["lane_seq"] if laned else record["seq"],
                occurred_at=record["occurred_at"],
                line=line_number,
            )
        if laned:
            yield (
                line_number,
                record["seq"],
                record["prev_hash"],
                record["hash"],
                sha256(hashed).hexdigest(),
                is_authentic,
                record["lane"],
                record["lane_seq"],
            )
        else:
            yield (
                line_number,
                record["seq"],
                record["prev_hash"],
                record["hash"],
                sha256(hashed).hexdigest(),
                is_authentic,
            )


def _describe_bad_line(record: object) -> str:
    if type(record) is not dict:
        return f"a JSON {type(record).__name__}, not an object"
    fields = EXPORT_FIELDS_LANED if "lane" in record or "lane_seq" in record else EXPORT_FIELDS
    missing = sorted(set(fields) - set(record))
    unexpected = sorted(set(record) - set(fields))
    if missing or unexpected:
        return f"fields differ from the record fields: missing {missing}, unexpected {unexpected}"
    error = record_type_error(record)
    for name in ("hash", "mac"):
        if error is None and type(record[name]) is not str:
            error = f"{name} must be a string"
    if error is None and len(record["mac"]) != 64:
        error = "mac must be 64 hex digits"
    if error is None and fields is EXPORT_FIELDS_LANED and not is_laned(record):
        error = "lane_seq must be an integer, not NoneType"
    return error if error is not None else "not in canonical form (key order, whitespace or escapes)"


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


def _read_key_text(value: str) -> str:
    candidate = Path(value)
    # A base64 key may contain "/" but is never an existing file, so a path that exists wins.
    return candidate.read_text(encoding="utf-8") if candidate.is_file() else value


def _read_public_key(value: str) -> Ed25519PublicKey:
    return load_public_key(_read_key_text(value))


def _parse_as_of(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.audit.verify",
        description="Verify an audit export (records + signed checkpoints), or a signed privacy receipt,"
        " offline against a pinned key and the witness log.",
    )
    parser.add_argument("export", type=Path, nargs="?", help="the records file, e.g. audit.jsonl")
    parser.add_argument(
        "--receipt",
        type=Path,
        help="verify a customer's signed privacy receipt (the JSON the lab serves) instead of an export",
    )
    parser.add_argument(
        "--public-key",
        required=True,
        action="append",
        help="the signing public key: a PEM/base64 key file, or base64 of 32 raw bytes; again for every key"
        " a rotation retired (the current key first): each checkpoint is checked with the key its key_id"
        " names",
    )
    parser.add_argument(
        "--fingerprint",
        action="append",
        help="sha256 hex of a raw public key, to confirm the key is the pinned one; with several keys, give"
        " the fingerprint of each",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        help="checkpoints file (default: EXPORT with its last suffix replaced by .checkpoints.jsonl)",
    )
    parser.add_argument(
        "--witness", type=Path, help="the witness log (the auditors' copy of every signed checkpoint)"
    )
    parser.add_argument(
        "--interval",
        type=int,
        default=DEFAULT_INTERVAL_SECONDS,
        help="the lab's AUDIT_CHECKPOINT_SECONDS; witnessed checkpoints may be two intervals apart",
    )
    parser.add_argument(
        "--as-of",
        type=_parse_as_of,
        help="ISO time the witness is checked at (default: now); the time an older export was made",
    )
    parser.add_argument("--record-key", help="the record HMAC key (file or base64), if the auditor holds it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        keys = [_read_public_key(value) for value in arguments.public_key]
    except (OSError, ValueError) as error:
        parser.error(f"cannot read the public key: {error}")
    try:
        record_key = (
            None if arguments.record_key is None else load_record_key(_read_key_text(arguments.record_key))
        )
    except (OSError, ValueError) as error:
        parser.error(f"cannot read the record key: {error}")
    fingerprints = [public_key_fingerprint(key) for key in keys]
    _check_pinned(parser, fingerprints, arguments.fingerprint or [])
    public_keys = KeyRing(keys[0], tuple(keys[1:]))
    if arguments.receipt is not None:
        if arguments.export is not None or arguments.checkpoints is not None or record_key is not None:
            parser.error("--receipt takes only --public-key, --fingerprint and --witness")
        return _receipt_main(parser, arguments.receipt, arguments.witness, public_keys)
    if arguments.export is None:
        parser.error("name the export to verify (or a receipt with --receipt FILE)")
    checkpoint_path = arguments.checkpoints or checkpoints_path(arguments.export)
    if checkpoint_path.resolve() == arguments.export.resolve():
        parser.error("the records file and the checkpoints file must differ")
    witness = None
    if arguments.witness is not None:
        witness = WitnessOptions(
            path=arguments.witness,
            as_of=arguments.as_of or datetime.now(UTC),
            interval_seconds=arguments.interval,
        )
    try:
        outcome = verify_export(
            export_path=arguments.export,
            public_key=public_keys if len(keys) > 1 else keys[0],
            checkpoints_file=checkpoint_path,
            witness=witness,
            record_key=record_key,
        )
    except OSError as error:
        parser.error(f"cannot read the export: {error}")
    print(_summary(outcome, fingerprint=", ".join(fingerprints), checked_macs=record_key is not None))
    return 0 if outcome.is_intact else 1


def _check_pinned(
    parser: argparse.ArgumentParser, fingerprints: Sequence[str], pinned: Sequence[str]
) -> None:
    """With --fingerprint, every key given must be one of those pinned (exit 2 otherwise)."""
    if not pinned:
        return
    wanted = {value.strip().lower() for value in pinned}
    for fingerprint in fingerprints:
        if fingerprint in wanted:
            continue
        if len(fingerprints) == 1 and len(pinned) == 1:
            parser.error(f"the public key's fingerprint is {fingerprint}, not the pinned {pinned[0]}")
        parser.error(
            f"the public key {fingerprint} is not among the pinned fingerprints ({', '.join(sorted(wanted))})"
        )


def _receipt_main(
    parser: argparse.ArgumentParser, receipt_path: Path, witness_path: Path | None, public_keys: KeyRing
) -> int:
    """Verify one receipt file (and its anchoring checkpoint against the witness log, when given), with the
    key its key_id names among those given (the first one when it names none of the others)."""
    try:
        text = receipt_path.read_bytes()
    except OSError as error:
        parser.error(f"cannot read the receipt: {error}")
    witnessed = None
    if witness_path is not None:
        try:
            witnessed, witness_problem = read_checkpoints(witness_path)
        except OSError as error:
            parser.error(f"cannot read the witness log: {error}")
        if witness_problem is not None:
            line, message = witness_problem.line, witness_problem.message
            parser.error(f"cannot read the witness log: line {line}: {message}")
    try:
        receipt = receipt_parse(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError too; brackets nested too deeply
        print(f"TAMPERED: malformed in {receipt_path}: not a JSON receipt: {error}")
        return 1
    key_id = receipt.get("key_id") if isinstance(receipt, dict) else None
    public_key = public_keys.key_for(key_id) if isinstance(key_id, str) else public_keys.current
    outcome = verify_receipt(receipt=receipt, public_key=public_key, witnessed=witnessed)
    print(receipt_summary(outcome, fingerprint=public_key_fingerprint(public_key), path=str(receipt_path)))
    if outcome.problem is None and outcome.lost_in is not None:
        return RECEIPT_LOST_STATUS
    return 0 if outcome.is_intact else 1


def _summary(outcome: ExportVerification, *, fingerprint: str, checked_macs: bool = False) -> str:
    problem = outcome.problem
    if problem is None:
        records = outcome.records
        last = max([*outcome.checkpoints, *outcome.witnessed], key=lambda checkpoint: checkpoint.signed_at)
        witnessed = f"; {len(outcome.witnessed)} witnessed" if outcome.witnessed else ""
        macs = "; every record's mac valid" if checked_macs else ""
        lanes = (
            f" in {len(records.lanes)} lane{'s' if len(records.lanes) != 1 else ''}" if records.laned else ""
        )
        keys = f"keys {fingerprint}" if ", " in fingerprint else f"key {fingerprint}"
        restored = "".join(f"; {restore.note()}" for restore in outcome.restores)
        return (
            f"OK: {records.count} records (seq {records.first_seq or 1}..{records.head_seq}){lanes},"
            f" head {records.head_hash};"
            f" {len(outcome.checkpoints)} checkpoints signed by {keys}{witnessed};"
            f" last checkpoint seq {last.seq} signed at {last.signed_at}{macs}{restored}"
        )
    where = "" if problem.line is None else f" line {problem.line} of"
    seq = "" if problem.seq is None else f" seq {problem.seq},"
    return f"TAMPERED: {problem.kind} at{seq}{where} {outcome.problem_path}: {problem.message}"


if __name__ == "__main__":
    sys.exit(main())
