"""The erasure log: every committed erasure (an account's, a guest order's) is also appended outside the
database, so a restore from a backup taken before it cannot bring the customer back for good: `manage.py
erasures_reapply` reads the log and erases again each subject the restored database holds un-erased.

An entry holds no personal data: the erasure's kind, the id its rows are found by (an account's public_id, a
guest order's ref: both random, never reused), when it was committed, and its seal. One canonical JSON object
per line.

The seal: an entry makes `erasures_reapply` erase a customer without their password, so only the lab's own
erasure may make one. It is HMAC-SHA256 of the entry's canonical JSON (kind, subject, erased_at) under a key
derived from AUDIT_RECORD_KEY (HMAC-SHA256 of it with the label "printlab erasure log v1"), which the database
never holds: computed on the app host inside the erasure's transaction, kept on the pending row and written
in the line. Before, anyone who could INSERT into the database (the app's role, a DBA) wrote one pending row,
the sweep copied it to the log, where it outlived every restore, and the command erased that customer. The
sweep appends a row only when its seal verifies and the database shows its subject erased (the row commits
with the erasure: one for a subject the database holds un-erased was not written by it); a row that fails
either is left and logged, by id, for a person. The command refuses, by line number, a line whose seal is
missing or does not verify. Whoever holds AUDIT_RECORD_KEY (an app-host admin) can seal an entry: the log
is only as trusted as that key.

The file sink (the embedded default, `LAB_ERASURE_LOG`) appends whole lines with O_APPEND and fsync under an
exclusive lock, like the audit witness (lab/audit/witness.py). A torn tail (a crash mid-line) is left as it
is and reported, by its line number, by the command that reads the log; the next entry starts on a line of
its own, so a damaged line never stops an erasure from being recorded. Another sink (an object store with
a retention lock) implements the same two methods; what matters is that it is not inside the database and
not restored with it.

A write that fails must not lose the erasure: the erasure writes an `ErasureLogPending` row in its own
transaction (so there is one exactly when the erasure committed), a hook after the commit appends the entry
it holds in memory, reading nothing from the database first, then deletes the row (best effort), and the
beat sweep `privacy.erasure_log_sweep` appends what a failed or lost hook left. The hook must not depend on
the database: a database that fails right after the commit is exactly what a restore follows, and before,
the hook read its row back (SELECT … FOR UPDATE) and wrote nothing then; the row went with the restored
database and the customer came back for good. The row stays for the sweep only when the append itself
fails (or the process died before its hook). The log is never written before the commit: an erasure rolled
back would otherwise be in it, and the command would erase a customer who was refused. An entry written
twice (the hook's append done and its delete lost, or the sweep appending a row while the hook does) is
harmless: the command skips a subject erased already.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now

from lab.accounts.models import User
from lab.audit.keys import load_record_key
from lab.customer_data.models import ErasureLogPending
from lab.lib.append_only import directory_sync, write_whole
from lab.orders.models import Order, is_order_ref

logger = logging.getLogger(__name__)

KIND_ACCOUNT = "account"  # subject: the account's public_id
KIND_GUEST_ORDER = "guest_order"  # subject: the order's ref
KINDS = frozenset({KIND_ACCOUNT, KIND_GUEST_ORDER})

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_FIELDS = frozenset({"kind", "subject", "erased_at"})  # what the seal covers
_SEAL_LABEL = b"printlab erasure log v1"  # the seal's key: HMAC-SHA256(AUDIT_RECORD_KEY, this)


class ErasureLogError(Exception):
    """The log cannot be written (or its file cannot be opened)."""


@cache
def _seal_key(record_key_text: str) -> bytes:
    return hmac.new(load_record_key(record_key_text), _SEAL_LABEL, hashlib.sha256).digest()


def _seal(body: str) -> str:
    """HMAC-SHA256 of an entry's canonical JSON (kind, subject, erased_at) under the erasure log's key."""
    return hmac.new(
        _seal_key(str(settings.AUDIT_RECORD_KEY)), body.encode("utf-8"), hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True)
class ErasureLogEntry:
    kind: str
    subject: str
    erased_at: datetime
    seal: str = ""  # "" when the line (or row) has none: refused

    @classmethod
    def sealed(cls, *, kind: str, subject: str, erased_at: datetime) -> ErasureLogEntry:
        """The entry of an erasure being committed, sealed with the app's key (never by the database)."""
        unsealed = cls(kind=kind, subject=subject, erased_at=erased_at)
        return cls(kind=kind, subject=subject, erased_at=erased_at, seal=_seal(unsealed.body()))

    def body(self) -> str:
        """The canonical JSON the seal covers."""
        return json.dumps(
            {
                "erased_at": self.erased_at.astimezone(UTC).strftime(_TIME_FORMAT),
                "kind": self.kind,
                "subject": self.subject,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def seal_verifies(self) -> bool:
        """Whether the entry carries the seal the app's key makes for exactly its kind, subject and time."""
        return bool(self.seal) and hmac.compare_digest(self.seal, _seal(self.body()))

    def to_line(self) -> str:
        return json.dumps(
            {
                "erased_at": self.erased_at.astimezone(UTC).strftime(_TIME_FORMAT),
                "kind": self.kind,
                "seal": self.seal,
                "subject": self.subject,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_line(cls, text: str) -> ErasureLogEntry:
        """The entry of one line; ValueError when it is not one (its text is not repeated in the error: a
        damaged line could hold anything). A line without a seal is read (seal ""), for its reader to refuse
        by name: whether a seal verifies takes the key, checked by `seal_verifies`."""
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ValueError("not JSON") from error
        if not isinstance(value, dict) or set(value) - {"seal"} != _FIELDS:
            raise ValueError("not an erasure entry (it must have kind, subject, erased_at and seal only)")
        kind, subject, erased_at = value["kind"], value["subject"], value["erased_at"]
        seal = value.get("seal", "")
        if not isinstance(seal, str):
            raise ValueError("seal is not text")
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
        return cls(kind=kind, subject=subject, erased_at=when, seal=seal)


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
                write_whole(descriptor, data, what="the erasure log")
            finally:
                os.close(descriptor)  # the lock goes with it
            if is_new:
                directory_sync(self.path.parent)
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
    """Inside the erasure's transaction: the entry is sealed (with the app's key) and owed (a row, committed
    with the erasure or not at all), and appended once the erasure is committed."""
    entry = ErasureLogEntry.sealed(kind=kind, subject=subject, erased_at=erased_at)
    pending_id = ErasureLogPending.objects.create(
        kind=entry.kind, subject=entry.subject, erased_at=entry.erased_at, seal=entry.seal
    ).pk

    def erasure_log_write_after_commit() -> None:  # named, not a partial (tests/test_on_commit_hygiene.py)
        _write_after_commit(entry, pending_id)

    transaction.on_commit(erasure_log_write_after_commit, robust=True)


def _write_after_commit(entry: ErasureLogEntry, pending_id: int) -> None:
    """The hook: the entry held in memory goes to the log first, whatever the database's state (it may have
    failed right after the commit: what a restore follows); then its row is deleted, best effort (a delete
    lost leaves the row for the sweep: the line written twice, harmless). Only a failed append leaves the row
    on purpose. Every failure is logged by its type: the erasure is done whatever the log's disk says."""
    try:
        erasure_log_sink().append(entry)
    except Exception as error:
        logger.error(
            "erasure log not written after an erasure error=%s pending=%s: the sweep retries",
            type(error).__name__,
            pending_id,
        )
        try:
            ErasureLogPending.objects.filter(pk=pending_id).update(
                attempts=F("attempts") + 1, last_failed_at=Now()
            )
        except Exception as count_error:
            logger.warning(
                "erasure log pending row not counted error=%s pending=%s",
                type(count_error).__name__,
                pending_id,
            )
        return
    try:
        ErasureLogPending.objects.filter(pk=pending_id).delete()
    except Exception as error:
        logger.warning(
            "erasure log written, its pending row not deleted error=%s pending=%s: the sweep writes it again"
            " (harmless)",
            type(error).__name__,
            pending_id,
        )


@dataclass(frozen=True)
class ErasureLogFlush:
    written: int
    failed: int
    refused: int = 0


def _shown_erased(kind: str, subject: str) -> bool:
    """Whether the database shows the subject erased: the pending row commits with the erasure, so one for a
    subject it holds un-erased was not written by an erasure."""
    if kind == KIND_ACCOUNT and _is_subject(kind, subject):
        return User.objects.filter(public_id=subject, erased_at__isnull=False).exists()
    if kind == KIND_GUEST_ORDER:
        return Order.objects.filter(ref=subject, customer__isnull=True, is_anonymized=True).exists()
    return False


def _refusal(row: ErasureLogPending) -> str | None:
    """Why a pending row must not go to the log (None: it may)."""
    entry = ErasureLogEntry(kind=row.kind, subject=row.subject, erased_at=row.erased_at, seal=row.seal)
    if not row.seal:
        return "no seal"
    if row.kind not in KINDS or not entry.seal_verifies():
        return "its seal does not verify"
    if not _shown_erased(row.kind, row.subject):
        return "its subject is not erased in the database"
    return None


def erasure_log_flush(*, pending_ids: Iterable[int] | None = None) -> ErasureLogFlush:
    """Append the owed entries (`pending_ids`, or every one) to the log, each under its row's lock (skipped
    while another process holds it: that one is writing it), the row deleted once its line is on disk. A
    failed append leaves the row, counted, for the next sweep. A row whose seal is missing or does not verify,
    or whose subject the database does not show erased, is not appended: it was not written by an erasure
    (a forgery by whoever can write the database), and is left in place and logged, by id, for a person."""
    ids = (
        list(pending_ids)
        if pending_ids is not None
        else list(ErasureLogPending.objects.order_by("pk").values_list("pk", flat=True))
    )
    written = failed = refused = 0
    if not ids:
        return ErasureLogFlush(written=0, failed=0)
    sink = erasure_log_sink()
    for pending_id in ids:
        with transaction.atomic():
            row = ErasureLogPending.objects.select_for_update(skip_locked=True).filter(pk=pending_id).first()
            if row is None:
                continue  # written already, or being written by another process
            refusal = _refusal(row)
            if refusal is not None:
                refused += 1
                logger.error(
                    "erasure log pending row refused pending=%s: %s (not written by an erasure: left for a"
                    " person to look at)",
                    row.pk,
                    refusal,
                )
                continue
            try:
                sink.append(
                    ErasureLogEntry(
                        kind=row.kind, subject=row.subject, erased_at=row.erased_at, seal=row.seal
                    )
                )
            except ErasureLogError as error:
                failed += 1
                ErasureLogPending.objects.filter(pk=row.pk).update(
                    attempts=F("attempts") + 1, last_failed_at=Now()
                )
                logger.error("erasure log append failed pending=%s kind=%s: %s", row.pk, row.kind, error)
                continue
            row.delete()
            written += 1
    return ErasureLogFlush(written=written, failed=failed, refused=refused)


def erasure_log_sweep() -> dict[str, int]:
    """Beat's sweep: every entry still owed (a hook that failed, or never ran: the process died after the
    commit). What it could not write is work left: logged by the sweep's watch, retried next run. A row it
    refused (`refused`) is logged at ERROR on every run until a person deletes it; it is no work left."""
    flush = erasure_log_flush()
    return {
        "written": flush.written,
        "failed": flush.failed,
        "refused": flush.refused,
        "work_left": flush.failed,
    }
