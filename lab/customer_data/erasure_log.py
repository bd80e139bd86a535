"""The erasure log: every committed erasure (an account's, a guest order's) is also appended outside the
database, so a restore from a backup taken before it cannot bring the customer back for good: `manage.py
erasures_reapply` reads the log and erases again each subject the restored database holds un-erased.

An entry holds no personal data: the erasure's kind, the id its rows are found by (an account's public_id, a
guest order's ref: both random, never reused) and when it was committed. One canonical JSON object per line.

The file sink (the embedded default, `LAB_ERASURE_LOG`) appends whole lines with O_APPEND and fsync under an
exclusive lock, like the audit witness (lab/audit/witness.py). A torn tail (a crash mid-line) is left as it
is and reported, by its line number, by the command that reads the log; the next entry starts on a line of
its own, so a damaged line never stops an erasure from being recorded. Another sink (an object store with
a retention lock) implements the same two methods; what matters is that it is not inside the database and
not restored with it.

A write that fails must not lose the erasure: the erasure writes an `ErasureLogPending` row in its own
transaction (so there is one exactly when the erasure committed), a hook after the commit appends the entry
and deletes the row, and the beat sweep `privacy.erasure_log_sweep` appends what a failed or lost hook left.
The log is never written before the commit: an erasure rolled back would otherwise be in it, and the command
would erase a customer who was refused. An entry written twice (the append done, the row's delete lost) is
harmless: the command skips a subject erased already.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now

from lab.customer_data.models import ErasureLogPending
from lab.orders.models import is_order_ref

logger = logging.getLogger(__name__)

KIND_ACCOUNT = "account"  # subject: the account's public_id
KIND_GUEST_ORDER = "guest_order"  # subject: the order's ref
KINDS = frozenset({KIND_ACCOUNT, KIND_GUEST_ORDER})

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_FIELDS = frozenset({"kind", "subject", "erased_at"})


class ErasureLogError(Exception):
    """The log cannot be written (or its file cannot be opened)."""


@dataclass(frozen=True)
class ErasureLogEntry:
    kind: str
    subject: str
    erased_at: datetime

    def to_line(self) -> str:
        return json.dumps(
            {
                "erased_at": self.erased_at.astimezone(UTC).strftime(_TIME_FORMAT),
                "kind": self.kind,
                "subject": self.subject,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_line(cls, text: str) -> ErasureLogEntry:
        """The entry of one line; ValueError when it is not one (its text is not repeated in the error: a
        damaged line could hold anything)."""
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ValueError("not JSON") from error
        if not isinstance(value, dict) or set(value) != _FIELDS:
            raise ValueError("not an erasure entry (it must have kind, subject and erased_at only)")
        kind, subject, erased_at = value["kind"], value["subject"], value["erased_at"]
        if kind not in KINDS:
            raise ValueError("unknown kind")
        if not isinstance(subject, str) or not _is_subject(kind, subject):
            raise ValueError(f"not an id of a {kind}")
        if not isinstance(erased_at, str):
            raise ValueError("erased_at is not a time")
        try:
            when = datetime.strptime(erased_at, _TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError as error:
            raise ValueError("erased_at is not a time") from error
        return cls(kind=kind, subject=subject, erased_at=when)


def _is_subject(kind: str, subject: str) -> bool:
    if kind == KIND_GUEST_ORDER:
        return is_order_ref(subject)
    try:
        return str(uuid.UUID(subject)) == subject
    except ValueError:
        return False


@dataclass
class ErasureLogReading:
    """What a read of the log found: the entries with their line numbers, and each line that is not one."""

    entries: list[tuple[int, ErasureLogEntry]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)
    exists: bool = True


class ErasureLogSink(Protocol):
    location: str

    def append(self, entry: ErasureLogEntry) -> None:
        """Durably add the entry (on stable storage when this returns), or ErasureLogError."""
        ...

    def read(self) -> ErasureLogReading:
        """Every entry, and every line that is not one (by number); OSError when it cannot be read."""
        ...


class FileErasureLog:
    """An append-only JSONL file. Put it where a database restore does not reach: outside the database's
    volume and its backups, on a mount every web host appends to (like LAB_STORAGE_DIR)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = f"file://{path}"

    def append(self, entry: ErasureLogEntry) -> None:
        line = (entry.to_line() + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            is_new = not self.path.exists()
            descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)  # one writer at a time: whole lines, never interleaved
                size = os.fstat(descriptor).st_size
                # A torn last line (a crash mid-append) stays as it is, for the command to report; this entry
                # starts on a line of its own rather than being joined onto it.
                data = line if size == 0 or os.pread(descriptor, 1, size - 1) == b"\n" else b"\n" + line
                written = 0
                while written < len(data):
                    count = os.write(descriptor, data[written:])
                    if count == 0:
                        raise OSError(errno.EIO, "the erasure log took no byte of the line")
                    written += count
                os.fsync(descriptor)
            finally:
                os.close(descriptor)  # the lock goes with it
            if is_new:
                directory = os.open(self.path.parent, os.O_RDONLY)  # the new entry must survive a crash too
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
        except OSError as error:
            # By its type and number only: the path is the operator's, but nothing more is needed here.
            raise ErasureLogError(
                f"the erasure log {self.location} could not be written ({type(error).__name__}"
                f" errno={error.errno})"
            ) from error

    def read(self) -> ErasureLogReading:
        if not self.path.exists():
            return ErasureLogReading(exists=False)
        reading = ErasureLogReading()
        with self.path.open("rb") as log_file:
            for number, raw in enumerate(log_file, start=1):
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("a torn line (no newline at its end)")
                    text = raw.decode("utf-8").removesuffix("\n")
                    if not text.strip():
                        raise ValueError("an empty line")
                    entry = ErasureLogEntry.from_line(text)
                except (ValueError, UnicodeDecodeError) as error:
                    reason = "not UTF-8" if isinstance(error, UnicodeDecodeError) else str(error)
                    reading.problems.append((number, reason))
                    continue
                reading.entries.append((number, entry))
        return reading


