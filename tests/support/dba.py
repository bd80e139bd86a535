"""The insider tests' database administrator: SQL straight on the tables, as a superuser writes it (no app
code runs, so nothing the app would seal or record)."""

from __future__ import annotations

from django.db import connection


def dba(sql: str, *params: str | int | bytes) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
