"""Grants end when they end: a view under an expired grant is refused and recorded, nothing renews it; a new
request opens a new grant, and one soon after the last expired is a renewal the auditors' rules flag.

Grants are opened and judged on the database's clock (Facts.now), so time moves here the way the database
sees it: every grant's times move back by the seconds that "pass" (tests/support/clock.py), never by
sleeping. And a web host whose own clock is hours off neither stretches a grant nor cuts it short.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from lab.audit.models import AccessGrant, AuditRecord
from lab.gate.anomalies import Flag, anomalies_find
from lab.lib.clock import database_now
from lab.production.models import PrintJob
from tests.builders import client_as, hotfolder_printer, released_order
from tests.support.clock import grants_age, host_clock_off

pytestmark = pytest.mark.django_db

# Far past a grant's lifetime (10 minutes here).
SKEW = timedelta(hours=2)


class Clock:
    """Time passing for grants, as the database's clock sees it."""

    def forward(self, seconds: float) -> None:
        grants_age(timedelta(seconds=seconds))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def job(settings) -> PrintJob:
    settings.AUDIT_GRANT_SECONDS = 600
    settings.AUDIT_GRANT_RENEWAL_SECONDS = 600
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    return PrintJob.objects.select_related("order", "item").get()


def params(job: PrintJob) -> dict[str, str | int]:
    return {"purpose": "printing", "context_type": "print_job", "context_id": job.pk, "justification": "crop"}


def test_an_expired_grant_is_refused_and_recorded_not_renewed(job, clock):
    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    grant_url = client.get(url, params(job))["Location"]

    clock.forward(599)
    within = client.get(grant_url)
    clock.forward(2)
    after = client.get(grant_url)

    assert within.status_code == 200
    assert (after.status_code, after.json()["rule"]) == (403, "grant_expired")
    assert AccessGrant.objects.count() == 1  # nothing opened a new one behind the person's back
    last = AuditRecord.objects.latest("seq")
    assert (last.action, last.outcome, last.rule, last.purpose, last.context_id) == (
        "image.access.denied",
        "denied",
        "grant_expired",
        "printing",
        str(job.pk),
    )


def test_a_new_request_soon_after_expiry_opens_a_renewal_that_is_flagged(job, clock):
    client, technician = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    first_grant_url = client.get(url, params(job))["Location"]
    client.get(first_grant_url)

    clock.forward(601 + 120)  # expired two minutes ago: inside the renewal window
    renewed = client.get(client.get(url, params(job))["Location"])
    clock.forward(600 + 601)  # this one expired, and the next request is long after: not a renewal
    fresh = client.get(client.get(url, params(job))["Location"])

    first, second, third = AccessGrant.objects.order_by("created_at")
    assert (renewed.status_code, fresh.status_code) == (200, 200)
    assert (second.renews_id, third.renews_id) == (first.pk, None)
    since = timezone.now() - timedelta(hours=1)
    renewals = [
        a
        for a in anomalies_find(since=since, until=since + timedelta(hours=2))
        if a.flag == Flag.GRANT_RENEWAL
    ]
    assert [(a.seq, a.actor_id) for a in renewals] == [(second.first_seq, str(technician.public_id))]
    # two minutes forwarded, plus the real seconds the requests took (on a loaded machine, more than one)
    detail = renewals[0].detail
    asked_again = re.fullmatch(r"asked again (\d+) s after the last grant for this photo ended", detail)
    assert asked_again is not None
    assert 121 <= int(asked_again.group(1)) < 121 + 30


def test_a_renewal_is_flagged_even_after_reloading_the_expired_grant_first(job, clock):
    """Reloading the expired grant's page is refused, and the refusal ended (revoked) that grant: the next
    request then found no earlier grant and opened a fresh one, never flagged as a renewal."""
    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    expired_url = client.get(url, params(job))["Location"]
    client.get(expired_url)
    clock.forward(601 + 60)

    assert client.get(expired_url).json()["rule"] == "grant_expired"
    renewed = client.get(client.get(url, params(job))["Location"])

    first, second = AccessGrant.objects.order_by("created_at")
    assert (renewed.status_code, second.renews_id) == (200, first.pk)


@pytest.mark.parametrize(
    ("variant", "extra"),
    [("thumbnail", {}), ("full", {"justification": "x"})],
    ids=["an unknown variant", "full resolution without a justification"],
)
def test_a_refusal_on_the_same_photo_does_not_hide_the_next_renewal(job, clock, variant, extra):
    """Any refusal on the photo revokes the person's grants on it, under the refusal's own rule: only a
    refusal for `grant_expired` kept the link to the earlier grant, so any other one hid the renewal."""
    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    client.get(client.get(url, params(job))["Location"])
    clock.forward(601 + 60)

    assert client.get(f"/lab/photos/{job.item.asset_id}/{variant}", {**params(job), **extra}).status_code in (
        403,
        404,
    )
    renewed = client.get(client.get(url, params(job))["Location"])

    first, second = AccessGrant.objects.order_by("created_at")
    assert (renewed.status_code, second.renews_id) == (200, first.pk)


