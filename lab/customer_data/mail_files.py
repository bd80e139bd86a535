"""Demo mode's mail files (the file mail backend's plaintext copies of every e-mail): their expiry by the
retention sweep, and an erasure's deletion of the messages addressed to the erased customer."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.filebased import EmailBackend as FileEmailBackend
from django.utils.module_loading import import_string

from lab.accounts.signin import EmailPeriod, email_digest

logger = logging.getLogger(__name__)

# Demo mode's file mail backend (lab/settings.py) writes every e-mail, in plaintext, into EMAIL_FILE_PATH:
# addresses, carriers and tracking numbers, receipts' bearer links. The files are kept this long after their
# last message, then deleted: the privacy policy sets no period for them, so the shortest of the retention
# schedule (rasters, unpaid orders, photos never ordered: 7 days). Before, nothing ever deleted them.
MAIL_FILES_KEPT = timedelta(days=7)


# Django's file backend (django.core.mail.backends.filebased) writes each message of a send, one after another
# into one file, each followed by a line of 79 dashes. A body may hold such a line too: a separator is one
# followed by the end of the file or a header line (every message starts with its Content-Type header).
_MAIL_SEPARATOR = re.compile(rb"\n-{79}\n(?=\Z|[!-9;-~]+:)")
# The headers that name a message's recipients (the file backend writes no Bcc, an other backend may).
_RECIPIENT_HEADERS = ("To", "Cc", "Bcc")
# A file changed under us (the backend appending a message) is read again this many times at most.
_MAIL_REWRITE_ATTEMPTS = 3
# A Date header names its second (email.utils.formatdate): the message was written within the second after.
_MAIL_DATE_PRECISION = timedelta(seconds=1)


def _mail_dir() -> Path | None:
    """Where the file backend writes (EMAIL_FILE_PATH), while it is the backend (demo mode); None otherwise,
    or when nothing is there. Another backend's processes may share the folder (the test command's, where
    the end-to-end tests' demo processes write): theirs to keep. A host that ran the file backend before its
    switch deletes what it left once (README: EMAIL_BACKEND)."""
    try:
        backend = import_string(settings.EMAIL_BACKEND)
    except ImportError:
        return None
    if not (isinstance(backend, type) and issubclass(backend, FileEmailBackend)):
        return None
    path = getattr(settings, "EMAIL_FILE_PATH", None)
    if not path:
        return None
    directory = Path(path)
    return directory if directory.is_dir() else None


def _mail_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.is_file() and not path.is_symlink())


def mail_files_expire(*, before: datetime) -> int:
    """Delete the mail files last written before `before` (MAIL_FILES_KEPT); a file still being written has a
    fresh modification time and stays. Returns how many were deleted."""
    directory = _mail_dir()
    if directory is None:
        return 0
    deleted = 0
    for path in _mail_files(directory):
        try:
            if path.stat().st_mtime < before.timestamp():
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            continue  # deleted meanwhile (an erasure, another sweep)
    if deleted:
        logger.info("mail files expired count=%d", deleted)
    return deleted


def _address_digest(address: str) -> str:
    """The digest of an address as a mail file writes it (email_digest: the lab's own form, the one an
    `email_changed` event records), a local part Django wrote as an encoded word decoded first; its domain is
    in IDNA already, as the lab's own form has it."""
    local, at, domain = address.strip().rpartition("@")
    if "=?" in local:
        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            local = str(make_header(decode_header(local)))
    return email_digest(f"{local}{at}{domain}")


def _mail_messages(data: bytes) -> list[bytes]:
    """The messages of a mail file, each with its separator line; a last one without (still being written,
    or not the backend's) as it is."""
    messages, start = [], 0
    for separator in _MAIL_SEPARATOR.finditer(data):
        messages.append(data[start : separator.end()])
        start = separator.end()
    if start < len(data):
        messages.append(data[start:])
    return messages


