"""The app's PostgreSQL sessions search pg_catalog before public, whatever search_path its role was given: a
role set to `public, pg_catalog` (ALTER ROLE ... SET search_path, by whoever administers the database) let a
public.clock_timestamp() shadow the clock every audit record is timed on. lab/settings.py pins it with a
startup option, which wins over the role's setting."""

from __future__ import annotations

import pytest
from django.db import connection, connections


@pytest.mark.django_db(transaction=True)
def test_a_role_s_search_path_does_not_reach_the_app_s_sessions() -> None:
    assert connection.vendor == "postgresql"  # the suite runs on PostgreSQL: never skipped
    # given the app's role set to search public before pg_catalog in this database
    role = connection.settings_dict["USER"] or "postgres"
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER ROLE "{role}" IN DATABASE "{database}" SET search_path = public, pg_catalog')
    fresh = connections.create_connection("default")
    try:
        # when the app connects again
        with fresh.cursor() as cursor:
            cursor.execute("SHOW search_path")
            (search_path,) = cursor.fetchone()
    finally:
        fresh.close()
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER ROLE "{role}" IN DATABASE "{database}" RESET search_path')
    # then its session searches public alone, after the pg_catalog PostgreSQL puts first when unlisted
    assert search_path == "public"
