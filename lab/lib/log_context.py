"""Ids a log line carries outside a web request: the Celery task and the print job it works on.

Set by the worker's task_prerun handler (workers/observability.py), read by lab.lib.log_format.
"""

from __future__ import annotations

import contextvars

task_id: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="")
job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="")
