"""A blob the vault reports written survives a power loss: the callers commit the row naming it right after
(lab/orders/photos.py), so its bytes, its name in its shard directory (blobs/xx/) and a new shard's name in
blobs/ must each be on disk (fsynced) before vault_write returns."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from django.conf import settings

from lab.lib import append_only
from lab.privacy import vault
from lab.privacy.vault import data_key_create, vault_read, vault_write
from tests.builders import blob_path

pytestmark = pytest.mark.django_db


@pytest.fixture
def disk_calls(monkeypatch) -> list[tuple[str, str]]:
    """What vault_write asks of the disk, in order: each fsync with the path of what it synced (a file or a
    directory), each rename with its target. The real calls are made."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        real_replace(source, target)
        calls.append(("replace", str(Path(target).resolve())))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def after_the_rename(calls: list[tuple[str, str]], name: str) -> list[str]:
    renamed = calls.index(("replace", str(blob_path(name).resolve())))
    return [path for kind, path in calls[renamed + 1 :] if kind == "fsync"]


def test_a_blob_written_into_a_new_shard_has_its_name_and_its_shards_name_fsynced(disk_calls):
    key = data_key_create()
    blobs = (Path(settings.MEDIA_ROOT) / "blobs").resolve()
    assert not blobs.exists()  # a fresh store: every directory on the way is new

    name = vault_write(data_key=key, plaintext=b"photo bytes", purpose="original")

    shard = blob_path(name).parent.resolve()
    synced = [path for kind, path in disk_calls if kind == "fsync"]
    # The bytes before the rename, the shard's own entry in blobs/, the blob's entry in its shard after it.
    assert str(blob_path(name).with_suffix(".tmp").resolve()) in synced
    assert str(blobs) in synced
    assert str(shard) in after_the_rename(disk_calls, name)
    assert vault_read(data_key=key, name=name, purpose="original") == b"photo bytes"


def test_a_blob_written_into_an_existing_shard_has_its_name_fsynced_after_the_rename(disk_calls):
    key = data_key_create()
    blobs = Path(settings.MEDIA_ROOT) / "blobs"
    for shard in range(256):  # a store in use: whatever the blob's name, its shard is there already
        (blobs / f"{shard:02x}").mkdir(parents=True)

    name = vault_write(data_key=key, plaintext=b"raster bytes", purpose="raster")

    assert after_the_rename(disk_calls, name) == [str(blob_path(name).parent.resolve())]
    assert vault_read(data_key=key, name=name, purpose="raster") == b"raster bytes"


def test_a_blob_whose_directory_cannot_be_fsynced_after_the_rename_is_not_left_behind(monkeypatch):
    # the rename landed, then the directory's fsync failed (EIO): the caller gets the error and names no
    # blob, so none may stay (before, a whole blob nothing would ever purge stayed under the data key)
    key = data_key_create()
    files_before = {path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()}
    real_replace, real_fsync_directory = os.replace, append_only.directory_sync
    renamed: list[str] = []

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        real_replace(source, target)
        renamed.append(os.fspath(target))

    def fsync_directory(directory: Path) -> None:
        if renamed:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync_directory(directory)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(vault, "directory_sync", fsync_directory)
    with pytest.raises(OSError):
        vault.vault_write(data_key=key, plaintext=b"x" * 1000, purpose="raster")

    assert len(renamed) == 1
    assert {path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()} == files_before
