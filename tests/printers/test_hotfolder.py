import errno
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from printers import errors, hotfolder
from printers.base import JobState, PrinterState
from printers.hotfolder import HotFolderBackend, move_ticket


def _submit(backend: HotFolderBackend, source: Path, *, title: str = "lab-job-1") -> str:
    return backend.submit(
        path=source, title=title, media="na_index-4x6_4x6in", copies=2, attributes={"finish": "glossy"}
    )


def test_submit_writes_file_and_ticket_atomically(tmp_path: Path, small_jpeg: Path) -> None:
    # given an empty hot folder
    folder = tmp_path / "minilab"
    folder.mkdir()
    backend = HotFolderBackend(folder=folder)

    # when a job is submitted
    job_id = _submit(backend, small_jpeg)

    # then exactly the print file and its ticket are in the inbox, with no temporary files left over
    assert sorted(path.name for path in folder.iterdir()) == [f"{job_id}.jpg", f"{job_id}.json"]
    assert (folder / f"{job_id}.jpg").read_bytes() == small_jpeg.read_bytes()
    ticket = json.loads((folder / f"{job_id}.json").read_text())
    submitted_at = ticket.pop("submitted_at")
    assert submitted_at.endswith("+00:00")
    assert ticket == {
        "job_id": job_id,
        "title": "lab-job-1",
        "media": "na_index-4x6_4x6in",
        "copies": 2,
        "attributes": {"finish": "glossy"},
        "file_name": f"{job_id}.jpg",
        "sha256": hashlib.sha256(small_jpeg.read_bytes()).hexdigest(),
    }


def test_job_ids_are_unique_uuid4_hex(tmp_path: Path, small_jpeg: Path) -> None:
    backend = HotFolderBackend(folder=tmp_path)
    job_ids = {_submit(backend, small_jpeg) for _ in range(20)}
    assert len(job_ids) == 20
    assert all(len(job_id) == 32 and int(job_id, 16) >= 0 for job_id in job_ids)


def test_job_state_follows_the_ticket_through_the_folders(tmp_path: Path, small_jpeg: Path) -> None:
    # given three submitted jobs
    backend = HotFolderBackend(folder=tmp_path)
    printed, failed, waiting = (_submit(backend, small_jpeg, title=f"lab-job-{n}") for n in (1, 2, 3))

    # when the device finishes one and fails one with a reason
    move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{printed}.json", directory="done")
    move_ticket(
        folder=tmp_path,
        ticket_path=tmp_path / f"{failed}.json",
        directory="error",
        extra={"reason": "paper jam"},
    )

    # then each state is read back from where the ticket lies
    assert backend.job_state(printed) is JobState.COMPLETED
    assert backend.job_state(failed) is JobState.ABORTED
    assert backend.job_info(failed).message == "paper jam"
    assert backend.job_state(waiting) is JobState.PENDING
    assert (tmp_path / "done" / f"{printed}.jpg").is_file()


def test_processing_folder_means_processing(tmp_path: Path, small_jpeg: Path) -> None:
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)
    move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{job_id}.json", directory="processing")
    assert backend.job_state(job_id) is JobState.PROCESSING


def test_job_info_carries_the_ticket_time_and_one_document_and_nothing_it_cannot_know(
    tmp_path: Path, small_jpeg: Path
) -> None:
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)
    submitted_at = json.loads((tmp_path / f"{job_id}.json").read_text())["submitted_at"]
    move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{job_id}.json", directory="processing")

    info = backend.job_info(job_id)

    assert (
        info.created_at,
        info.document_count,
        info.processing_started_at,
        info.completed_at,
        info.completed_impressions,
    ) == (int(datetime.fromisoformat(submitted_at).timestamp()), 1, None, None, None)
    assert (info.was_requeued, info.is_missing_document, info.restarted_since(123)) == (False, False, False)


def test_cancel_removes_pending_ticket_and_file_and_records_it(tmp_path: Path, small_jpeg: Path) -> None:
    # given a pending job
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)

    # when it is canceled (twice: the second call is a no-op)
    backend.cancel(job_id)
    backend.cancel(job_id)

    # then the inbox is empty, the ticket is in canceled/ and the state is canceled
    assert sorted(path.name for path in tmp_path.iterdir()) == ["canceled"]
    assert [path.name for path in (tmp_path / "canceled").iterdir()] == [f"{job_id}.json"]
    assert backend.job_state(job_id) is JobState.CANCELED


