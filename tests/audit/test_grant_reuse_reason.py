"""A live grant is reused only for a request with the same reason: a view is recorded with its grant's
justification, so a second request with another reason that reused the grant was recorded with the first
reason, and the second was kept nowhere."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lab.audit.models import AccessGrant, AuditRecord
from lab.gate.anomalies import Flag, anomalies_find
from lab.production.models import PrintJob
from tests.builders import client_as, hotfolder_printer, released_order
from tests.support.clock import grants_age

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(settings) -> PrintJob:
    settings.AUDIT_GRANT_SECONDS = 600
    settings.AUDIT_GRANT_RENEWAL_SECONDS = 600
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    return PrintJob.objects.select_related("order", "item").get()


def printing(job: PrintJob, justification: str) -> dict[str, str | int]:
    return {
        "purpose": "printing",
        "context_type": "print_job",
        "context_id": job.pk,
        "justification": justification,
    }


def test_a_second_full_resolution_request_with_another_reason_is_recorded_with_that_reason(job):
    # given a technician who saw the original for one reason, then again for the same one
    client, technician = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/full"
    first = client.get(url, printing(job, "checking the crop of the photo"), follow=True)
    grants_age(timedelta(seconds=60))
    same = client.get(url, printing(job, "checking the crop of the photo"), follow=True)

    # when, while that grant lives, they ask for it again for another reason
    grants_age(timedelta(seconds=60))
    other = client.get(url, printing(job, "the colours look off on the proof"), follow=True)

    # then each view is recorded with the reason it was asked for; the same reason reused its grant, the
    # other opened its own, which ends when the first does and renews nothing (it extends nothing)
    assert (first.status_code, same.status_code, other.status_code) == (200, 200, 200)
    views = AuditRecord.objects.filter(action="image.view.full").order_by("seq")
    assert list(views.values_list("justification", flat=True)) == [
        "checking the crop of the photo",
        "checking the crop of the photo",
        "the colours look off on the proof",
    ]
    grants = AccessGrant.objects.order_by("created_at")
    assert [(g.justification, g.renews_id is None, g.revoked_at is None) for g in grants] == [
        ("checking the crop of the photo", True, True),
        ("the colours look off on the proof", True, True),
    ]
    assert grants[1].expires_at == grants[0].expires_at
    since = timezone.now() - timedelta(hours=1)
    flags = anomalies_find(since=since, until=since + timedelta(hours=2), actor_id=str(technician.public_id))
    assert [a.flag for a in flags if a.flag == Flag.GRANT_RENEWAL] == []


@pytest.mark.parametrize(
    "reasons",
    [
        # the reasons at 590, 610 and 1,180 s: the second one kept, or the two taken in turn
        (
            "checking the crop of the photo.",
            "checking the crop of the photo.",
            "checking the crop of the photo.",
        ),
        (
            "the colours look off on the proof",
            "checking the crop of the photo",
            "the colours look off on the proof",
        ),
    ],
)
def test_another_reason_just_before_expiry_does_not_keep_the_original_open_unflagged(job, reasons):
    """A request with another reason opened a full-length grant while the first lived, and no renewal (none
    had ended): asked again at 590 s with "…photo." for "…photo", the original stayed open to 1,190 s, no
    `grant_renewal` flag (with the same words, flagged at 610 s)."""
    # given a technician who saw the original, then asked again with another reason 10 s before it expired
    client, technician = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/full"
    first = client.get(url, printing(job, "checking the crop of the photo"), follow=True)
    grants_age(timedelta(seconds=590))
    second = client.get(url, printing(job, reasons[0]), follow=True)

    # when they go on asking past the first grant's end, at 610 s and at 1,180 s
    grants_age(timedelta(seconds=20))
    third = client.get(url, printing(job, reasons[1]), follow=True)
    grants_age(timedelta(seconds=570))
    fourth = client.get(url, printing(job, reasons[2]), follow=True)

    # then each view is shown with its own reason, the grant of 590 s ends with the first, and the request at
    # 610 s is a renewal of that chain, flagged on its view
    assert [r.status_code for r in (first, second, third, fourth)] == [200, 200, 200, 200]
    views = list(AuditRecord.objects.filter(action="image.view.full").order_by("seq"))
    assert [v.justification for v in views] == ["checking the crop of the photo", *reasons]
    grants = list(AccessGrant.objects.order_by("created_at"))
    assert grants[1].expires_at == grants[0].expires_at
    renewal = next(g for g in grants if g.first_seq == views[2].seq)
    assert renewal.renews_id in {grants[0].pk, grants[1].pk}
    since = timezone.now() - timedelta(hours=1)
    flags = anomalies_find(since=since, until=since + timedelta(hours=2), actor_id=str(technician.public_id))
    assert [a.seq for a in flags if a.flag == Flag.GRANT_RENEWAL] == [views[2].seq]
