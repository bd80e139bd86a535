"""The encrypted blob store: every photo and raster byte on disk passes through here.

`vault_read` is called only by the production pipeline (system access) and by lab.audit's access gate
(people); a test walks the code base to keep it that way.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lab.lib.append_only import directory_sync
from lab.privacy import crypto
from lab.privacy.models import DataKey

logger = logging.getLogger(__name__)

# Every blob name is vault_write's (uuid4().hex), photos' and rasters' alike. The names come back from
# database columns (Asset.blob_name, PrintJob.raster_blob) nothing else checks: an absolute name replaced the
# store's whole path and a `..` climbed out of it, so an erasure unlinked whatever file the column named.
_BLOB_NAME = re.compile(r"[0-9a-f]{32}")


class InvalidBlobName(FileNotFoundError):
    """A blob name the vault never makes: no path is built from it, and no blob has it (the readers' callers
    handle it as a missing blob: a 410 at the gate, a failed job in production)."""


def _binding(data_key_id: int) -> bytes:
    return f"datakey:{data_key_id}".encode()


def data_key_create() -> DataKey:
    # The first key of this process's own LAB_MASTER_KEY, read when it started: a process not restarted since
    # the new key was put first keeps wrapping under the old one, which is why rotate_master_key says the old
    # key may go only after a run, once every process was restarted, finds none to re-wrap.
    master = crypto.current_master_key()
    with transaction.atomic():
        row = DataKey.objects.create(wrapped_key=b"", master_key_id=master.key_id)
        row.wrapped_key = crypto.wrap_data_key(
            data_key=crypto.new_data_key(), master=master, binding=_binding(row.pk)
        )
        row.save(update_fields=["wrapped_key"])
    return row


def _plain_key(data_key: DataKey | None) -> bytes:
    if data_key is None or data_key.is_destroyed or not data_key.wrapped_key:
        raise crypto.KeyDestroyed("the data key was destroyed")
    return crypto.unwrap_data_key(
        wrapped=bytes(data_key.wrapped_key),
        master=crypto.master_key_by_id(data_key.master_key_id),
        binding=_binding(data_key.pk),
    )


def _blob_path(name: str) -> Path:
    if _BLOB_NAME.fullmatch(name) is None:
        raise InvalidBlobName("not a blob name the vault makes")
    return Path(settings.MEDIA_ROOT) / "blobs" / name[:2] / name


def _directories_make(directory: Path) -> None:
    """Make `directory` (and its missing parents), each new entry made durable in its parent."""
    missing: list[Path] = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)  # (another writer may make the same shard meanwhile)
        directory_sync(new.parent)


def vault_name_new() -> str:
    """A new blob's name, for a caller that records it in a row before the blob is written (vault_write)."""
    return uuid.uuid4().hex