def test_cancel_of_a_finished_job_is_permanent_error_and_changes_nothing(
    tmp_path: Path, small_jpeg: Path
) -> None:
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)
    move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{job_id}.json", directory="done")

    with pytest.raises(errors.PermanentPrinterError) as raised:
        backend.cancel(job_id)

    assert raised.value.code == "job_not_cancelable"
    assert backend.job_state(job_id) is JobState.COMPLETED


def test_unknown_job_is_permanent_job_not_found(tmp_path: Path) -> None:
    backend = HotFolderBackend(folder=tmp_path)
    for handle in ("0" * 32, "../../etc/passwd", ""):
        with pytest.raises(errors.PermanentPrinterError) as raised:
            backend.job_state(handle)
        assert (raised.value.code, raised.value.is_permanent) == ("job_not_found", True)


def test_jobs_holding_documents_reads_only_the_finished_tickets_whose_print_file_is_still_there(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a done/ with years of tickets whose files were discarded, two that still hold theirs, an aborted
    # one, a job still pending and another installation's finished job
    backend = HotFolderBackend(folder=tmp_path)
    old = [_submit(backend, small_jpeg, title=f"lab-job-{n}") for n in range(20)]
    held = [_submit(backend, small_jpeg, title=f"lab-job-{n}") for n in (100, 101)]
    aborted = _submit(backend, small_jpeg, title="lab-job-102")
    foreign = _submit(backend, small_jpeg, title="other-7")
    for handle in [*old, *held, foreign]:
        move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{handle}.json", directory="done")
    move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{aborted}.json", directory="error")
    pending = _submit(backend, small_jpeg, title="lab-job-103")
    for handle in old:
        assert backend.discard_document(handle) is True
    reads: list[str] = []
    read_ticket = hotfolder._read_ticket

    def counted(path: Path, **options: bool) -> dict[str, object]:
        reads.append(path.stem)
        return read_ticket(path, **options)

    monkeypatch.setattr(hotfolder, "_read_ticket", counted)

    # when the discard sweep asks what still holds a document
    found = backend.jobs_holding_documents(title_prefix="lab-job-")

    # then it gets those that do, oldest first, having read their tickets and the foreign one only
    assert [(job.handle, job.state) for job in found] == [
        (held[0], JobState.COMPLETED),
        (held[1], JobState.COMPLETED),
        (aborted, JobState.ABORTED),
    ]
    assert pending not in reads and not set(old) & set(reads)
    assert sorted(set(reads)) == sorted([*held, aborted, foreign])


def test_find_jobs_by_title_prefix_in_every_state(tmp_path: Path, small_jpeg: Path) -> None:
    # given jobs in several states, one of another order
    backend = HotFolderBackend(folder=tmp_path)
    first = _submit(backend, small_jpeg, title="lab-job-123")
    second = _submit(backend, small_jpeg, title="lab-job-123-reprint")
    _submit(backend, small_jpeg, title="lab-job-999")
    move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{first}.json", directory="done")

    # when the reconciler looks for order 123's jobs
    found = backend.find_jobs(title_prefix="lab-job-123")

    # then it gets both, oldest first, with their states
    assert [(job.handle, job.title, job.state) for job in found] == [
        (first, "lab-job-123", JobState.COMPLETED),
        (second, "lab-job-123-reprint", JobState.PENDING),
    ]


def test_status_online_paused_offline(tmp_path: Path) -> None:
    folder = tmp_path / "minilab"
    backend = HotFolderBackend(folder=folder)

    assert (backend.printer_status().state, backend.printer_status().reasons) == (
        PrinterState.OFFLINE,
        ("offline", "folder-missing"),
    )

    folder.mkdir()
    (folder / "capabilities.json").write_text(
        json.dumps({"media_supported": ["na_5x7_5x7in"], "media_ready": []})
    )
    status = backend.printer_status()
    assert (status.state, status.reasons, status.media_supported) == (
        PrinterState.ONLINE,
        (),
        ("na_5x7_5x7in",),
    )

    (folder / "PAUSED").write_text("ribbon change\n")
    status = backend.printer_status()
    assert (status.state, status.reasons, status.message) == (
        PrinterState.PAUSED,
        ("paused",),
        "ribbon change",
    )


def test_folder_that_is_a_file_is_offline_and_submit_is_transient(tmp_path: Path, small_jpeg: Path) -> None:
    # given a "folder" path that is a regular file (unmounted share leaving a stub behind)
    not_a_folder = tmp_path / "minilab"
    not_a_folder.write_text("")
    backend = HotFolderBackend(folder=not_a_folder)

    assert backend.printer_status().reasons == ("offline", "folder-not-writable")
    with pytest.raises(errors.TransientPrinterError) as raised:
        _submit(backend, small_jpeg)
    assert (raised.value.code, raised.value.is_permanent) == ("printer_unreachable", False)


def test_missing_folder_submit_is_transient_and_writes_nothing(tmp_path: Path, small_jpeg: Path) -> None:
    backend = HotFolderBackend(folder=tmp_path / "gone")
    with pytest.raises(errors.TransientPrinterError):
        _submit(backend, small_jpeg)
    assert not (tmp_path / "gone").exists()


def test_missing_source_file_is_permanent(tmp_path: Path) -> None:
    backend = HotFolderBackend(folder=tmp_path)
    with pytest.raises(errors.PermanentPrinterError) as raised:
        backend.submit(path=tmp_path / "nope.jpg", title="lab-job-1")
    assert raised.value.code == "file_not_found"
    assert list(tmp_path.iterdir()) == []


def test_paused_folder_still_accepts_jobs(tmp_path: Path, small_jpeg: Path) -> None:
    (tmp_path / "PAUSED").touch()
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)
    assert backend.job_state(job_id) is JobState.PENDING


