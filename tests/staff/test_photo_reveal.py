"""Showing a photo from the floor goes through the audit gate: the job page offers the purposes the person
may name (with their context), maintenance tickets and clarification cases open and close the contexts."""

from __future__ import annotations

import pytest

from lab.audit.models import AccessGrant, AuditRecord
from lab.orders.models import ClarificationCase
from lab.orders.states import OrderStatus
from lab.orders.transitions import order_transition
from lab.production.holds import order_hold, order_release_hold
from lab.production.models import MaintenanceTicket, PrintJob
from tests.builders import client_as, hotfolder_printer, person, released_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(settings) -> PrintJob:
    hotfolder_printer("minilab", sizes=["4x6"])
    released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    return PrintJob.objects.select_related("order", "item").get()


def test_technician_is_offered_printing_and_handling_and_the_form_goes_through_the_gate(job):
    client, technician = client_as("technician")

    page = client.get(f"/lab/jobs/{job.pk}/").content.decode()
    photo = client.get(
        f"/lab/photos/{job.item.asset_id}/preview",
        {"purpose": "printing", "context_type": "print_job", "context_id": job.pk, "justification": "crop"},
        follow=True,
    )

    assert 'name="purpose" value="printing"' in page and 'name="purpose" value="handling"' in page
    assert 'value="packaging"' not in page
    assert "<img" not in page  # nothing is shown until asked
    assert photo.status_code == 200 and photo["Content-Type"] == "image/jpeg"
    record = AuditRecord.objects.get()
    assert (record.actor_id, record.purpose, record.action) == (
        str(technician.public_id),
        "printing",
        "image.view.preview",
    )


def test_auditor_is_offered_nothing(job):
    client, _ = client_as("auditor")

    page = client.get(f"/lab/jobs/{job.pk}/").content.decode()

    assert 'id="photo-requests"' not in page


def test_maintenance_ticket_opens_the_context_and_closing_it_ends_the_access(job):
    client, _ = client_as("technician")

    client.post(f"/lab/jobs/{job.pk}/tickets/", {"description": "banding on the left", "job_ids": [job.pk]})
    ticket = MaintenanceTicket.objects.get()
    params: dict[str, str | int] = {
        "purpose": "maintenance",
        "context_type": "maintenance_ticket",
        "context_id": ticket.pk,
        "justification": "compare the banding",
    }
    url = f"/lab/photos/{job.item.asset_id}/preview"
    page = client.get(f"/lab/jobs/{job.pk}/").content.decode()
    during = client.get(url, params, follow=True)
    client.post(f"/lab/jobs/{job.pk}/tickets/{ticket.pk}/close/")
    after = client.get(url, params)

    assert list(ticket.jobs.values_list("pk", flat=True)) == [job.pk]
    assert f'value="{ticket.pk}"' in page
    assert (during.status_code, after.status_code) == (200, 403)
    assert after.json()["rule"] == "maintenance_ticket_closed"
    ticket.refresh_from_db()
    assert ticket.closed_at is not None


def test_hold_opens_a_clarification_case_and_release_closes_it(job):
    supervisor = person("supervisor")

    order_hold(order_ref=job.order.ref, actor=supervisor, message="Which way should we crop?")
    case = ClarificationCase.objects.get()
    client, _ = client_as("supervisor")
    params: dict[str, str | int] = {
        "purpose": "order_clarification",
        "context_type": "clarification_case",
        "context_id": case.pk,
        "justification": "see the crop question",
    }
    url = f"/lab/photos/{job.item.asset_id}/preview"
    during = client.get(url, params, follow=True)
    order_release_hold(order_ref=job.order.ref, actor=supervisor)
    after = client.get(url, params)

    assert case.question == "Which way should we crop?"
    assert (during.status_code, after.status_code) == (200, 403)
    case.refresh_from_db()
    assert case.closed_at is not None


def test_full_resolution_under_a_hold_is_for_someone_other_than_the_person_who_put_it_on_hold(job):
    """Whoever holds an order opens its clarification case: alone, a technician could put any order on hold,
    download its originals and release it again, with no second person (a maintenance ticket needs one)."""
    # given an order a technician put on hold
    client, technician = client_as("technician")
    order_hold(order_ref=job.order.ref, actor=technician, message="Which way should we crop?")
    case = ClarificationCase.objects.get()
    params: dict[str, str | int] = {
        "purpose": "order_clarification",
        "context_type": "clarification_case",
        "context_id": case.pk,
        "justification": "checking the crop of the photo",
    }

    # when they ask for the photo's preview and its original, and a colleague asks for the original
    preview = client.get(f"/lab/photos/{job.item.asset_id}/preview", params, follow=True)
    own = client.get(f"/lab/photos/{job.item.asset_id}/download", params, follow=True)
    colleague, _ = client_as("technician")
    other = colleague.get(f"/lab/photos/{job.item.asset_id}/download", params, follow=True)

    # then the preview is theirs, the original only the colleague's
    assert (preview.status_code, other.status_code) == (200, 200)
    assert (own.status_code, own.json()["rule"]) == (403, "clarification_full_resolution_not_by_its_opener")


def printing_params(job: PrintJob, purpose: str = "printing") -> dict[str, str | int]:
    return {
        "purpose": purpose,
        "context_type": "print_job",
        "context_id": job.pk,
        "justification": "checking the crop of the photo",
    }


