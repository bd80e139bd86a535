"""The one clock every host of the lab shares: the database server's.

A claim (a raster or submit job, a notification, a URL photo's fetch, a privacy receipt's e-mail) is written
by one host and judged expired by another: a worker on another box, the reconciler under beat. Judged on each
host's own clock, a host running ahead by more than a lease took over live claims (a job `submitting` right
now called `unknown`, an e-mail sent twice), and one running behind wrote claims that looked expired early.
So every lease is written and judged on the database's clock, which all hosts read alike; the embedded
SQLite lab is one host, and its clock is the database's.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connections
from django.utils import timezone


def database_now(using: str = "default") -> datetime:
    """The database server's time now (statement_timestamp(): not the transaction's start, which a long
    transaction would hold back), timezone-aware. Named in pg_catalog, so that no function of that name
    earlier in the role's search_path is read instead."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_catalog.statement_timestamp()")
        (now,) = cursor.fetchone()
    assert isinstance(now, datetime)
    return now