def vault_write(*, data_key: DataKey | None, plaintext: bytes, purpose: str, name: str | None = None) -> str:
    """Encrypt and store; returns the blob name. `purpose` ("original", "raster") is bound as AAD.

    `name`: one vault_name_new() gave, for a caller that names the blob in a row before writing it (so no
    kill or database error between the write and the row that keeps it leaves a file no row names); a new
    one otherwise.

    Durable when it returns: the blob's bytes, its name in its shard directory (blobs/xx/) and a shard made
    for it in blobs/ are each fsynced, as the callers commit the row naming the blob right after. Before, the
    rename and a new shard's entry were not: a power loss could leave a committed photo row with no file."""
    name = name or vault_name_new()
    path = _blob_path(name)
    _directories_make(path.parent)
    blob = crypto.encrypt_blob(
        data_key=_plain_key(data_key), plaintext=plaintext, aad=f"{name}:{purpose}".encode()
    )
    temporary = path.with_suffix(".tmp")
    renamed = False
    try:
        with open(temporary, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        renamed = True
        directory_sync(path.parent)
    except OSError:
        temporary.unlink(missing_ok=True)  # a full or failing disk keeps no partial blob
        if renamed:
            # Nor a whole one no row will name (the directory's fsync failed after the rename): a raster under
            # a photo's live key would outlive its retention, as nothing purges a blob no row names.
            path.unlink(missing_ok=True)
        raise
    return name


def vault_read(*, data_key: DataKey | None, name: str, purpose: str) -> bytes:
    if not name:
        raise FileNotFoundError("no blob: the photo was purged or never stored")
    blob = _blob_path(name).read_bytes()
    return crypto.decrypt_blob(data_key=_plain_key(data_key), blob=blob, aad=f"{name}:{purpose}".encode())


def vault_blob_authenticates(*, data_key: DataKey | None, name: str, purpose: str) -> bool:
    """Whether the blob `name` is one the vault wrote under `data_key` for `purpose` ("original", "raster").

    Asked before deleting a name that a database column gave: a row pointed, in the database alone, at
    another customer's blob (or a raster's column at its own photo's original) must not have it deleted. The
    blob's header is only the format's magic and a nonce: it names neither key nor purpose, so the whole blob
    is read and decrypted (a raster of tens of MB: tens of milliseconds). Its name and purpose are bound as
    AAD, so a blob authenticates only under its own key, its own name and the purpose it was written for.
    False for a missing blob, a name the vault never makes, a destroyed key or bytes that do not authenticate.
    """
    try:
        return vault_blob_verify(data_key=data_key, name=name, purpose=purpose)
    except OSError:
        return False


def vault_blob_verify(*, data_key: DataKey | None, name: str, purpose: str) -> bool:
    """vault_blob_authenticates, for a caller that forgets the name when the answer is False (blanks the
    column naming it): a blob that is there and could not be read (EIO, EISDIR, a stale NFS handle) raises
    its OSError instead, since a False would leave it on disk named by no row. False: no such blob (or a
    name the vault never makes), a destroyed key, or bytes that do not authenticate."""
    try:
        vault_read(data_key=data_key, name=name, purpose=purpose)
    except (FileNotFoundError, crypto.KeyDestroyed, crypto.DecryptionFailed):
        return False
    return True


def vault_blob_present(*, name: str) -> bool:
    """Whether the blob `name` is on disk (False for a name the vault never makes): a caller told that a
    blob does not authenticate tells a file gone already (deleted by a purge a database restore undid) from
    one that is there and is not what its row says."""
    try:
        return _blob_path(name).is_file()
    except InvalidBlobName:
        return False


def vault_delete(*, name: str) -> None:
    if not name:
        return  # no blob was stored
    try:
        path = _blob_path(name)
    except InvalidBlobName:
        # Skipped, not raised: the purge or erasure calling it still ends (the photo's key is destroyed all
        # the same). The name is not logged: it can be a path, or anything written into the column.
        logger.error("blob delete skipped: not a blob name the vault makes (length %d)", len(name))
        return
    path.unlink(missing_ok=True)


def data_key_destroy(*, data_key: DataKey) -> None:
    """Crypto-shred: once the wrapped key is gone, no copy of the blobs (backups included) is readable."""
    DataKey.objects.filter(pk=data_key.pk).update(wrapped_key=None, destroyed_at=timezone.now())
    data_key.wrapped_key = None
    data_key.destroyed_at = timezone.now()


def master_key_rotate() -> int:
    """Re-wrap every live data key under the current master key; photos are not touched."""
    master = crypto.current_master_key()
    rewrapped = 0
    for row in (
        DataKey.objects.filter(destroyed_at__isnull=True).exclude(master_key_id=master.key_id).iterator()
    ):
        with transaction.atomic():
            locked = DataKey.objects.select_for_update().get(pk=row.pk)
            if locked.is_destroyed or locked.master_key_id == master.key_id:
                continue
            plain = _plain_key(locked)
            locked.wrapped_key = crypto.wrap_data_key(
                data_key=plain, master=master, binding=_binding(locked.pk)
            )
            locked.master_key_id = master.key_id
            locked.save(update_fields=["wrapped_key", "master_key_id"])
            rewrapped += 1
    return rewrapped
