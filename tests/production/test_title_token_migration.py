"""Upgrading keeps the titles of jobs already sent: migration production/0012 gives the jobs that exist an
empty title token, so they are still found at their printers as `lab-job-<id>`, the title they were sent
with; jobs made after it get a random token each."""

from __future__ import annotations

import pytest

from lab.production.models import PrintJob
from tests.builders.production import hotfolder_printer, released_order
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("production", "0011_maintenanceticket_sealed")]


def test_jobs_made_before_the_upgrade_keep_the_title_they_were_sent_with() -> None:
    hotfolder_printer("minilab", sizes=["4x6"])
    sent = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    latest = leaf_migrations("production")

    migrate_to(BEFORE)  # the schema before titles had a token; the job is there
    migrate_to(latest)  # the upgrade

    kept = PrintJob.objects.get(pk=sent.pk)
    assert (kept.title_token, kept.title) == ("", f"lab-job-{sent.pk}")
    made_after = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert made_after.title == f"lab-job-{made_after.pk}-{made_after.title_token}"
    assert len(made_after.title_token) == 8 and made_after.title_token != sent.title_token