def test_ticket_is_written_last_so_a_device_never_sees_a_partial_job(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a device that records what *.json tickets exist at every rename into the folder
    seen: list[tuple[str, bool]] = []
    real_replace = os.replace

    def observing_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        real_replace(source, target)
        for ticket in Path(tmp_path).glob("*.json"):
            seen.append(
                (Path(target).name, (tmp_path / json.loads(ticket.read_text())["file_name"]).is_file())
            )

    monkeypatch.setattr(os, "replace", observing_replace)

    # when a job is submitted
    job_id = HotFolderBackend(folder=tmp_path).submit(path=small_jpeg, title="lab-job-1")

    # then the only time a ticket was visible its print file was already complete
    assert seen == [(f"{job_id}.json", True)]


# --- A folder that does not answer is no answer -----------------------------------------------------------
# An empty answer from find_jobs, or job_not_found from job_info, tells the lab that nothing of ours is at the
# printer: a reroute then sends the job elsewhere, a last attempt fails it for a resend, a submitted job is
# called lost. Before, a folder that was gone (an unmounted share, a NAS rebooting) gave exactly those
# answers, and a folder that could not be searched (re-owned by the device) raised a bare PermissionError
# that no caller catches.


def _unplugged(tmp_path: Path, small_jpeg: Path) -> tuple[HotFolderBackend, str, Path]:
    """A pending job in a hot folder that then goes away (the share unmounted): renamed elsewhere."""
    folder = tmp_path / "minilab"
    folder.mkdir()
    backend = HotFolderBackend(folder=folder)
    job_id = _submit(backend, small_jpeg)
    away = tmp_path / "unmounted"
    folder.rename(away)
    return backend, job_id, away


@pytest.mark.parametrize("stub", ["gone", "a file in its place"])
def test_reads_of_a_folder_that_is_not_there_are_transient_not_nothing_found(
    tmp_path: Path, small_jpeg: Path, stub: str
) -> None:
    backend, job_id, away = _unplugged(tmp_path, small_jpeg)
    if stub == "a file in its place":
        backend.folder.write_text("")  # the stub an unmounted share can leave behind

    reads: dict[str, Callable[[], object]] = {
        "find_jobs": lambda: backend.find_jobs(title_prefix="lab-job-"),
        "job_info": lambda: backend.job_info(job_id),
        "job_info_of": lambda: backend.job_info_of(job_id, title="lab-job-1"),
        "cancel": lambda: backend.cancel(job_id),
        "cancel_of": lambda: backend.cancel_of(job_id, title="lab-job-1"),
    }
    for name, read in reads.items():
        with pytest.raises(errors.TransientPrinterError) as raised:
            read()
        assert (name, raised.value.code) == (name, "printer_unreachable")

    # and once the folder is back, the job is found where it was, still pending: the cancel changed nothing
    if stub == "a file in its place":
        backend.folder.unlink()
    away.rename(backend.folder)
    assert [job.handle for job in backend.find_jobs(title_prefix="lab-job-")] == [job_id]
    assert backend.job_state(job_id) is JobState.PENDING


def _unsearchable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """The folder's contents cannot be read or searched (EACCES: the device re-owned it). The tests run as
    root, whom permissions do not stop, so the refusal is the filesystem calls'."""
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    def guarded(real: Any, *, listing: bool) -> Any:
        def call(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
            target = Path(os.fsdecode(path)) if isinstance(path, str | bytes | os.PathLike) else Path(".")
            if target.is_relative_to(folder) and (listing or target != folder):
                raise denied
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "stat", guarded(os.stat, listing=False))
    monkeypatch.setattr(os, "listdir", guarded(os.listdir, listing=True))
    monkeypatch.setattr(os, "scandir", guarded(os.scandir, listing=True))


def test_reads_of_a_folder_that_cannot_be_searched_are_transient_printer_errors(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)
    _unsearchable(monkeypatch, tmp_path)

    for read in (
        lambda: backend.find_jobs(title_prefix="lab-job-"),
        lambda: backend.job_info(job_id),
        lambda: backend.cancel(job_id),
    ):
        with pytest.raises(errors.TransientPrinterError) as raised:
            read()
        assert raised.value.code == "printer_unreachable"
    assert backend.printer_status().state is PrinterState.OFFLINE  # not a bare PermissionError either


def test_a_folder_the_lab_may_write_but_not_list_is_offline_not_a_printer_that_never_finishes(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a folder the lab may write into and search but not list (a drop-box share: mode 0733); the tests
    # run as root, so the permission is refused by os.access as it would be for the lab's user
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)
    real_access = os.access

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if Path(os.fsdecode(path)) == tmp_path and mode & os.R_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)

    # then every read of its jobs is unanswered, and the printer is offline for it: no job is sent there to be
    # never seen printed (before: online, and its jobs stayed `submitted` with no alert)
    with pytest.raises(errors.TransientPrinterError):
        backend.job_info(job_id)
    status = backend.printer_status()
    assert (status.state, status.reasons) == (PrinterState.OFFLINE, ("offline", "folder-not-readable"))