def test_a_refusal_while_the_grant_is_live_does_not_open_a_fresh_unflagged_one(job, clock):
    """Sent at minute 9:50, a refusal revoked the live grant early; the next request opened a fresh one, no
    renewal by the old rule: repeated, the photo stayed open for good with nothing flagged."""
    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    client.get(client.get(url, params(job))["Location"])
    clock.forward(590)
    client.get(f"/lab/photos/{job.item.asset_id}/thumbnail", params(job))

    client.get(client.get(url, params(job))["Location"])

    first, second = AccessGrant.objects.order_by("created_at")
    assert (first.revoked_reason, second.renews_id) == ("unknown_variant", first.pk)
    flags = [a for a in anomalies_find(since=timezone.now() - SKEW, until=timezone.now() + SKEW)]
    assert [a.detail for a in flags if a.flag == Flag.GRANT_RENEWAL] == [
        "asked again 0 s after the last grant for this photo ended"
    ]


def test_a_grant_that_expired_hours_ago_and_is_revoked_only_now_is_no_renewal(job, clock):
    """The tab left open since the morning: reloading it is refused and revokes the grant that expired hours
    ago; the next request is not 'asked again' after it."""
    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    expired_url = client.get(url, params(job))["Location"]
    clock.forward(2 * 3600)

    assert client.get(expired_url).json()["rule"] == "grant_expired"
    client.get(client.get(url, params(job))["Location"])

    first, second = AccessGrant.objects.order_by("created_at")
    assert (first.revoked_reason, second.renews_id) == ("grant_expired", None)


def test_a_grant_ended_because_its_task_moved_is_no_renewal(job, clock):
    """Revoked by the work (here a move of the job; a reprint sends an order back to the floor and again to
    the station), not by the person: the grant when the task is open again is not a renewal."""
    from lab.audit.grants import grants_revoke

    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    client.get(client.get(url, params(job))["Location"])
    grants_revoke(context_type="print_job", context_id=job.pk, reason="job_held")
    clock.forward(60)

    client.get(client.get(url, params(job))["Location"])

    first, second = AccessGrant.objects.order_by("created_at")
    assert (first.revoked_reason, second.renews_id) == ("job_held", None)


def test_a_grant_ended_because_its_ticket_closed_is_no_renewal(job, clock):
    """A maintenance ticket's grant revoked when the ticket closed (`ticket_closed`) ended with the task,
    not by the person: the grant for a new request is not a renewal."""
    from lab.audit.grants import grants_revoke
    from lab.production.maintenance import maintenance_ticket_open

    client, technician = client_as("technician")
    ticket = maintenance_ticket_open(
        printer_id=job.printer_id, actor=technician, description="banding", job_ids=[job.pk]
    )
    url = f"/lab/photos/{job.item.asset_id}/preview"
    query: dict[str, str | int] = {
        "purpose": "maintenance",
        "context_type": "maintenance_ticket",
        "context_id": ticket.pk,
        "justification": "banding on the left edge",
    }
    assert client.get(client.get(url, query)["Location"]).status_code == 200
    grants_revoke(context_type="maintenance_ticket", context_id=ticket.pk, reason="ticket_closed")
    clock.forward(60)

    assert client.get(client.get(url, query)["Location"]).status_code == 200

    first, second = AccessGrant.objects.order_by("created_at")
    assert (first.revoked_reason, second.renews_id) == ("ticket_closed", None)


@pytest.mark.parametrize("written", ["0{pk}", "00{pk}", "{pk}\u0660"])
def test_a_context_id_written_another_way_is_refused_not_a_fresh_unflagged_grant(job, clock, written):
    """`042` named job 42 to the gate, but its grant's scope kept `042`: asking again that way, just after
    the grant for `42` expired, opened a fresh grant that was no renewal (and that a closing context, which
    revokes grants by the id as written, `42`, did not end). Only the id as the lab writes it names one."""
    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    client.get(client.get(url, params(job))["Location"])
    clock.forward(601 + 60)

    other_way = client.get(url, {**params(job), "context_id": written.format(pk=job.pk)})

    assert other_way.status_code == 403
    assert AccessGrant.objects.count() == 1
    last = AuditRecord.objects.latest("seq")
    assert (last.outcome, last.context_id) == ("denied", written.format(pk=job.pk))


def test_a_live_grant_is_reused_and_a_preview_grant_does_not_cover_full_resolution(job, clock):
    client, _ = client_as("technician")
    preview_url = f"/lab/photos/{job.item.asset_id}/preview"
    grant_url = client.get(preview_url, params(job))["Location"]
    clock.forward(60)
    again = client.get(preview_url, params(job))["Location"]

    full = client.get(grant_url.replace("/preview?", "/full?"))

    assert again == grant_url
    assert (full.status_code, full.json()["rule"]) == (403, "grant_is_preview_only")
    assert AccessGrant.objects.count() == 1


