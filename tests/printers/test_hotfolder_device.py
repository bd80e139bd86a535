import json
from pathlib import Path

from printers.base import JobState
from printers.hotfolder import HotFolderBackend
from printers.hotfolder_device import pending_tickets, process_pending
from printers.registry import get_backend


def test_simulated_minilab_prints_pending_tickets_in_order(tmp_path: Path, small_jpeg: Path) -> None:
    # given three jobs, one of them canceled
    backend = HotFolderBackend(folder=tmp_path)
    job_ids = [backend.submit(path=small_jpeg, title=f"lab-job-{n}") for n in range(3)]
    backend.cancel(job_ids[1])
    delays: list[float] = []

    # when the device runs once
    done = process_pending(folder=tmp_path, delay_seconds=2.0, sleep=delays.append)

    # then it printed the two others, oldest first, waiting its delay for each
    assert done == [job_ids[0], job_ids[2]]
    assert delays == [2.0, 2.0]
    assert [backend.job_state(job_id) for job_id in job_ids] == [
        JobState.COMPLETED,
        JobState.CANCELED,
        JobState.COMPLETED,
    ]
    assert pending_tickets(folder=tmp_path) == []


def test_simulated_minilab_waits_while_paused(tmp_path: Path, small_jpeg: Path) -> None:
    backend = HotFolderBackend(folder=tmp_path)
    job_id = backend.submit(path=small_jpeg, title="lab-job-1")
    (tmp_path / "PAUSED").touch()

    assert process_pending(folder=tmp_path, delay_seconds=0, sleep=lambda _: None) == []
    assert backend.job_state(job_id) is JobState.PENDING


def test_pending_tickets_ignore_temporary_and_foreign_files(tmp_path: Path) -> None:
    (tmp_path / ".abc.json.123.tmp").write_text("{}")
    (tmp_path / "notes.json").write_text(json.dumps({"title": "x"}))
    assert pending_tickets(folder=tmp_path) == []


def test_registry_builds_each_backend_kind(tmp_path: Path) -> None:
    hot = get_backend(kind="hotfolder", target=str(tmp_path))
    cups_backend = get_backend(kind="cups", target="lab1", cups_server="127.0.0.1:631")
    assert repr(hot) == f"HotFolderBackend(folder={str(tmp_path)!r})"
    assert repr(cups_backend) == "CupsBackend(queue='lab1', server='127.0.0.1:631')"


def test_registry_rejects_unknown_kind_and_empty_target() -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown printer backend kind 'lpd'"):
        get_backend(kind="lpd", target="x")
    with pytest.raises(ValueError, match="needs a target"):
        get_backend(kind="cups", target="")