@dataclass(frozen=True)
class _Recipients:
    """Whose messages an erasure deletes: every one to a current address (`digests`), and one to an earlier
    address only if it was written while the account had it (`earlier`, each digest's periods)."""

    digests: frozenset[str]
    earlier: Mapping[str, Sequence[EmailPeriod]]


def _written(headers: Message) -> datetime | None:
    """When the message was written, by its Date header (a date with no zone, `-0000`, taken as UTC); None
    when it has none that can be read."""
    try:
        written = parsedate_to_datetime(str(headers.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return written if written.tzinfo is not None else written.replace(tzinfo=UTC)


def _written_within(written: datetime, period: EmailPeriod) -> bool:
    """Whether a message dated `written` may have been written within `period`: its Date names the second it
    was written in, so one dated the second a period starts or ends counts as in it (the account's, to erase).
    A message written right after a change is seconds away from it: it takes the new holder of the address
    registering and being mailed within that second to make theirs look like the account's."""
    return (period.since is None or period.since < written + _MAIL_DATE_PRECISION) and written <= period.until


def _addressed_to(message: bytes, recipients: _Recipients) -> bool:
    headers = BytesParser().parsebytes(message, headersonly=True)
    values = [str(value) for name in _RECIPIENT_HEADERS for value in headers.get_all(name, [])]
    digests = {_address_digest(address) for _, address in getaddresses(values) if address}
    if digests & recipients.digests:
        return True
    periods = [period for digest in digests for period in recipients.earlier.get(digest, ())]
    if not periods:
        return False
    # A message to an earlier address with no date to read is kept: it may be the next holder's, and the
    # retention sweep deletes its file within MAIL_FILES_KEPT anyway.
    written = _written(headers)
    return written is not None and any(_written_within(written, period) for period in periods)


def _mail_file_rewrite(path: Path, recipients: _Recipients) -> int:
    """Drop the messages addressed to `recipients` from one file (the file deleted when none is left);
    returns how many were dropped. The file is replaced whole, and only if the backend did not append to it
    meanwhile."""
    for _attempt in range(_MAIL_REWRITE_ATTEMPTS):
        try:
            seen = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        messages = _mail_messages(data)
        kept = [message for message in messages if not _addressed_to(message, recipients)]
        dropped = len(messages) - len(kept)
        if not dropped:
            return 0
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".erasure-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(b"".join(kept))
            now = path.stat()
            if (now.st_size, now.st_mtime_ns) != (seen.st_size, seen.st_mtime_ns):
                continue  # a message was appended meanwhile: read the file again
            if kept:
                os.replace(temporary, path)
            else:
                path.unlink()
            return dropped
        except FileNotFoundError:
            return 0
        finally:
            Path(temporary).unlink(missing_ok=True)
    logger.warning("mail file kept changing; erased customer's messages left for the retention sweep")
    return 0


def mail_files_erase(
    *, email: str, earlier_email_digests: Mapping[str, Sequence[EmailPeriod]] | None = None
) -> int:
    """Delete every message of the mail files addressed to `email`, and each one addressed to an address the
    customer had before and written while they had it (`earlier_email_digests`: each address's digest and
    periods, account_earlier_email_periods, read before the erasure deleted the `email_changed` events that
    record them), after the erasure's commit: the file backend's copies of what the lab sent the customer,
    their shipping address, carrier and tracking number among it. Recipients are compared by digest: the
    earlier addresses are known by theirs only. Other recipients' messages stay, those written to an earlier
    address after the customer gave it up too (its next holder's: before, an erasure deleted them, every
    message to every address the account ever had). Returns how many messages were deleted."""
    directory = _mail_dir()
    recipients = _Recipients(
        digests=frozenset([email_digest(email)] if email.strip() else []), earlier=earlier_email_digests or {}
    )
    if directory is None or not (recipients.digests or recipients.earlier):
        return 0
    erased = sum(_mail_file_rewrite(path, recipients) for path in _mail_files(directory))
    if erased:
        logger.info("mail file messages erased count=%d", erased)
    return erased
