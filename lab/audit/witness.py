"""Checkpoints outside the database: the witness sinks signed checkpoints are appended to, and reading a
checkpoints file. No Django.

A witness log is the checkpoints-file format (lab/audit/export_format.py): one canonical JSON checkpoint per
line, in signing order. The file sink appends whole lines with O_APPEND and fsync under an exclusive lock. A
torn tail (a short write, a crash mid-line, bytes someone else added) is reported, never extended: the signer
alerts and signs nothing until an operator cuts the torn bytes off (they are a checkpoint that was never
stored, or not the signer's), because a line joined onto a torn one would be unreadable for good. Another sink
(an object store with a retention lock, e.g. S3 Object Lock in compliance mode: one object per checkpoint
named by its seq and signed_at, written with a conditional put) implements the same four methods; what matters
is that nobody who can reach the database or the application host can shorten or rewrite what was written.
The checks both verifiers run against a witness log: lab/audit/witness_check.py and lab/audit/backdating.py.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from lab.audit.checkpoints import Checkpoint
from lab.audit.problems import ChainProblem
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