def test_an_error_while_listing_a_state_folder_is_transient(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a job printed into done/, which then cannot be listed (a failing disk, a stale network handle)
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)
    move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{job_id}.json", directory="done")
    real_listdir, real_scandir = os.listdir, os.scandir

    def failing(real: Any) -> Any:
        def call(path: Any = ".") -> Any:
            if Path(os.fsdecode(path)) == tmp_path / "done":
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real(path)

        return call

    monkeypatch.setattr(os, "listdir", failing(real_listdir))
    monkeypatch.setattr(os, "scandir", failing(real_scandir))

    # then the search says it could not look, not that there is nothing
    with pytest.raises(errors.TransientPrinterError):
        backend.find_jobs(title_prefix="lab-job-")


def test_a_missing_state_folder_still_means_no_ticket_there(tmp_path: Path, small_jpeg: Path) -> None:
    # given a hot folder whose device never made processing/, done/, error/ or canceled/
    backend = HotFolderBackend(folder=tmp_path)
    assert backend.find_jobs(title_prefix="lab-job-") == []
    with pytest.raises(errors.PermanentPrinterError) as raised:
        backend.job_info("0" * 32)
    assert raised.value.code == "job_not_found"

    # and with a job in the inbox, it is found there
    job_id = _submit(backend, small_jpeg)
    assert [(job.handle, job.state) for job in backend.find_jobs(title_prefix="lab-job-")] == [
        (job_id, JobState.PENDING)
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{job_id}.jpg", f"{job_id}.json"]


# --- A state sub-folder or a ticket the lab cannot read is offline, not jobs never seen printed -------------
# The device makes done/ 0700 under its own user, or writes its tickets 0600: before, the printer stayed
# online while every read of a job there failed (job_info, find_jobs), so its jobs stayed `submitted` for
# ever, reroutes and withdrawals were refused, and nothing was alerted.


def _refused_access(monkeypatch: pytest.MonkeyPatch, refused: Path) -> None:
    """os.access says no for `refused`, as it would for the lab's user; the tests run as root."""
    real_access = os.access

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if Path(os.fsdecode(path)) == refused:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def _printed(backend: HotFolderBackend, source: Path) -> str:
    job_id = _submit(backend, source)
    move_ticket(folder=backend.folder, ticket_path=backend.folder / f"{job_id}.json", directory="done")
    return job_id


def test_a_state_folder_the_lab_cannot_read_is_offline_not_a_printer_whose_jobs_never_print(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a printed job, whose done/ the device then re-owned (0700, its own user)
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _printed(backend, small_jpeg)
    _refused_access(monkeypatch, tmp_path / "done")
    _unsearchable(monkeypatch, tmp_path / "done")

    # then its job cannot be read (as before), and the printer says so: offline, so the lab sends no more jobs
    # there and the printer-down alert fires (before: online, the job `submitted` for ever, no alert)
    with pytest.raises(errors.TransientPrinterError):
        backend.job_info(job_id)
    status = backend.printer_status()
    assert (status.state, status.reasons) == (PrinterState.OFFLINE, ("offline", "state-folder-unreadable"))
    assert status.message.startswith("done/")


def test_a_ticket_the_lab_cannot_read_is_offline_not_a_job_that_never_prints(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a job the device is printing, whose ticket it rewrote 0600 under its own user
    backend = HotFolderBackend(folder=tmp_path)
    job_id = _submit(backend, small_jpeg)
    move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{job_id}.json", directory="processing")
    ticket = tmp_path / "processing" / f"{job_id}.json"
    _refused_access(monkeypatch, ticket)
    real_open = io.open

    def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | bytes | os.PathLike) and Path(os.fsdecode(file)) == ticket:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", open_)

    with pytest.raises(errors.TransientPrinterError):
        backend.job_info(job_id)
    status = backend.printer_status()
    assert (status.state, status.reasons) == (PrinterState.OFFLINE, ("offline", "ticket-unreadable"))
    assert status.message == f"processing/{job_id}.json cannot be read"


def test_the_status_checks_no_ticket_of_the_finished_jobs_one_by_one(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a printer whose done/ keeps every ticket for good (a year of them on a share)
    backend = HotFolderBackend(folder=tmp_path)
    _printed(backend, small_jpeg)
    _printed(backend, small_jpeg)
    checked: list[Path] = []
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        checked.append(Path(os.fsdecode(path)))
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)

    status = backend.printer_status()

    assert status.state is PrinterState.ONLINE
    assert not [path for path in checked if path.parent == tmp_path / "done"]


def test_state_folders_and_tickets_the_lab_can_read_leave_the_printer_online(
    tmp_path: Path, small_jpeg: Path
) -> None:
    # given a job in each state folder, and one still pending
    backend = HotFolderBackend(folder=tmp_path)
    for directory in ("processing", "done", "error", "canceled"):
        job_id = _submit(backend, small_jpeg)
        move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{job_id}.json", directory=directory)
    _submit(backend, small_jpeg)

    status = backend.printer_status()
    assert (status.state, status.reasons) == (PrinterState.ONLINE, ())

    # and a ticket moved away between the listing and its check is no unreadable ticket
    moved = _submit(backend, small_jpeg)
    real_listdir = os.listdir

    def listdir_then_moved(path: Any = ".") -> list[str]:
        names = real_listdir(path)
        if Path(os.fsdecode(path)) == tmp_path and (tmp_path / f"{moved}.json").exists():
            move_ticket(folder=tmp_path, ticket_path=tmp_path / f"{moved}.json", directory="processing")
        return names

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(os, "listdir", listdir_then_moved)
        assert backend.printer_status().state is PrinterState.ONLINE


def test_unfinished_sends_discard_erases_only_the_backend_s_own_names(tmp_path: Path) -> None:
    # given a folder holding, all an hour old: what a killed send of this backend leaves (a print file no
    # ticket names, a print file's and a ticket's hidden temporaries), and what the photo vault keeps in a
    # shard (a bare 32-hex blob, its `<hex>.tmp` temporary) and other names that only look alike
    own = [
        "0123456789abcdef0123456789abcdef.jpg",
        "0123456789abcdef0123456789abcde0.tif",
        ".0123456789abcdef0123456789abcde1.jpg.fedcba9876543210fedcba9876543210.tmp",
        ".0123456789abcdef0123456789abcde2.json.fedcba9876543210fedcba9876543210.tmp",
    ]
    foreign = [
        "0123456789abcdef0123456789abcde3",  # a vault blob
        "0123456789abcdef0123456789abcde4.tmp",  # a vault temporary
        ".0123456789abcdef0123456789abcde5.tmp",
        "0123456789abcdef0123456789abcde6.bin",
        ".notes.tmp",
    ]
    an_hour_ago = datetime.now().timestamp() - 3600
    for name in [*own, *foreign]:
        (tmp_path / name).write_bytes(b"bytes")
        os.utime(tmp_path / name, (an_hour_ago, an_hour_ago))

    # when the leftovers of sends older than half an hour are discarded
    erased = HotFolderBackend(folder=tmp_path).unfinished_sends_discard(older_than=an_hour_ago + 1800)

    # then the backend's own are gone, and nothing else is (before, the vault's two were erased too)
    assert erased == len(own)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(foreign)


def test_a_cancelled_job_s_print_file_left_in_the_inbox_is_erased_and_a_live_job_s_is_kept(
    tmp_path: Path, small_jpeg: Path
) -> None:
    # given three sends an hour old: one cancelled by a process that died between moving its ticket into
    # canceled/ and unlinking its print file, one still pending, one the device prints from the inbox
    backend = HotFolderBackend(folder=tmp_path)
    cancelled, pending, processing = (_submit(backend, small_jpeg, title=f"lab-job-{n}") for n in range(3))
    (tmp_path / "canceled").mkdir()
    os.replace(tmp_path / f"{cancelled}.json", tmp_path / "canceled" / f"{cancelled}.json")
    (tmp_path / "processing").mkdir()
    os.replace(tmp_path / f"{processing}.json", tmp_path / "processing" / f"{processing}.json")
    an_hour_ago = datetime.now().timestamp() - 3600
    for job_id in (cancelled, pending, processing):
        os.utime(tmp_path / f"{job_id}.jpg", (an_hour_ago, an_hour_ago))

    # when the sweep discards what unfinished sends left (a second cancel() of that job changes nothing)
    backend.cancel(cancelled)
    erased = backend.unfinished_sends_discard(older_than=an_hour_ago + 1800)

    # then the cancelled job's print file is gone (before, it stayed in the clear for good), and the live
    # jobs' files are kept
    assert erased == 1
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == sorted(
        [f"{pending}.jpg", f"{pending}.json", f"{processing}.jpg"]
    )
    assert backend.job_state(cancelled) is JobState.CANCELED


# --- What a send commits to disk, and what stays the device's ---------------------------------------------
# Once the ticket is renamed into the inbox the job is the device's, file and all: a failure after that (the
# folder's fsync) must not take the print file from under a ticket the device may already be printing.


def _folder_fsync_failing_after_the_ticket(
    monkeypatch: pytest.MonkeyPatch, *, device_takes_ticket_to: str = ""
) -> None:
    """The folder's fsync after the ticket's rename (the send's second one) fails with EIO; before it fails, a
    fast device may have moved the ticket (only the ticket: it reads the file from the inbox) to a state
    sub-folder."""
    real_fsync_directory = hotfolder._fsync_directory
    calls: list[Path] = []

    def fsync_directory(directory: Path) -> None:
        calls.append(directory)
        if len(calls) < 2:
            real_fsync_directory(directory)
            return
        if device_takes_ticket_to:
            (ticket,) = directory.glob("*.json")
            (directory / device_takes_ticket_to).mkdir()
            os.replace(ticket, directory / device_takes_ticket_to / ticket.name)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(hotfolder, "_fsync_directory", fsync_directory)


def _only_ticket(folder: Path) -> dict[str, Any]:
    (ticket,) = folder.glob("*.json")
    return dict(json.loads(ticket.read_text()))


def test_a_send_whose_folder_fsync_fails_after_its_ticket_leaves_the_job_and_its_file_to_the_device(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a folder whose fsync after the ticket's rename fails
    backend = HotFolderBackend(folder=tmp_path)
    _folder_fsync_failing_after_the_ticket(monkeypatch)

    # when a job is submitted
    with pytest.raises(errors.TransientPrinterError) as raised:
        _submit(backend, small_jpeg, title="lab-job-7")

    # then the send is reported unsure, and the ticket and the file it names both stay in the inbox: a
    # pending job that the lab finds again by its title
    assert raised.value.code == "printer_unreachable"
    ticket = _only_ticket(tmp_path)
    job_id = ticket["job_id"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{job_id}.jpg", f"{job_id}.json"]
    assert ticket["file_name"] == f"{job_id}.jpg"
    assert (tmp_path / f"{job_id}.jpg").read_bytes() == small_jpeg.read_bytes()
    assert [(job.handle, job.state) for job in backend.find_jobs(title_prefix="lab-job-7")] == [
        (job_id, JobState.PENDING)
    ]


def test_a_send_whose_ticket_the_device_took_before_the_folder_fsync_failed_keeps_its_print_file(
    tmp_path: Path, small_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a device that moves a new ticket into processing/ at once, printing its file from the inbox, and
    # the folder's fsync after the ticket's rename failing just after that move
    backend = HotFolderBackend(folder=tmp_path)
    _folder_fsync_failing_after_the_ticket(monkeypatch, device_takes_ticket_to="processing")

    # when a job is submitted
    with pytest.raises(errors.TransientPrinterError):
        _submit(backend, small_jpeg, title="lab-job-8")

    # then the file the device is printing is still there (before, the send looked for its ticket in the
    # inbox only, found none and erased the file under the device's ticket)
    ticket = _only_ticket(tmp_path / "processing")
    job_id = ticket["job_id"]
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == [f"{job_id}.jpg"]
    assert (tmp_path / ticket["file_name"]).read_bytes() == small_jpeg.read_bytes()
    assert [(job.handle, job.state) for job in backend.find_jobs(title_prefix="lab-job-8")] == [
        (job_id, JobState.PROCESSING)
    ]


@pytest.fixture
def disk_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str]]:
    """What the backend asks of the disk, in order: each fsync with what it synced, each rename with its
    target and each unlink with its file, as paths relative to the hot folder (tmp_path; "." for the folder
    itself), a temporary as `temporary <its target's name>`. The real calls are made."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink
    folder = tmp_path.resolve()

    def named(path: Path) -> str:
        relative = path.resolve().relative_to(folder)
        temporary = re.fullmatch(r"\.(.+)\.[0-9a-f]{32}\.tmp", relative.name)
        return f"temporary {temporary.group(1)}" if temporary else str(relative)

    def fsync(fd: int) -> None:
        calls.append(("fsync", named(Path(os.readlink(f"/proc/self/fd/{fd}")))))
        real_fsync(fd)

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        real_replace(source, target)
        calls.append(("replace", named(Path(target))))

    def unlink(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        name = named(Path(path))
        real_unlink(path, *args, **kwargs)
        calls.append(("unlink", name))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    return calls


def test_a_send_and_a_cancel_fsync_each_file_and_each_rename_the_ticket_last(
    tmp_path: Path, small_jpeg: Path, disk_calls: list[tuple[str, str]]
) -> None:
    # given an empty hot folder
    backend = HotFolderBackend(folder=tmp_path)

    # when a job is submitted
    job_id = _submit(backend, small_jpeg)

    # then the print file's bytes, its name, the ticket's bytes and then its name are each on disk before
    # submit returns: a job reported submitted survives a power loss, and its ticket never names a lost file
    assert disk_calls == [
        ("fsync", f"temporary {job_id}.jpg"),
        ("replace", f"{job_id}.jpg"),
        ("fsync", "."),
        ("fsync", f"temporary {job_id}.json"),
        ("replace", f"{job_id}.json"),
        ("fsync", "."),
    ]

    # when it is cancelled
    disk_calls.clear()
    backend.cancel(job_id)

    # then the ticket's move is on disk in both folders before cancel returns, the inbox first: after a power
    # loss the device does not find it back in the inbox and print it, and it is not lost from canceled/;
    # and the print file's removal is on disk too (a plain copy of the photo does not come back after a power
    # loss to wait for the sweep)
    assert disk_calls == [
        ("replace", f"canceled/{job_id}.json"),
        ("fsync", "."),
        ("fsync", "canceled"),
        ("unlink", f"{job_id}.jpg"),
        ("fsync", "."),
    ]
