"""LOG_FORMAT=json: one JSON object per line for log collectors, with the same ids as the plain format.

Only the record's own fields and ids are written: the message is the code's %-formatted text, which names
ids only (STYLE rule 14); a traceback is kept because operators need it, as the plain format keeps it.

What a client sent (a path: `%0A` decodes to a newline) reaches log lines as an argument; `escape_for_log`
writes its control characters as `\\xNN` so that no one can end a line and forge the next one (CVE-2025-48432
in Django), in either format and in gunicorn's access log (lab.lib.access_log).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from lab.lib import log_context

# C0 and C1 controls (newline, carriage return, escape, NEL), the Unicode line and paragraph separators, lone
# surrogates, and the backslash, so that an escape in a line is always one the lab wrote. Other text (a file's
# name in any script) stays readable as it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\\\\\u2028\u2029\ud800-\udfff]")
# What `surrogateescape` decodes a byte that is not UTF-8 to (U+DC80-U+DCFF for 0x80-0xff).
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def _escaped(match: re.Match[str]) -> str:
    character = match.group()
    if character == "\\":
        return "\\\\"
    code = ord(character)
    if code in _ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    # A C1 control (NEL) as \u0085, not \x85: that is how a byte 0x85 that is not UTF-8 reads (%85).
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def escape_for_log(text: str) -> str:
    """`text` on one line: C0 controls as `\\xNN`, C1 ones and the line separators as `\\uNNNN`, a byte that
    was not UTF-8 (decoded with `surrogateescape`) as `\\xNN` once, another lone surrogate as `\\udNNN` (no
    UTF-8 log can hold it), a backslash doubled, everything else as it is."""
    return _UNSAFE.sub(_escaped, text)


def escape_record_args(record: logging.LogRecord) -> None:
    """Every string argument of `record` escaped (escape_for_log); a message that is not a string (an
    exception passed as the message) is written as its escaped text."""
    if not isinstance(record.msg, str):
        record.msg = escape_for_log(str(record.msg))
    args = record.args
    if isinstance(args, Mapping):
        record.args = {
            key: escape_for_log(value) if isinstance(value, str) else value for key, value in args.items()
        }
    elif args:
        record.args = tuple(escape_for_log(value) if isinstance(value, str) else value for value in args)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "client_ip"):
            value = getattr(record, name, "-")
            if value and value != "-":
                line[name] = value
        if task_id := log_context.task_id.get():
            line["task_id"] = task_id
        if job_id := log_context.job_id.get():
            line["job_id"] = job_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