def test_a_held_orders_photo_is_not_shown_under_printing_or_handling_even_to_whoever_held_it(job):
    """A held order's jobs stay queued or ready (nothing submits them), so they counted as active: whoever
    put the order on hold downloaded its originals under `printing`, alone and unflagged, past the case's
    second person (and a colleague did too, outside the clarification's flagged views)."""
    # given an order a technician put on hold, its case open
    client, technician = client_as("technician")
    order_hold(order_ref=job.order.ref, actor=technician, message="Which way should we crop?")
    case = ClarificationCase.objects.get()
    colleague, _ = client_as("technician")
    asset = job.item.asset_id

    # when they and a colleague ask for the original (or the preview) under printing or handling
    own_full = client.get(f"/lab/photos/{asset}/full", printing_params(job), follow=True)
    own_handling = client.get(f"/lab/photos/{asset}/preview", printing_params(job, "handling"), follow=True)
    other_full = colleague.get(f"/lab/photos/{asset}/full", printing_params(job), follow=True)

    # then each is refused as a hold, and recorded, with no grant opened
    answers = [(r.status_code, r.json()["rule"]) for r in (own_full, own_handling, other_full)]
    assert answers == [(403, "order_on_hold")] * 3
    denials = AuditRecord.objects.filter(action="image.access.denied").order_by("seq")
    assert list(denials.values_list("rule", "order_ref")) == [("order_on_hold", job.order.ref)] * 3
    assert not AccessGrant.objects.exists()
    assert not AuditRecord.objects.filter(action__in=["image.view.full", "image.view.preview"]).exists()

    # and the clarification still shows the original to the colleague, as before
    clarification: dict[str, str | int] = {
        "purpose": "order_clarification",
        "context_type": "clarification_case",
        "context_id": case.pk,
        "justification": "see the crop question",
    }
    clarifying = colleague.get(f"/lab/photos/{asset}/full", clarification, follow=True)
    assert clarifying.status_code == 200
    assert AuditRecord.objects.get(action="image.view.full").rule == "open_clarification_case"


def test_an_order_stripe_held_is_not_shown_under_printing(job):
    """A hold a dispute or refund caused opens no case: under printing, its originals were anyone's."""
    # given an order Stripe put on hold (money taken back while it is made)
    order_transition(
        order=job.order, to_status=OrderStatus.ON_HOLD, actor_kind="stripe", note="charge.dispute.created"
    )
    client, _ = client_as("supervisor")

    # when a supervisor asks for its original under printing
    full = client.get(f"/lab/photos/{job.item.asset_id}/full", printing_params(job), follow=True)

    # then it is refused as a hold, recorded, no grant opened
    assert (full.status_code, full.json()["rule"]) == (403, "order_on_hold")
    assert list(AuditRecord.objects.values_list("action", "rule")) == [
        ("image.access.denied", "order_on_hold")
    ]
    assert not AccessGrant.objects.exists()


def test_an_unknown_job_of_a_stripe_held_order_is_still_handled(job):
    """A Stripe hold lets the jobs already at a printer finish: one that ended unknown needs a person to count
    its prints (the board lists it), so its preview under handling was refused as a hold (order_on_hold)."""
    # given a job whose send to the printer ended unknown, then a dispute that held its order
    PrintJob.objects.filter(pk=job.pk).update(status="unknown")
    order_transition(
        order=job.order, to_status=OrderStatus.ON_HOLD, actor_kind="stripe", note="charge.dispute.created"
    )
    client, _ = client_as("technician")

    # when a technician opens the job and asks for its preview under handling
    page = client.get(f"/lab/jobs/{job.pk}/").content.decode()
    preview = client.get(
        f"/lab/photos/{job.item.asset_id}/preview", printing_params(job, "handling"), follow=True
    )

    # then it is offered and shown, recorded as the active job's
    assert 'name="purpose" value="handling"' in page
    assert (preview.status_code, preview["Content-Type"]) == (200, "image/jpeg")
    assert list(AuditRecord.objects.values_list("action", "rule")) == [
        ("image.view.preview", "active_print_job")
    ]


@pytest.mark.parametrize("status", ["queued", "ready"])
def test_a_waiting_job_of_a_stripe_held_order_is_neither_offered_nor_shown_under_printing(job, status):
    # given a job the hold stops (waiting for its raster or its send) of an order Stripe held
    PrintJob.objects.filter(pk=job.pk).update(status=status)
    order_transition(
        order=job.order, to_status=OrderStatus.ON_HOLD, actor_kind="stripe", note="charge.dispute.created"
    )
    client, _ = client_as("technician")

    # when a technician opens the job and asks for its original under printing
    page = client.get(f"/lab/jobs/{job.pk}/").content.decode()
    full = client.get(f"/lab/photos/{job.item.asset_id}/full", printing_params(job), follow=True)

    # then the page offers neither printing nor handling, and the gate refuses it as a hold, recorded
    assert 'value="printing"' not in page and 'value="handling"' not in page
    assert (full.status_code, full.json()["rule"]) == (403, "order_on_hold")
    assert list(AuditRecord.objects.values_list("action", "rule")) == [
        ("image.access.denied", "order_on_hold")
    ]
    assert not AccessGrant.objects.exists()
