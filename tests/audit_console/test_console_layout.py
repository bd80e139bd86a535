"""The console's markup for a 1440 px screen: long ids shortened with the whole value kept (title, one-click
select, copy), and the review queue telling flagged items from sampled ones at a glance."""

from __future__ import annotations

import re

import pytest

from lab.audit.models import ReviewItem
from tests.builders import attempt, minutes

pytestmark = pytest.mark.django_db
ASSET = "00000000-0000-4000-8000-000000000001"


def test_long_ids_carry_their_whole_value_in_a_title_and_a_selectable_element(client, auditor, technician):
    attempt(technician, at=minutes(1), asset_id=ASSET)
    client.force_login(auditor)

    page = client.get("/lab/audit/").content.decode()

    assert f'<code class="id" title="{ASSET}">{ASSET}</code>' in page
    assert "<script" not in page  # CSP: script-src 'self', and no script is needed for this


def test_employees_without_an_account_email_are_shown_by_a_shortened_public_id(client, auditor):
    from tests.builders import person

    ghost = person("technician")
    ghost_id = str(ghost.public_id)
    attempt(ghost, at=minutes(1))
    ghost.delete()
    client.force_login(auditor)

    page = client.get("/lab/audit/").content.decode()

    assert f'<code class="id" title="{ghost_id}">{ghost_id}</code>' in page


def test_the_review_queue_marks_flagged_and_sampled_items_differently(client, auditor, technician):
    flagged = attempt(technician, at=minutes(1), purpose="maintenance", rule="open_maintenance_ticket")
    sampled = attempt(technician, at=minutes(2))
    ReviewItem.objects.create(record=flagged, reason="maintenance_view")
    ReviewItem.objects.create(record=sampled, reason="sample")
    client.force_login(auditor)

    page = client.get("/lab/audit/review/").content.decode()

    rows = re.findall(
        r'<tr class="(row-\w+)">.*?<span class="reason (reason-\w+)"[^>]*>([^<]+)</span>', page, re.S
    )
    assert rows == [
        ("row-flagged", "reason-flagged", "flagged: maintenance_view"),
        ("row-sampled", "reason-sampled", "sampled"),
    ]
    css = client.get("/lab/audit/console.css").content.decode()
    flagged_rule = re.search(r"\.reason-flagged \{([^}]*)\}", css)
    sampled_rule = re.search(r"\.reason-sampled \{([^}]*)\}", css)
    assert flagged_rule and sampled_rule and flagged_rule.group(1) != sampled_rule.group(1)