def test_someone_elses_grant_or_a_made_up_one_is_refused_and_recorded(job, clock):
    owner_client, _ = client_as("technician")
    other_client, other = client_as("technician")
    grant_url = owner_client.get(f"/lab/photos/{job.item.asset_id}/preview", params(job))["Location"]

    borrowed = other_client.get(grant_url)
    made_up = other_client.get(f"/lab/photos/{job.item.asset_id}/preview", {"grant": "not-a-grant"})

    assert [borrowed.status_code, made_up.status_code] == [403, 403]
    assert list(AuditRecord.objects.filter(actor_id=str(other.public_id)).values_list("rule", flat=True)) == [
        "grant_not_found",
        "grant_not_found",
    ]


def test_a_closed_context_ends_the_grant_before_it_expires(job, clock):
    from lab.production import jobs

    client, _ = client_as("technician")
    grant_url = client.get(f"/lab/photos/{job.item.asset_id}/preview", params(job))["Location"]

    jobs.job_move(job_id=job.pk, from_statuses={"queued"}, to_status="cancelled")
    refused = client.get(grant_url)

    assert (refused.status_code, refused.json()["rule"]) == (403, "grant_revoked")
    assert AccessGrant.objects.get().revoked_reason == "job_cancelled"
    assert AuditRecord.objects.latest("seq").order_ref == job.order.ref


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_grant_opened_on_a_host_whose_clock_is_off_lives_its_lifetime_on_the_database_s_clock(
    job, monkeypatch, offset
):
    client, _ = client_as("technician")
    with host_clock_off(offset, monkeypatch):
        grant_url = client.get(f"/lab/photos/{job.item.asset_id}/preview", params(job))["Location"]
        served = client.get(grant_url)

    grant = AccessGrant.objects.get()
    lifetime = grant.expires_at - database_now()
    assert served.status_code == 200  # a host behind did not open a grant that was dead on arrival
    assert timedelta(seconds=590) < lifetime <= timedelta(seconds=600)  # a host ahead did not stretch it


def test_a_host_whose_clock_is_behind_refuses_a_grant_the_database_s_clock_has_ended(job, clock, monkeypatch):
    client, _ = client_as("technician")
    grant_url = client.get(f"/lab/photos/{job.item.asset_id}/preview", params(job))["Location"]
    clock.forward(601)

    with host_clock_off(-SKEW, monkeypatch):
        late = client.get(grant_url)
        asked_again = client.get(f"/lab/photos/{job.item.asset_id}/preview", params(job))

    assert (late.status_code, late.json()["rule"]) == (403, "grant_expired")
    # The new request opens a new grant rather than reusing the one this host still thinks is live.
    assert asked_again["Location"] != grant_url
    assert AccessGrant.objects.count() == 2


def test_a_host_whose_clock_is_ahead_serves_a_grant_the_database_s_clock_still_holds(job, clock, monkeypatch):
    client, _ = client_as("technician")
    grant_url = client.get(f"/lab/photos/{job.item.asset_id}/preview", params(job))["Location"]
    clock.forward(300)

    with host_clock_off(SKEW, monkeypatch):
        served = client.get(grant_url)
        asked_again = client.get(f"/lab/photos/{job.item.asset_id}/preview", params(job))

    assert served.status_code == 200
    assert asked_again["Location"] == grant_url  # reused, not replaced by a "renewal"
    assert AccessGrant.objects.count() == 1


def test_a_closed_context_ends_its_grants_at_the_database_s_time(job, monkeypatch):
    from lab.production import jobs

    client, _ = client_as("technician")
    client.get(f"/lab/photos/{job.item.asset_id}/preview", params(job))
    with host_clock_off(SKEW, monkeypatch):
        jobs.job_move(job_id=job.pk, from_statuses={"queued"}, to_status="cancelled")

    revoked_at = AccessGrant.objects.get().revoked_at
    assert revoked_at is not None
    assert abs(revoked_at - database_now()) < timedelta(minutes=1)


def test_asking_again_for_another_purpose_on_the_same_job_after_expiry_is_still_a_renewal(job, clock):
    """Only the same purpose and task counted: a technician alternating `printing` and `handling` on one job
    kept a photo open for 40 minutes with no renewal flagged."""
    client, _ = client_as("technician")
    url = f"/lab/photos/{job.item.asset_id}/preview"
    client.get(client.get(url, params(job))["Location"])

    clock.forward(601 + 60)
    handling = client.get(client.get(url, {**params(job), "purpose": "handling"})["Location"])

    first, second = AccessGrant.objects.order_by("created_at")
    assert (handling.status_code, second.purpose, second.renews_id) == (200, "handling", first.pk)
