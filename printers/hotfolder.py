"""Hot-folder printer backend: the embedded default, the way minilabs take work.
Writes each job as a file plus a JSON ticket into a folder and reads job states back from sub-folders.

Folder convention (shared with the device or operator that empties the folder):

    FOLDER/<job_id>.<ext>       the print file (written before its ticket)
    FOLDER/<job_id>.json        the ticket: job_id, title, media, copies, attributes, file_name,
                                sha256 (of the print file), submitted_at (UTC ISO 8601)
    FOLDER/processing/          the device MAY move a ticket here while it prints  -> processing
    FOLDER/done/                the device moves a finished ticket here           -> completed
    FOLDER/error/               the device moves a failed ticket here, optionally
                                adding a "reason" key to it                        -> aborted
    FOLDER/canceled/            we move a ticket here when cancel() runs           -> canceled
    FOLDER/PAUSED               if this file exists the printer is paused (the device should not
                                take new tickets); printer_status() says paused
    FOLDER/capabilities.json    optional: {"media_supported": [...], "media_ready": [...]}

A ticket still in FOLDER is `pending`. Files and tickets appear atomically: each is written to a
hidden temporary name in the same folder, fsynced and renamed with os.replace, the ticket last, so a
device that only reads `*.json` never sees a partial job. Job ids are uuid4 hex strings.
The device moves the print file along with its ticket or deletes it; we never rely on either.

A state sub-folder that does not exist holds no ticket. FOLDER itself missing, not a folder or not searchable
(an unmounted share, a NAS rebooting, a folder the device re-owned), or a listing that fails, is no answer:
the reads raise TransientPrinterError(printer_unreachable) then, never "no such job" (the lab would take that
for nothing of ours being there, and send the job again).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from printers import errors
from printers.base import (
    JobInfo,
    JobState,
    PrinterBackend,
    PrinterState,
    PrinterStatus,
    check_submit_arguments,
)

logger = logging.getLogger(__name__)

TICKET_SUFFIX = ".json"
PAUSED_MARKER = "PAUSED"
CAPABILITIES_FILE = "capabilities.json"
PROCESSING_DIR = "processing"
DONE_DIR = "done"
ERROR_DIR = "error"
CANCELED_DIR = "canceled"

# Where a ticket lies says the job's state; the inbox itself is the folder root.
STATE_BY_DIRECTORY: dict[str, JobState] = {
    "": JobState.PENDING,
    PROCESSING_DIR: JobState.PROCESSING,
    DONE_DIR: JobState.COMPLETED,
    ERROR_DIR: JobState.ABORTED,
    CANCELED_DIR: JobState.CANCELED,
}

_COPY_CHUNK_BYTES = 1024 * 1024

# The print files unfinished_sends_discard may erase: `<job id><suffix>`, the suffix the sent file's,
# lowercased (the lab sends .jpg and .tif). A print file of another suffix a killed send left is not erased.
PRINT_FILE_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff", ".png", ".pdf")
_SUFFIXES = "|".join(re.escape(suffix) for suffix in PRINT_FILE_SUFFIXES)
_OWN_PRINT_FILE = re.compile(rf"[0-9a-f]{{32}}(?:{_SUFFIXES})")
# _temporary_name's: `.<target name>.<uuid4 hex>.tmp`, the target a print file or a ticket.
_OWN_TEMPORARY = re.compile(
    rf"\.[0-9a-f]{{32}}(?:{_SUFFIXES}|{re.escape(TICKET_SUFFIX)})\.[0-9a-f]{{32}}\.tmp"
)


class HotFolderBackend(PrinterBackend):
    @classmethod
    def for_target(cls, *, target: str, server: str = "") -> HotFolderBackend:
        """The registry's constructor (printers.registry): the target is the folder; no server."""
        return cls(folder=target)

    def __init__(self, *, folder: Path | str) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"HotFolderBackend(folder={str(self.folder)!r})"

    def submit(
        self,
        *,
        path: Path,
        title: str,
        media: str = "",
        copies: int = 1,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        source = check_submit_arguments(path=path, copies=copies)
        self._require_writable_folder()
        job_id = uuid.uuid4().hex
        file_name = f"{job_id}{source.suffix.lower()}"
        try:
            sha256 = _atomic_copy(source=source, target=self.folder / file_name)
            ticket = {
                "job_id": job_id,
                "title": title,
                "media": media,
                "copies": copies,
                "attributes": dict(attributes or {}),
                "file_name": file_name,
                "sha256": sha256,
                "submitted_at": datetime.now(UTC).isoformat(),
            }
            _atomic_write(
                target=self.folder / f"{job_id}{TICKET_SUFFIX}",
                data=json.dumps(ticket, indent=2, sort_keys=True).encode(),
            )
        except BaseException as exc:
            # Whatever stops the send between the print file and its ticket (a full disk, the task's soft time
            # limit, a shutdown): no ticket points at the file, so nothing would ever erase it; it goes now.
            # (A SIGKILL there leaves it for unfinished_sends_discard.) Once the ticket is in place the job is
            # the device's, file and all, whatever comes after (its directory's fsync, say), wherever the
            # device has moved the ticket by now (processing/, leaving the file in the inbox: before, only the
            # inbox was looked at and that file was erased under the device's ticket).
            if not self._is_ticket_anywhere(job_id):
                with contextlib.suppress(OSError):
                    (self.folder / file_name).unlink()
            if isinstance(exc, OSError):
                raise errors.TransientPrinterError(
                    code=errors.PRINTER_UNREACHABLE, message=f"cannot write to hot folder: {exc.strerror}"
                ) from exc
            raise
        logger.info("hot folder job %s submitted", job_id)
        return job_id

    def job_info(self, handle: str) -> JobInfo:
        located = self._locate(handle)
        if located is None:
            raise errors.PermanentPrinterError(
                code=errors.JOB_NOT_FOUND, message=f"no hot folder job {handle!r}"
            )
        ticket_path, state = located
        return _job_info_from_ticket(ticket_path=ticket_path, state=state, handle=handle)

    def cancel(self, handle: str) -> None:
        located = self._locate(handle)
        if located is None:
            raise errors.PermanentPrinterError(
                code=errors.JOB_NOT_FOUND, message=f"no hot folder job {handle!r}"
            )
        ticket_path, state = located
        if state is JobState.CANCELED:
            return
        if state is not JobState.PENDING:
            raise errors.PermanentPrinterError(
                code=errors.JOB_NOT_CANCELABLE, message=f"hot folder job {handle!r} is already {state.value}"
            )
        canceled_dir = self.folder / CANCELED_DIR
        try:
            canceled_dir.mkdir(exist_ok=True)
            try:
                # The rename is the commit point: it fails if the device took the ticket first.
                os.replace(ticket_path, canceled_dir / ticket_path.name)
            except FileNotFoundError:
                self._require_answering_folder()  # not the folder gone meanwhile: the device took it
                raise errors.PermanentPrinterError(
                    code=errors.JOB_NOT_CANCELABLE,
                    message=f"hot folder job {handle!r} was taken by the device",
                ) from None
            # A rename between folders is durable once both are synced: the inbox first, so a power loss
            # between the two leaves the ticket in neither folder (nothing printed, what the cancel is for),
            # never in both (the device would find it back in the inbox and print a cancelled copy).
            _fsync_directory(self.folder)
            _fsync_directory(canceled_dir)
        except OSError as exc:
            # Cancelled or not, the caller cannot know: asked again, a cancelled ticket is a no-op.
            raise _unanswered(exc) from exc
        file_name = _read_ticket(canceled_dir / ticket_path.name).get("file_name", "")
        if file_name:
            try:
                (self.folder / Path(str(file_name)).name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                # The job is cancelled (its ticket is in canceled/): the device will not print the file left,
                # and unfinished_sends_discard erases it (as it does when a crash comes before this unlink).
                logger.warning("hot folder job %s canceled, its print file kept: %s", handle, exc.strerror)
            else:
                try:
                    # So a power loss does not bring a plain copy of the photo back to wait for the sweep.
                    _fsync_directory(self.folder)
                except OSError as exc:
                    logger.warning(
                        "hot folder job %s canceled, its print file's removal not synced: %s",
                        handle,
                        exc.strerror,
                    )
        logger.info("hot folder job %s canceled", handle)

    def printer_status(self) -> PrinterStatus:
        try:
            return self._status()
        except OSError as exc:
            # A folder whose contents cannot be searched (EACCES: the device re-owned it; EIO): before, a bare
            # PermissionError here ended every poll round before the printers after this one.
            return PrinterStatus(
                state=PrinterState.OFFLINE,
                reasons=("offline", "folder-unreadable"),
                message=exc.strerror or type(exc).__name__,
            )

    def _status(self) -> PrinterStatus:
        if not self.folder.exists():
            return PrinterStatus(state=PrinterState.OFFLINE, reasons=("offline", "folder-missing"))
        if not self.folder.is_dir() or not os.access(self.folder, os.W_OK | os.X_OK):
            return PrinterStatus(state=PrinterState.OFFLINE, reasons=("offline", "folder-not-writable"))
        if not os.access(self.folder, os.R_OK):
            # Written to but not listed (a drop-box share): every read of a job there fails, so its jobs
            # would be sent and never seen printed. Offline, as for the reads (_require_answering_folder).
            return PrinterStatus(state=PrinterState.OFFLINE, reasons=("offline", "folder-not-readable"))
        unreadable = self._unreadable_state_entry()
        if unreadable is not None:
            reason, message = unreadable
            return PrinterStatus(state=PrinterState.OFFLINE, reasons=("offline", reason), message=message)
        media_supported, media_ready = self._capabilities()
        if (self.folder / PAUSED_MARKER).exists():
            return PrinterStatus(
                state=PrinterState.PAUSED,
                reasons=("paused",),
                message=_read_text(self.folder / PAUSED_MARKER),
                media_supported=media_supported,
                media_ready=media_ready,
            )
        return PrinterStatus(
            state=PrinterState.ONLINE, media_supported=media_supported, media_ready=media_ready
        )

    def _unreadable_state_entry(self) -> tuple[str, str] | None:
        """A state sub-folder the lab may not list and search (the device made done/ 0700 under its own user),
        or a job's ticket it may not read (one the device wrote 0600): (reason, message), else None. Every
        read of a job there fails (TransientPrinterError), so it would stay submitted and never be seen
        printed, and a reroute or withdrawal would be refused: the printer is offline for it, as for a folder
        not readable, and so alerted. Tickets are checked in the inbox and processing/ only, where the jobs
        in flight are (a handful): done/, error/ and canceled/ keep every ticket for good (a year of them on a
        network share: an access check each, every poll of every printer, measured 0.19 s per 100,000 on a
        local disk), so there a ticket the lab cannot read shows as that job's reads failing."""
        for directory in STATE_BY_DIRECTORY:
            where = self.folder / directory
            if directory:
                try:
                    mode = os.stat(where).st_mode
                except (FileNotFoundError, NotADirectoryError):
                    continue  # not made yet: no ticket there
                except OSError as exc:
                    return "state-folder-unreadable", f"{directory}/: {exc.strerror or type(exc).__name__}"
                if not stat.S_ISDIR(mode):
                    continue  # read as no such sub-folder (_locate, _names_in)
                if not os.access(where, os.R_OK | os.X_OK):
                    return "state-folder-unreadable", f"{directory}/: {os.strerror(errno.EACCES)}"
            if directory not in ("", PROCESSING_DIR):
                continue
            try:
                names = os.listdir(where)
            except (FileNotFoundError, NotADirectoryError):
                if not directory:
                    raise  # the folder itself gone meanwhile: printer_status says so
                continue
            except OSError as exc:
                if not directory:
                    raise
                return "state-folder-unreadable", f"{directory}/: {exc.strerror or type(exc).__name__}"
            for name in names:
                if not (name.endswith(TICKET_SUFFIX) and _is_job_id(name.removesuffix(TICKET_SUFFIX))):
                    continue
                ticket_path = where / name
                if os.access(ticket_path, os.R_OK):
                    continue
                try:
                    os.stat(ticket_path)
                except FileNotFoundError:
                    continue  # moved on by the device since the listing
                except OSError:
                    pass
                return "ticket-unreadable", f"{Path(directory) / name} cannot be read"
        return None

    def find_jobs(self, *, title_prefix: str) -> list[JobInfo]:
        found = _jobs_titled(self._all_tickets(), title_prefix=title_prefix, must_read=True)
        # A folder gone while it was read: a ticket read as missing then was the folder's, not the device's.
        self._require_answering_folder()
        return found

    def jobs_holding_documents(self, *, title_prefix: str) -> list[JobInfo]:
        """Finished tickets whose print file is still beside them: one listing of each final folder, and only
        those tickets read. A ticket whose file was discarded (or that the device moved or deleted) costs
        nothing, so a `done/` of years of tickets does not slow the sweep down."""
        try:
            return _jobs_titled(self._finished_tickets_with_files(), title_prefix=title_prefix)
        except OSError as exc:
            raise errors.TransientPrinterError(
                code=errors.PRINTER_UNREACHABLE, message=f"cannot read hot folder: {exc.strerror}"
            ) from exc

    def unfinished_sends_discard(self, *, older_than: float) -> int:
        """Print files in the inbox that no ticket names but one in canceled/, and this backend's hidden
        temporaries: a send killed between the print file and its ticket, or mid-copy, and a cancel() that
        died (or whose unlink failed) after moving the ticket into canceled/. The device only reads tickets in
        the inbox, so it never takes them, and no job's discard reaches them (it looks beside the ticket). A
        file that a ticket in the inbox or in processing/, done/ or error/ names is never erased here.

        Only names this backend makes (_OWN_PRINT_FILE, _OWN_TEMPORARY): a print file `<job id>.jpg` (a suffix
        of PRINT_FILE_SUFFIXES) and a temporary `.<job id>.<suffix>.<32 hex>.tmp`. Never a bare `<32 hex>` or
        `<32 hex>.tmp`, which are the photo vault's blob and temporary names: a folder pointed at a vault
        shard loses nothing here."""
        try:
            entries = list(os.scandir(self.folder))
        except (FileNotFoundError, NotADirectoryError):
            return 0
        # A ticket in canceled/ got there by cancel() from the inbox: the device never prints its file. The
        # same job's ticket seen in the inbox too (listed before the move) keeps the file.
        ticketed = {
            ticket_path.stem for ticket_path, state in self._all_tickets() if state is not JobState.CANCELED
        }
        erased = 0
        for entry in entries:
            name = entry.name
            is_temporary = _OWN_TEMPORARY.fullmatch(name) is not None
            is_own_print = _OWN_PRINT_FILE.fullmatch(name) is not None
            is_untracked_print = is_own_print and name.split(".")[0] not in ticketed
            if not (is_temporary or is_untracked_print):
                continue
            try:
                if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime >= older_than:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            erased += 1
        return erased

    def discard_document(self, handle: str) -> bool:
        located = self._locate(handle)
        if located is None:
            return False
        ticket_path, state = located
        if not state.is_final:
            raise errors.PermanentPrinterError(
                code=errors.JOB_NOT_OVER, message=f"hot folder job {handle!r} is still {state.value}"
            )
        file_name = Path(str(_read_ticket(ticket_path).get("file_name", ""))).name
        if not file_name:
            return False
        try:
            (ticket_path.parent / file_name).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise errors.TransientPrinterError(
                code=errors.PRINTER_UNREACHABLE, message=f"cannot erase hot folder print file: {exc.strerror}"
            ) from exc
        try:
            _fsync_directory(ticket_path.parent)
        except OSError as exc:
            # The file is gone from the folder; if a crash brings it back, it lies beside its ticket again and
            # the next sweep erases it.
            logger.warning("hot folder %s: erasure not made durable: %s", self.folder.name, exc.strerror)
        return True

    def _require_writable_folder(self) -> None:
        status = self.printer_status()
        if status.state is PrinterState.OFFLINE:
            raise errors.TransientPrinterError(
                code=errors.PRINTER_UNREACHABLE,
                message=f"hot folder unavailable ({', '.join(status.reasons)})",
            )
        if status.state is PrinterState.PAUSED:
            # A paused minilab still takes files into its inbox; the job simply waits, as in a CUPS queue.
            logger.info("hot folder %s is paused; job will wait", self.folder.name)

    def _require_answering_folder(self) -> None:
        """The folder is there to be read: a directory we may list and search. Else TransientPrinterError,
        as from the CUPS backend when its server does not answer; never an empty answer."""
        try:
            mode = os.stat(self.folder).st_mode
        except OSError as exc:
            raise _unanswered(exc) from exc
        if not stat.S_ISDIR(mode):
            raise _unanswered(NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
        if not os.access(self.folder, os.R_OK | os.X_OK):
            raise _unanswered(PermissionError(errno.EACCES, os.strerror(errno.EACCES)))

    def _is_ticket_anywhere(self, handle: str) -> bool:
        """The job's ticket lies in some state folder, or the folder cannot say: a send's print file is then
        kept (unfinished_sends_discard erases it if no ticket ever names it)."""
        try:
            return self._locate(handle) is not None
        except errors.TransientPrinterError:
            return True

    def _locate(self, handle: str) -> tuple[Path, JobState] | None:
        """Where the job's ticket lies; None only when the folder answered and holds no such ticket."""
        if not _is_job_id(handle):
            return None
        self._require_answering_folder()
        for directory, state in STATE_BY_DIRECTORY.items():
            ticket_path = self.folder / directory / f"{handle}{TICKET_SUFFIX}"
            try:
                mode = os.stat(ticket_path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                continue  # not there, or no such state sub-folder
            except OSError as exc:
                raise _unanswered(exc) from exc
            if stat.S_ISREG(mode):
                return ticket_path, state
        self._require_answering_folder()  # not found in a folder that went away meanwhile is no answer
        return None

    def _all_tickets(self) -> Iterator[tuple[Path, JobState]]:
        self._require_answering_folder()
        for directory, state in STATE_BY_DIRECTORY.items():
            for name in self._names_in(directory):
                handle = name.removesuffix(TICKET_SUFFIX)
                if name != handle and _is_job_id(handle):
                    yield self.folder / directory / name, state

    def _names_in(self, directory: str) -> list[str]:
        """The names in one state folder: none when that sub-folder does not exist (the device makes it when
        it first moves a ticket there). The folder itself not answering, or a listing that fails otherwise,
        is TransientPrinterError."""
        try:
            return os.listdir(self.folder / directory)
        except (FileNotFoundError, NotADirectoryError) as exc:
            self._require_answering_folder()
            if not directory:
                raise _unanswered(exc) from exc  # the folder itself, gone and back during the listing
            return []
        except OSError as exc:
            raise _unanswered(exc) from exc

    def _finished_tickets_with_files(self) -> Iterator[tuple[Path, JobState]]:
        for directory, state in STATE_BY_DIRECTORY.items():
            if not state.is_final:
                continue
            try:
                names = [entry.name for entry in os.scandir(self.folder / directory)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            print_files = {name.split(".")[0] for name in names if not name.endswith(TICKET_SUFFIX)}
            for name in names:
                handle = name.removesuffix(TICKET_SUFFIX)
                if name != handle and handle in print_files and _is_job_id(handle):
                    yield self.folder / directory / name, state

    def _capabilities(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        path = self.folder / CAPABILITIES_FILE
        if not path.is_file():
            return (), ()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            logger.warning("hot folder %s has an unreadable %s", self.folder.name, CAPABILITIES_FILE)
            return (), ()
        return tuple(map(str, data.get("media_supported", []))), tuple(map(str, data.get("media_ready", [])))


def _jobs_titled(
    tickets: Iterable[tuple[Path, JobState]], *, title_prefix: str, must_read: bool = False
) -> list[JobInfo]:
    """The jobs of these tickets whose title starts with the prefix, oldest first. `must_read`: a ticket that
    cannot be read (an I/O error, not a ticket moved meanwhile or a bad one) is TransientPrinterError, not
    left out of the answer."""
    found: list[tuple[str, JobInfo]] = []
    for ticket_path, state in tickets:
        ticket = _read_ticket(ticket_path, must_read=must_read)
        if str(ticket.get("title", "")).startswith(title_prefix):
            info = _job_info_from_ticket(
                ticket_path=ticket_path, state=state, handle=ticket_path.stem, ticket=ticket
            )
            found.append((str(ticket.get("submitted_at", "")), info))
    found.sort(key=lambda item: item[0])
    return [info for _, info in found]


def _job_info_from_ticket(
    *, ticket_path: Path, state: JobState, handle: str, ticket: dict[str, Any] | None = None
) -> JobInfo:
    if ticket is None:
        ticket = _read_ticket(ticket_path, must_read=True)
    reason = str(ticket.get("reason", "")) if state is JobState.ABORTED else ""
    return JobInfo(
        handle=handle,
        title=str(ticket.get("title", "")),
        state=state,
        reasons=(f"job-{state.value}",),
        message=reason,
        created_at=_unix_seconds(ticket.get("submitted_at")),
        # Every ticket names exactly one print file, written before the ticket; a device that prints a
        # ticket twice is invisible from here, so processing and impression fields stay unknown.
        document_count=1 if ticket else None,
    )


def _unix_seconds(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _unanswered(exc: OSError) -> errors.TransientPrinterError:
    return errors.TransientPrinterError(
        code=errors.PRINTER_UNREACHABLE,
        message=f"cannot read hot folder: {exc.strerror or type(exc).__name__}",
    )


def _read_ticket(path: Path, *, must_read: bool = False) -> dict[str, Any]:
    """The ticket's content; {} for one that is gone or is not a JSON object. `must_read`: one that cannot be
    read (EIO, EACCES) is TransientPrinterError, not {} (a lookup would miss the job)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if must_read:
            raise _unanswered(exc) from exc
        logger.warning("unreadable hot folder ticket %s", path.name)
        return {}
    except ValueError:
        # A device that rewrote a ticket badly must not hide the job; its location still says the state.
        logger.warning("unreadable hot folder ticket %s", path.name)
        return {}
    return data if isinstance(data, dict) else {}


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _is_job_id(value: str) -> bool:
    return len(value) == 32 and all(character in "0123456789abcdef" for character in value)


def _temporary_name(target: Path) -> Path:
    # Hidden and without the .json suffix, so a device polling for tickets never picks it up.
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def _atomic_copy(*, source: Path, target: Path) -> str:
    temporary = _temporary_name(target)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as reader, temporary.open("xb") as writer:
            while chunk := reader.read(_COPY_CHUNK_BYTES):
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(target.parent)
    return digest.hexdigest()


def _atomic_write(*, target: Path, data: bytes) -> None:
    temporary = _temporary_name(target)
    try:
        with temporary.open("xb") as writer:
            writer.write(data)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; without it a crash can lose a job we already reported submitted.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def move_ticket(
    *, folder: Path, ticket_path: Path, directory: str, extra: Mapping[str, str] | None = None
) -> Path:
    """Move a ticket (and its print file) into a state sub-folder; used by devices and tests."""
    target_dir = folder / directory
    target_dir.mkdir(exist_ok=True)
    ticket = _read_ticket(ticket_path)
    if extra:
        ticket.update(extra)
        _atomic_write(target=ticket_path, data=json.dumps(ticket, indent=2, sort_keys=True).encode())
    file_name = Path(str(ticket.get("file_name", ""))).name
    if file_name and (folder / file_name).is_file():
        shutil.move(folder / file_name, target_dir / file_name)
    target = target_dir / ticket_path.name
    os.replace(ticket_path, target)
    _fsync_directory(folder)
    _fsync_directory(target_dir)
    return target
