"""LOG_FORMAT=json: one JSON object per line for log collectors, with the same ids as the plain format.

Only the record's own fields and ids are written: the message is the code's %-formatted text, which names
ids only (STYLE rule 14); a traceback is kept because operators need it, as the plain format keeps it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from lab.lib import log_context


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
