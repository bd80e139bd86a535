"""The hot-folder event feed of the printer-events listener on real folders: a ticket the device moves into a
state folder is heard once with its state; a folder newly watched makes the batch incomplete."""

from __future__ import annotations

import os
import time
from pathlib import Path

from printers.base import JobNotice, JobState
from printers.hotfolder import DONE_DIR, ERROR_DIR, PROCESSING_DIR, HotFolderBackend, move_ticket
from printers.hotfolder_events import RECENT_SECONDS, HotFolderEventFeed


def folder_at(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    return folder


def test_tickets_moved_by_devices_are_heard_once_each_with_their_state(
    tmp_path: Path, small_jpeg: Path
) -> None:
    # given two hot folders, each with a submitted job, and a feed that has pulled once
    left, right = folder_at(tmp_path, "left"), folder_at(tmp_path, "right")
    left_job = HotFolderBackend(folder=left).submit(path=small_jpeg, title="lab-job-1")
    right_job = HotFolderBackend(folder=right).submit(path=small_jpeg, title="lab-job-2")
    feed = HotFolderEventFeed()
    feed.watch([str(left), str(right)])
    first = feed.pull()

    # when one device starts its job, the other fails its job, and the first then finishes
    move_ticket(folder=left, ticket_path=left / f"{left_job}.json", directory=PROCESSING_DIR)
    move_ticket(folder=right, ticket_path=right / f"{right_job}.json", directory=ERROR_DIR)
    started = feed.pull()
    move_ticket(folder=left, ticket_path=left / PROCESSING_DIR / f"{left_job}.json", directory=DONE_DIR)
    finished = feed.pull()

    # then the first pull was incomplete (nothing was heard before it) and had no news; each move was heard
    # once, with the state its folder means; and the jobs submitted (inbox) are not news
    assert (first.is_complete, first.jobs) == (False, ())
    assert started.is_complete and sorted(started.jobs, key=lambda notice: notice.handle) == sorted(
        [
            JobNotice(handle=left_job, title="lab-job-1", state=JobState.PROCESSING),
            JobNotice(handle=right_job, title="lab-job-2", state=JobState.ABORTED),
        ],
        key=lambda notice: notice.handle,
    )
    assert (finished.is_complete, finished.jobs) == (
        True,
        (JobNotice(handle=left_job, title="lab-job-1", state=JobState.COMPLETED),),
    )
    assert feed.pull().jobs == ()


def test_a_move_within_the_same_timestamp_is_still_heard(tmp_path: Path, small_jpeg: Path) -> None:
    # given a done/ folder whose modification time is set back to what the feed saw (a coarse clock tick)
    folder = folder_at(tmp_path, "coarse")
    (folder / DONE_DIR).mkdir()
    job = HotFolderBackend(folder=folder).submit(path=small_jpeg, title="lab-job-1")
    feed = HotFolderEventFeed()
    feed.watch([str(folder)])
    feed.pull()
    seen = (folder / DONE_DIR).stat()
    move_ticket(folder=folder, ticket_path=folder / f"{job}.json", directory=DONE_DIR)
    os.utime(folder / DONE_DIR, ns=(seen.st_atime_ns, seen.st_mtime_ns))

    # when the feed pulls while that time is recent, and again
    heard, again = feed.pull(), feed.pull()

    # then the folder was listed again and the move heard, once
    assert time.time_ns() - seen.st_mtime_ns < RECENT_SECONDS * 1e9
    assert [notice.handle for notice in heard.jobs] == [job]
    assert again.jobs == ()


def test_a_folder_watched_later_makes_the_batch_incomplete(tmp_path: Path) -> None:
    first, later = folder_at(tmp_path, "first"), folder_at(tmp_path, "later")
    feed = HotFolderEventFeed()
    feed.watch([str(first)])
    feed.pull()
    assert feed.pull().is_complete

    feed.watch([str(first), str(later)])

    assert feed.pull().is_complete is False
    assert feed.pull().is_complete is True