def erasure_log_sink() -> ErasureLogSink:
    """The sink LAB_ERASURE_LOG names: a path, or file:///absolute/path (the only sink built in)."""
    value = str(settings.LAB_ERASURE_LOG)
    parsed = urlparse(value)
    if parsed.scheme == "file" and parsed.path:
        return FileErasureLog(Path(unquote(parsed.path)))
    if parsed.scheme == "" and value:
        return FileErasureLog(Path(value))
    raise ValueError(f"unsupported erasure log {value!r}: use a path or file:///absolute/path/erasures.log")


def erasure_log_owed(*, kind: str, subject: str, erased_at: datetime) -> None:
    """Inside the erasure's transaction: the entry is owed (a row, committed with the erasure or not at all),
    and appended once the erasure is committed. The hook is a named function that logs a failure by its type
    (the row stays for the sweep): the erasure is done whatever the log's disk says."""
    pending_id = ErasureLogPending.objects.create(kind=kind, subject=subject, erased_at=erased_at).pk

    def erasure_log_write_after_commit() -> None:
        try:
            erasure_log_flush(pending_ids=[pending_id])
        except Exception as error:
            logger.error(
                "erasure log not written after an erasure error=%s pending=%s: the sweep retries",
                type(error).__name__,
                pending_id,
            )

    transaction.on_commit(erasure_log_write_after_commit, robust=True)


@dataclass(frozen=True)
class ErasureLogFlush:
    written: int
    failed: int


def erasure_log_flush(*, pending_ids: Iterable[int] | None = None) -> ErasureLogFlush:
    """Append the owed entries (`pending_ids`, or every one) to the log, each under its row's lock (skipped
    while another process holds it: that one is writing it), the row deleted once its line is on disk. A
    failed append leaves the row, counted, for the next sweep."""
    ids = (
        list(pending_ids)
        if pending_ids is not None
        else list(ErasureLogPending.objects.order_by("pk").values_list("pk", flat=True))
    )
    written = failed = 0
    if not ids:
        return ErasureLogFlush(written=0, failed=0)
    sink = erasure_log_sink()
    for pending_id in ids:
        with transaction.atomic():
            row = ErasureLogPending.objects.select_for_update(skip_locked=True).filter(pk=pending_id).first()
            if row is None:
                continue  # written already, or being written by another process
            try:
                sink.append(ErasureLogEntry(kind=row.kind, subject=row.subject, erased_at=row.erased_at))
            except ErasureLogError as error:
                failed += 1
                ErasureLogPending.objects.filter(pk=row.pk).update(
                    attempts=F("attempts") + 1, last_failed_at=Now()
                )
                logger.error("erasure log append failed pending=%s kind=%s: %s", row.pk, row.kind, error)
                continue
            row.delete()
            written += 1
    return ErasureLogFlush(written=written, failed=failed)


def erasure_log_sweep() -> dict[str, int]:
    """Beat's sweep: every entry still owed (a hook that failed, or never ran: the process died after the
    commit). What it could not write is work left: logged by the sweep's watch, retried next run."""
    flush = erasure_log_flush()
    return {"written": flush.written, "failed": flush.failed, "work_left": flush.failed}
