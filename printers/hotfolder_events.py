"""Job events of hot folders for the printer-events listener: a ticket the device moved into processing/,
done/ or error/ since the last pull (printers/hotfolder.py has the folder convention).

A pull costs one stat() per state folder of each watched printer; a folder is listed only when its
modification time changed (a rename into or out of it changes it), or changed recently: two renames within
one timestamp tick of a coarse filesystem leave one time, so a folder changed in the last RECENT_SECONDS is
listed again at each pull. Works on network shares (NFS attribute caching only delays it), where inotify
sees nothing; what it still misses, the poll reads.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

from printers.base import EventBatch, EventFeed, JobNotice
from printers.hotfolder import DONE_DIR, ERROR_DIR, PROCESSING_DIR, STATE_BY_DIRECTORY, TICKET_SUFFIX

WATCHED_DIRECTORIES = (PROCESSING_DIR, DONE_DIR, ERROR_DIR)
RECENT_SECONDS = 2.0


class HotFolderEventFeed(EventFeed):
    """`feed.watch([folder, ...]); feed.pull()`: tickets that reached a state folder since the last pull."""

    def __init__(self) -> None:
        self._folders: frozenset[Path] = frozenset()
        # state folder -> (its modification time in ns, or None while it does not exist; ticket names in it)
        self._seen: dict[Path, tuple[int | None, frozenset[str]]] = {}
        self._is_complete = False

    def watch(self, targets: Iterable[str]) -> None:
        folders = frozenset(Path(target) for target in targets)
        if folders - self._folders:
            self._is_complete = False  # a folder not watched before: what happened in it was not heard
        self._folders = folders
        self._seen = {path: seen for path, seen in self._seen.items() if path.parent in folders}

    def pull(self) -> EventBatch:
        is_complete, self._is_complete = self._is_complete, True
        notices: list[JobNotice] = []
        now_ns = time.time_ns()
        for folder in sorted(self._folders):
            for name in WATCHED_DIRECTORIES:
                directory = folder / name
                modified = _modified_ns(directory)
                previous = self._seen.get(directory)
                recent = modified is not None and now_ns - modified < RECENT_SECONDS * 1e9
                if previous is not None and previous[0] == modified and not recent:
                    continue
                tickets = _ticket_names(directory)
                if previous is not None:
                    notices.extend(
                        JobNotice(
                            handle=handle,
                            title=_ticket_title(directory / f"{handle}{TICKET_SUFFIX}"),
                            state=STATE_BY_DIRECTORY[name],
                        )
                        for handle in sorted(tickets - previous[1])
                    )
                self._seen[directory] = (modified, tickets)
        return EventBatch(jobs=tuple(notices), is_complete=is_complete)


def _modified_ns(directory: Path) -> int | None:
    try:
        return directory.stat().st_mtime_ns
    except OSError:
        return None


def _ticket_names(directory: Path) -> frozenset[str]:
    names: set[str] = set()
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            if entry.name.endswith(TICKET_SUFFIX) and not entry.name.startswith("."):
                names.add(entry.name.removesuffix(TICKET_SUFFIX))
    return frozenset(names)


def _ticket_title(path: Path) -> str:
    # The title names our job, for a job whose submit has not saved the handle yet; a ticket moved on
    # meanwhile (or unreadable) has none, and the handle still names it.
    try:
        ticket = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    return str(ticket.get("title", "")) if isinstance(ticket, dict) else ""
