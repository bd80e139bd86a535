"""Print documents left at printers are erased once nothing here will look at their jobs again (hot folders
here; the CUPS purge against a private cupsd in tests/printers/test_cups_backend.py and end to end in
tests/e2e/test_production_cups.py)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from billiard.exceptions import SoftTimeLimitExceeded

from lab.privacy.vault import vault_read
from lab.production import print_folders, rasterizing, routing, spool, submission, tracking
from lab.production.jobs import job_move
from lab.production.models import JobEvent, Printer, PrintJob
from lab.production.resolutions import job_resolve_unknown
from lab.production.states import JobStatus
from printers import hotfolder
from printers.hotfolder_device import process_pending
from tests.builders import (
    WORKER,
    asset_for,
    blob_path,
    hotfolder_printer,
    paid_order,
    person,
    printer_folder,
    released_order,
)
from tests.support.dba import dba

pytestmark = pytest.mark.django_db


def _sent(job: PrintJob) -> PrintJob:
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    job.refresh_from_db()
    return job


@pytest.fixture(autouse=True)
def _own_temporary_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sends' folders live under the system's temporary directory, which other tests' sends (the other
    # xdist worker's, an e2e worker killed mid-send) share: this module's sends get one of their own.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmp")))


def _names(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


def _print_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*.jpg"))


def test_the_print_files_of_printed_jobs_are_erased_and_their_tickets_kept():
    # given two jobs the device printed, the poll has read
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-GLOSSY", 1)])
    routing.order_release(order_id=order.pk)
    jobs = [_sent(job) for job in PrintJob.objects.order_by("pk")]
    folder = printer_folder(printer)
    process_pending(folder=folder, delay_seconds=0)
    tracking.printer_poll()
    assert {job.status for job in PrintJob.objects.all()} == {JobStatus.PRINTED}
    assert _print_files(folder) == sorted(f"done/{job.backend_job_id}.jpg" for job in jobs)

    # when the sweep runs, then the customer's images are gone from the printer; the tickets say what printed
    assert spool.printer_documents_discard() == {"discarded": 2}
    assert _print_files(folder) == []
    assert sorted(path.name for path in (folder / "done").glob("*.json")) == sorted(
        f"{job.backend_job_id}.json" for job in jobs
    )
    # and a second sweep finds nothing left to erase, without reading those tickets again
    assert spool.printer_documents_discard() == {}


def test_a_job_the_device_finished_is_kept_while_its_print_job_may_still_look_for_it():
    # given jobs the device printed, before the poll read them: one still `submitted`, one a person must
    # judge (`suspect`), and one waiting for a retry that looks at the printer for an earlier attempt
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-GLOSSY", 1), ("PRINT-4X6-LUSTRE", 2)])
    routing.order_release(order_id=order.pk)
    submitted, suspect, retrying = (_sent(job) for job in PrintJob.objects.order_by("pk"))
    folder = printer_folder(printer)
    process_pending(folder=folder, delay_seconds=0)
    assert job_move(job_id=suspect.pk, from_statuses={JobStatus.SUBMITTED}, to_status=JobStatus.SUSPECT)
    assert job_move(job_id=retrying.pk, from_statuses={JobStatus.SUBMITTED}, to_status=JobStatus.READY)

    # when the sweep runs, then every print file stays
    assert spool.printer_documents_discard() == {"kept": 3}
    assert len(_print_files(folder)) == 3
    assert PrintJob.objects.get(pk=submitted.pk).status == JobStatus.SUBMITTED


def test_a_cancelled_job_is_erased_only_once_the_printer_has_cancelled_it():
    # given a job a supervisor cancelled whose cancel at the printer is still pending, and a superseded
    # attempt the printer cancelled while its print job tracks a later one
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-GLOSSY", 1)])
    routing.order_release(order_id=order.pk)
    pending_cancel, superseded = (_sent(job) for job in PrintJob.objects.order_by("pk"))
    folder = printer_folder(printer)
    process_pending(folder=folder, delay_seconds=0)
    assert job_move(
        job_id=pending_cancel.pk,
        from_statuses={JobStatus.SUBMITTED},
        to_status=JobStatus.CANCELLED,
        cancel_at_printer=True,
    )
    first_attempt = superseded.backend_job_id
    PrintJob.objects.filter(pk=superseded.pk).update(backend_job_id="0" * 32)
    (folder / "canceled").mkdir(exist_ok=True)
    (folder / "done" / f"{first_attempt}.json").rename(folder / "canceled" / f"{first_attempt}.json")
    (folder / "done" / f"{first_attempt}.jpg").rename(folder / "canceled" / f"{first_attempt}.jpg")

    # when the sweep runs, then the superseded attempt's file goes; the pending cancel's stays
    assert spool.printer_documents_discard() == {"discarded": 1, "kept": 1}
    assert _print_files(folder) == [f"done/{pending_cancel.backend_job_id}.jpg"]

    # once the printer side is settled, it goes too
    PrintJob.objects.filter(pk=pending_cancel.pk).update(cancel_at_printer=False)
    assert spool.printer_documents_discard() == {"discarded": 1}
    assert _print_files(folder) == []


def test_a_copy_a_person_rejected_is_erased_though_its_job_was_sent_again_under_a_new_title(tmp_path: Path):
    # given a job the device printed while its server restarted (`suspect`), judged not printed by a person
    # and sent again under a new title, printed this time
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    routing.order_release(order_id=paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]).pk)
    job = _sent(PrintJob.objects.get())
    folder = printer_folder(printer)
    rejected = process_pending(folder=folder, delay_seconds=0)
    PrintJob.objects.filter(pk=job.pk).update(backend_restarted=True)
    tracking.printer_poll()
    job.refresh_from_db()
    assert job.status == JobStatus.SUSPECT
    rejected_token = job.title_token
    job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    # and another installation's copy of the same job id, under a token this job never carried, over there
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8 another lab's customer's photo")
    foreign_title = f"lab-job-{job.pk}-00000000"
    assert foreign_title != job.title and rejected_token != "00000000"
    foreign = hotfolder.HotFolderBackend(folder=folder).submit(path=photo, title=foreign_title)
    resent = process_pending(folder=folder, delay_seconds=0)
    tracking.printer_poll()
    job.refresh_from_db()
    assert (job.status, sorted(resent)) == (JobStatus.PRINTED, sorted([job.backend_job_id, foreign]))

    # when the sweep runs
    counts = spool.printer_documents_discard()

    # then both copies of our job are erased (before: the rejected one was kept for ever, its title no longer
    # the job's), the other installation's is not touched, and the re-title recorded the token it gave up
    assert counts == {"discarded": 2, "kept": 1}
    assert _print_files(folder) == [f"done/{foreign}.jpg"]
    assert rejected == [rejected[0]] and not (folder / "done" / f"{rejected[0]}.jpg").exists()
    superseded = JobEvent.objects.filter(job=job, kind="title_superseded")
    assert list(superseded.values_list("note", flat=True)) == [rejected_token]


def test_a_copy_still_waiting_under_a_title_its_job_gives_up_is_withdrawn_and_leaves_no_file():
    # given a job whose fate nobody knows while its copy still waits in the hot folder
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    routing.order_release(order_id=paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]).pk)
    job = _sent(PrintJob.objects.get())
    assert job_move(job_id=job.pk, from_statuses={JobStatus.SUBMITTED}, to_status=JobStatus.UNKNOWN)
    folder = printer_folder(printer)
    assert _print_files(folder) == [f"{job.backend_job_id}.jpg"]

    # when a person sends it again under a new title (the new send not made yet)
    job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)

    # then the waiting copy was withdrawn at the printer with its file (before: it stayed, printed along with
    # the new one, and only the sweep erased its file once the device was done with it), and the device
    # prints nothing of it; the sweep has nothing left to erase
    assert _print_files(folder) == []
    assert process_pending(folder=folder, delay_seconds=0) == []
    assert spool.printer_documents_discard() == {}


def _two_minilabs_with_a_printed_job_each() -> tuple[Path, Path]:
    first, second = hotfolder_printer("four", sizes=["4x6"]), hotfolder_printer("eight", sizes=["8x10"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    released_order(lines=[("PRINT-8X10-LUSTRE", 1)])
    jobs = [_sent(job) for job in PrintJob.objects.order_by("pk")]
    assert [job.printer_id for job in jobs] == [first.pk, second.pk]
    folders = printer_folder(first), printer_folder(second)
    for folder in folders:
        process_pending(folder=folder, delay_seconds=0)
    tracking.printer_poll()
    assert {job.status for job in PrintJob.objects.all()} == {JobStatus.PRINTED}
    return folders


def test_a_print_file_that_cannot_be_erased_does_not_stop_the_sweep_at_the_next_printers(monkeypatch):
    # given two minilabs each holding a printed job's file, the first one's file not erasable (a folder the
    # device re-owned, a failing disk)
    first, second = _two_minilabs_with_a_printed_job_each()
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.is_relative_to(first):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)

    # when the sweep runs, then the second minilab's file is erased and the failure counted (before: the
    # PermissionError ended the sweep, every run, before it reached the second minilab)
    assert spool.printer_documents_discard() == {"discarded": 1, "failed": 1}
    assert (len(_print_files(first)), _print_files(second)) == (1, [])


def test_a_hot_folder_that_cannot_be_read_does_not_stop_the_sweep_at_the_next_printers(monkeypatch):
    # given two minilabs each holding a printed job's file, the first one's done/ not readable
    first, second = _two_minilabs_with_a_printed_job_each()
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if isinstance(path, str | os.PathLike) and Path(path).is_relative_to(first / "done"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_scandir(path)  # type: ignore[call-overload]

    # when the sweep runs
    with monkeypatch.context() as patched:
        patched.setattr(os, "scandir", scandir)
        counts = spool.printer_documents_discard()

    # then the second minilab's file is erased and the first one counted unreachable (before: the
    # PermissionError ended the sweep, every run, before it reached the second minilab)
    assert counts == {"discarded": 1, "printers_unreachable": 1}
    assert (len(_print_files(first)), _print_files(second)) == (1, [])


def test_a_send_stopped_between_its_print_file_and_its_ticket_leaves_no_file(monkeypatch):
    # given a send that the task's soft time limit stops after the print file, before its ticket (before, only
    # an OSError there removed the file: this one stayed in the inbox, in the clear, named by no ticket)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    routing.order_release(order_id=paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]).pk)
    job = PrintJob.objects.get()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"

    def time_limit_reached(**kwargs: object) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(hotfolder, "_atomic_write", time_limit_reached)
    with pytest.raises(SoftTimeLimitExceeded):
        submission.print_job_submit(job_id=job.pk, worker=WORKER)

    # then nothing of the photo is left at the printer, nor in the send's own folder
    folder = printer_folder(printer)
    assert [path.name for path in folder.rglob("*") if path.is_file()] == []
    assert list(print_folders.print_folders_root().iterdir()) == []


def test_files_of_sends_killed_midway_are_erased_by_the_sweep_once_no_send_can_be_behind_them():
    # given a hot folder holding a pending job, and what SIGKILLed sends left: a print file no ticket names
    # and a half-copied temporary, both older than any send; and the same two, fresh (a send going on now)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    routing.order_release(order_id=paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]).pk)
    pending = _sent(PrintJob.objects.get())
    folder = printer_folder(printer)
    long_ago = time.time() - spool.UNFINISHED_SEND_SECONDS - 60
    left, going_on = ([folder / f"{name}.jpg", folder / f".{name}.jpg.{name}.tmp"] for name in _names(2))
    for path in [*left, *going_on]:
        path.write_bytes(b"\xff\xd8 the customer's photo")
    for path in left:
        os.utime(path, (long_ago, long_ago))
    os.utime(folder / f"{pending.backend_job_id}.jpg", (long_ago, long_ago))  # an old job still pending

    # when the sweep runs, then the leftovers are erased, the fresh ones and the pending job's file kept
    assert spool.printer_documents_discard() == {"unfinished_sends_discarded": 2}
    assert not any(path.exists() for path in left)
    assert all(path.exists() for path in going_on)
    assert (folder / f"{pending.backend_job_id}.jpg").exists()


def test_a_send_s_folder_left_by_a_killed_worker_is_removed_by_a_later_send():
    root = print_folders.print_folders_root()
    stale, fresh = root / "lab-print-killed", root / "lab-print-going-on"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "lab-job-1-abcd.jpg").write_bytes(b"\xff\xd8 the customer's photo")
    long_ago = time.time() - spool.UNFINISHED_SEND_SECONDS - 60
    os.utime(stale, (long_ago, long_ago))
    try:
        assert print_folders.print_folders_root() == root
        assert (stale.exists(), fresh.exists()) == (False, True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def test_the_decrypted_raster_is_readable_by_the_worker_s_user_alone_whatever_the_umask(monkeypatch):
    # given a worker whose umask lets everyone read what it writes (before, the sends' root was made 0755,
    # each send's folder 0755 and the raster 0644 "for CUPS filters": every local account could read every
    # print; libcups reads the file in the worker's own process, the hot folder copies it itself)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    routing.order_release(order_id=paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]).pk)
    job = PrintJob.objects.get()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    modes: dict[str, int] = {}
    real_submit = hotfolder.HotFolderBackend.submit

    def seen(self: hotfolder.HotFolderBackend, *, path: Path, **kwargs: object) -> str:
        modes.update(
            root=path.parent.parent.stat().st_mode & 0o777,
            folder=path.parent.stat().st_mode & 0o777,
            raster=path.stat().st_mode & 0o777,
        )
        return real_submit(self, path=path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hotfolder.HotFolderBackend, "submit", seen)
    previous = os.umask(0o022)
    try:
        # when it sends the job
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    finally:
        os.umask(previous)

    # then the root, the send's folder and the raster in it were the worker user's alone
    assert modes == {"root": 0o700, "folder": 0o700, "raster": 0o600}
    assert len(list(printer_folder(printer).glob("*.jpg"))) == 1


def test_a_sends_folders_root_that_is_not_the_worker_s_own_folder_is_not_used(tmp_path, caplog):
    # given the root's name taken in the shared temporary directory by something that is not the worker's
    # own folder (another user's symlink to a folder of theirs, made first, to read the rasters written there)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    planted = Path(tempfile.gettempdir()) / f"printlab-print-{os.geteuid()}"
    planted.symlink_to(theirs)
    try:
        printer = hotfolder_printer("minilab", sizes=["4x6"])
        routing.order_release(order_id=paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]).pk)
        job = PrintJob.objects.get()
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"

        # when the job is sent, then nothing is decrypted (before, the raster went to the bare temporary
        # directory instead, readable by all and never swept): the send is retried, the error names the folder
        assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
        job.refresh_from_db()
        assert (job.status, job.failure_code) == ("ready", "print_folder_unsafe")
        assert str(planted) in caplog.text
        assert list(Path(tempfile.gettempdir()).glob("lab-print-*")) == []
        assert list(theirs.iterdir()) == []
        assert list(printer_folder(printer).glob("*.jpg")) == []
    finally:
        planted.unlink()


@pytest.mark.parametrize("left_mode", [0o777, 0o755], ids=["anyone may write", "anyone may read"])
def test_the_worker_s_own_root_left_open_to_others_is_closed_before_anything_is_decrypted(left_mode):
    # given the worker's own root left open to others (an older version made it 0755)
    root = Path(tempfile.gettempdir()) / f"printlab-print-{os.geteuid()}"
    root.mkdir(exist_ok=True)
    root.chmod(left_mode)
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    routing.order_release(order_id=paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]).pk)
    job = PrintJob.objects.get()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"

    # when the job is sent, then the root is closed to others first and the job is sent
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700
    assert len(list(printer_folder(printer).glob("*.jpg"))) == 1


def _dba_hot_folder_printer(*, target: str) -> None:
    """A hot-folder printer row inserted as a database administrator writes it: SQL alone, unsealed."""
    dba(
        "INSERT INTO production_printer (name, backend, target, cups_server, host, location, media_sizes,"
        " papers, dpi, output_format, state, state_reasons, state_message, state_changed_at,"
        " is_paused_by_lab, created_at, server_event_sequence, destination_sealed)"
        " VALUES (%s, 'hotfolder', %s, '', '', '',"
        " '[\"4x6\"]', '[\"lustre\"]', 300, 'jpeg', 'online', '[]', '', now(), false, now(), 0, '')",
        "vault-shard",
        target,
    )


@pytest.mark.parametrize("how", ["dba-dot-dot", "dba-absolute", "saved-before-the-check"])
def test_a_printer_pointed_at_a_vault_shard_has_none_of_its_files_erased_by_the_sweep(settings, how):
    # given a stored photo whose blob (and a vault temporary beside it) is an hour old, and a hot-folder
    # printer whose folder is the blob's shard: inserted by a DBA (by `..` or absolute), or saved by the lab's
    # code with a target from before the check (sealed)
    photo = asset_for(None)
    blob = blob_path(photo.blob_name)
    temporary = blob.with_suffix(".tmp")
    temporary.write_bytes(b"a vault temporary")
    an_hour_ago = time.time() - 3600
    for path in (blob, temporary):
        os.utime(path, (an_hour_ago, an_hour_ago))
    plain = vault_read(data_key=photo.data_key, name=photo.blob_name, purpose="original")
    Path(settings.HOTFOLDER_ROOT).mkdir(parents=True, exist_ok=True)  # (`spool/..` needs the spool)
    relative = f"../storage/blobs/{photo.blob_name[:2]}"
    if how == "dba-dot-dot":
        _dba_hot_folder_printer(target=relative)
    elif how == "dba-absolute":
        _dba_hot_folder_printer(target=str(blob.parent))
    else:
        Printer.objects.create(name="vault-shard", backend="hotfolder", target=relative, media_sizes=["4x6"])

    # when the discard sweep runs
    counts = spool.printer_documents_discard()

    # then the printer is passed over, and the blob is there and decrypts (before, both files were erased:
    # their names are shaped as a print file no ticket names)
    assert counts == {"printers_refused": 1}
    assert temporary.read_bytes() == b"a vault temporary"
    assert vault_read(data_key=photo.data_key, name=photo.blob_name, purpose="original") == plain
