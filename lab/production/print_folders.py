"""Where a send decrypts its raster for the printer: the print worker's own folders, one per send, swept
of the folders a killed send left."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from lab.production.spool import UNFINISHED_SEND_SECONDS
from printers.errors import TransientPrinterError

logger = logging.getLogger(__name__)


# The sends' folders root is not safe to decrypt a raster into (print_folders_root): transient, nothing sent.
PRINT_FOLDER_UNSAFE = "print_folder_unsafe"


def print_folders_root() -> Path:
    """Where sends put the decrypted raster for the printer, one folder per send (removed after it), and
    where a send killed before its folder was removed (SIGKILL, the OOM killer) left one: each send first
    removes the folders older than any send can be, on its own host, so a plain raster never outlives its
    send by much more than that, wherever no later send comes.

    The root is the worker user's alone (0700), and so are each send's folder (mkdtemp's 0700) and the raster
    (0600): nothing on the print host but the worker itself reads them. Our own root left open to others (an
    older version's 0755) is closed first (0700: from then on nobody else may look inside, whatever they
    opened before; each send's folder is a new mkdtemp in it). A root that is not ours or not a folder (made
    first by another user of a shared /tmp, a symlink) is not used, nor any other place instead: the send
    raises a transient error (the job is sent again later) and the error log names the folder, for someone to
    remove it."""
    system_temporary = Path(tempfile.gettempdir())
    root = system_temporary / f"printlab-print-{os.geteuid()}"  # one per user: another user's is not ours
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)  # the umask may only take more away
    found = os.lstat(root)
    if stat.S_ISDIR(found.st_mode) and found.st_uid == os.geteuid() and found.st_mode & 0o077:
        logger.warning(
            "print folders root was open to others, closed path=%s mode=%o", root, found.st_mode & 0o777
        )
        os.chmod(root, 0o700, follow_symlinks=False)
        found = os.lstat(root)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
        logger.error(
            "print folders root not ours or open to others, nothing decrypted path=%s uid=%s mode=%o",
            root,
            found.st_uid,
            stat.S_IMODE(found.st_mode),
        )
        raise TransientPrinterError(
            code=PRINT_FOLDER_UNSAFE,
            message=f"{root} is not the print worker's own folder, closed to others: nothing was decrypted",
        )
    older_than = time.time() - UNFINISHED_SEND_SECONDS
    with os.scandir(root) as entries:
        for entry in entries:
            try:
                is_stale = entry.stat(follow_symlinks=False).st_mtime < older_than
            except FileNotFoundError:
                continue  # its own send removed it meanwhile
            if is_stale:
                shutil.rmtree(entry.path, ignore_errors=True)
    return root
