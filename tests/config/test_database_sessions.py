"""A process frozen inside a transaction does not hold its locks for good: PostgreSQL ends its session once it
has sat idle in the transaction for DATABASE_IDLE_IN_TRANSACTION_SECONDS (lab/settings.py), so the others
waiting for its rows (the reconciler that would take its work over among them) go on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction

from tests.support.celery_worker import database_url
from tests.support.web_server import PROJECT_DIR

# As frozen as the server can tell: inside a transaction, holding a row lock, saying nothing.
FROZEN_HOLDER = """
import sys, time
import django
django.setup()
from django.contrib.auth.models import Group
from django.db import transaction
with transaction.atomic():
    Group.objects.select_for_update().get(name=sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.django_db(transaction=True)
def test_a_process_frozen_inside_a_transaction_loses_its_row_locks_after_the_idle_timeout() -> None:
    name = f"frozen-{uuid.uuid4().hex}"
    Group.objects.create(name=name)
    holder = subprocess.Popen(
        [sys.executable, "-c", FROZEN_HOLDER, name],
        cwd=PROJECT_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "lab.settings",
            "DATABASE_URL": database_url(connection.settings_dict),
            "DATABASE_IDLE_IN_TRANSACTION_SECONDS": "2",
        },
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"

        started = time.monotonic()
        with transaction.atomic():  # waits for the holder's lock, until the server ends the holder's session
            Group.objects.select_for_update().get(name=name)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=30)

    assert waited < 30  # the holder sleeps 120 s: without the timeout the lock is its for that long
