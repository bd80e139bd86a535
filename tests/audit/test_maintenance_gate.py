"""The maintenance side door, closed: a ticket names its jobs, shows only their photos, never once their
order is packed or shipped, full resolution only after a second person (a supervisor) approved it, and every
maintenance view lands in the auditors' review queue as flagged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lab.audit.models import AccessGrant, AuditRecord, ReviewItem
from lab.audit.records import RequestMeta
from lab.gate import access as gate
from lab.gate.anomalies import Flag, anomalies_find
from lab.gate.refusals import AccessDenied
from lab.gate.review import review_sample_daily
from lab.gate.rules import AccessRequest
from lab.lib.errors import DomainError, PermissionDenied
from lab.orders.models import Order
from lab.orders.transitions import order_transition
from lab.privacy.vault import vault_read
from lab.production.maintenance import (
    maintenance_ticket_approve,
    maintenance_ticket_candidate_jobs,
    maintenance_ticket_open,
)
from lab.production.models import JobEvent, MaintenanceTicket, PrintJob
from tests.builders import client_as, hotfolder_printer, person, ready_to_pack_order, released_order

pytestmark = pytest.mark.django_db
META = RequestMeta(client_ip="10.1.2.3", user_agent="pytest", request_id="req-m")


@pytest.fixture
def floor(settings) -> dict[str, PrintJob]:
    """On one printer: a job printing now, a printed job waiting to be packed, a job of a shipped order."""
    hotfolder_printer("minilab", sizes=["4x6"])
    active = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    waiting = PrintJob.objects.get(order=ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    shipped_order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    order_transition(order=shipped_order, to_status="packed")
    order_transition(order=shipped_order, to_status="shipped")
    Order.objects.filter(pk=shipped_order.pk).update(shipped_at=timezone.now())
    shipped = PrintJob.objects.get(order=shipped_order)
    assert active.printer_id == waiting.printer_id == shipped.printer_id
    return {"active": active, "waiting": waiting, "shipped": shipped}


def ask(user, job: PrintJob, ticket: MaintenanceTicket, *, variant="preview", justification="banding check"):
    return gate.image_access(
        user=user,
        request=AccessRequest(
            asset_id=str(job.item.asset_id),
            purpose="maintenance",
            justification=justification,
            context_type="maintenance_ticket",
            context_id=str(ticket.pk),
            variant=variant,
        ),
        meta=META,
    )


def refused_rule(user, job, ticket, **kwargs) -> str:
    with pytest.raises(AccessDenied) as denied:
        ask(user, job, ticket, **kwargs)
    return str(denied.value.details["rule"])


def test_candidates_are_jobs_at_the_printer_or_printed_recently_of_orders_not_yet_packed(floor, settings):
    settings.AUDIT_MAINTENANCE_WINDOW_HOURS = 4
    printer_id = floor["active"].printer_id
    old = PrintJob.objects.get(order=ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    PrintJob.objects.filter(pk=old.pk).update(printed_at=timezone.now() - timedelta(hours=5))

    candidates = [job.pk for job in maintenance_ticket_candidate_jobs(printer_id=printer_id)]

    assert candidates == [floor["active"].pk, floor["waiting"].pk]


def test_a_ticket_naming_a_job_it_may_not_name_is_refused_and_nothing_is_opened(floor):
    technician = person("technician")

    with pytest.raises(DomainError) as refused:
        maintenance_ticket_open(
            printer_id=floor["active"].printer_id,
            actor=technician,
            description="banding",
            job_ids=[floor["active"].pk, floor["shipped"].pk],
        )

    assert (refused.value.code, refused.value.details["job_ids"]) == (
        "job_not_eligible",
        [floor["shipped"].pk],
    )
    assert MaintenanceTicket.objects.count() == 0
    assert AuditRecord.objects.count() == 0
    assert not JobEvent.objects.filter(kind="maintenance_opened").exists()


def test_the_side_door_is_closed_only_the_tickets_jobs_and_never_a_shipped_order(floor):
    """The insider's probe: open a ticket on the printer, then ask for any photo ever printed on it."""
    technician = person("technician")
    ticket = maintenance_ticket_open(
        printer_id=floor["active"].printer_id,
        actor=technician,
        description="banding",
        job_ids=[floor["active"].pk],
    )

    shown = ask(technician, floor["active"], ticket)
    waiting_rule = refused_rule(
        technician, floor["waiting"], ticket, variant="download", justification="x" * 20
    )
    shipped_rule = refused_rule(
        technician, floor["shipped"], ticket, variant="download", justification="x" * 20
    )

    assert shown.audit_seq == AuditRecord.objects.get(action="image.view.preview").seq
    assert (waiting_rule, shipped_rule) == ("photo_not_on_ticket", "photo_not_on_ticket")
    denials = list(
        AuditRecord.objects.filter(action="image.access.denied")
        .order_by("seq")
        .values_list("order_ref", "rule", "context_id")
    )
    assert denials == [
        (floor["waiting"].order.ref, "photo_not_on_ticket", str(ticket.pk)),
        (floor["shipped"].order.ref, "photo_not_on_ticket", str(ticket.pk)),
    ]
    assert AccessGrant.objects.filter(actor=technician).count() == 1  # only the named job's
    flags = {(a.seq, a.flag) for a in anomalies_find(since=ticket.opened_at, until=timezone.now())}
    shipped_seq = AuditRecord.objects.get(order_ref=floor["shipped"].order.ref).seq
    assert {(shipped_seq, Flag.OUTSIDE_PRODUCTION_STEP), (shipped_seq, Flag.AFTER_SHIPMENT)} <= flags


def test_a_named_job_is_refused_once_its_order_is_packed(floor):
    technician = person("technician")
    waiting = floor["waiting"]
    ticket = maintenance_ticket_open(
        printer_id=waiting.printer_id, actor=technician, description="scratches", job_ids=[waiting.pk]
    )
    ask(technician, waiting, ticket)

    order_transition(order=waiting.order, to_status="packed")

    assert refused_rule(technician, waiting, ticket) == "order_packed_or_shipped"
    last = AuditRecord.objects.latest("seq")
    assert (last.action, last.outcome, last.order_ref) == ("image.access.denied", "denied", waiting.order.ref)
    assert AccessGrant.objects.get().revoked_reason == "order_packed_or_shipped"


def test_full_resolution_needs_a_supervisor_other_than_the_opener_to_approve(floor):
    active = floor["active"]
    opener, other_technician = person("supervisor"), person("technician")
    approver = person("supervisor")
    ticket = maintenance_ticket_open(
        printer_id=active.printer_id, actor=opener, description="colour drift", job_ids=[active.pk]
    )
    reason = "compare the colour drift with the original"

    before = refused_rule(opener, active, ticket, variant="download", justification=reason)
    with pytest.raises(PermissionDenied) as own:
        maintenance_ticket_approve(ticket_id=ticket.pk, actor=opener)
    with pytest.raises(PermissionDenied) as technician_tries:
        maintenance_ticket_approve(ticket_id=ticket.pk, actor=other_technician)
    ticket.refresh_from_db()
    unapproved = (ticket.approved_by_id, ticket.approved_at)
    maintenance_ticket_approve(ticket_id=ticket.pk, actor=approver)
    delivered = ask(opener, active, ticket, variant="download", justification=reason)

    assert before == "maintenance_full_resolution_needs_approval"
    assert (own.value.code, technician_tries.value.code) == ("approver_is_opener", "not_a_supervisor")
    assert unapproved == (None, None)
    ticket.refresh_from_db()
    assert ticket.approved_by_id == approver.pk
    asset = active.item.asset
    assert delivered.data == vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original")
    assert list(
        AuditRecord.objects.filter(context_type="maintenance_ticket")
        .order_by("seq")
        .values_list("action", "rule")
    ) == [
        ("maintenance.ticket.open", "maintenance_ticket"),
        ("image.access.denied", "maintenance_full_resolution_needs_approval"),
        ("maintenance.ticket.approve", "maintenance_ticket"),
        ("image.download", "open_maintenance_ticket"),
    ]


def test_every_maintenance_view_is_queued_as_flagged_and_never_sampled(floor):
    technician = person("technician")
    active = floor["active"]
    ticket = maintenance_ticket_open(
        printer_id=active.printer_id, actor=technician, description="banding", job_ids=[active.pk]
    )
    printing = gate.image_access(
        user=technician,
        request=AccessRequest(
            asset_id=str(active.item.asset_id),
            purpose="printing",
            justification="check crop",
            context_type="print_job",
            context_id=str(active.pk),
        ),
        meta=META,
    )

    views = [ask(technician, active, ticket).audit_seq for _ in range(3)]
    queued_at_once = sorted(ReviewItem.objects.values_list("record_id", "reason"))
    run = review_sample_daily(day=timezone.localdate(), sample_size=50)

    assert queued_at_once == [(seq, "maintenance_view") for seq in views]
    items = sorted(ReviewItem.objects.values_list("record_id", "reason"))
    assert items == sorted([(seq, "maintenance_view") for seq in views] + [(printing.audit_seq, "sample")])
    assert (run.sampled, run.flagged) == (1, 0)  # the maintenance views were queued already, none sampled


def test_the_job_page_and_the_http_side_door(floor):
    """Through the pages: the ticket form names jobs; a photo of a job not on the ticket is refused."""
    client, _ = client_as("technician")
    active, waiting = floor["active"], floor["waiting"]

    client.post(f"/lab/jobs/{active.pk}/tickets/", {"description": "banding", "job_ids": [active.pk]})
    ticket = MaintenanceTicket.objects.get()
    params: dict[str, str | int] = {
        "purpose": "maintenance",
        "context_type": "maintenance_ticket",
        "context_id": ticket.pk,
        "justification": "compare the banding pattern",
    }
    own = client.get(f"/lab/photos/{active.item.asset_id}/preview", params, follow=True)
    side_door = client.get(f"/lab/photos/{waiting.item.asset_id}/download", params)
    waiting_page = client.get(f"/lab/jobs/{waiting.pk}/").content.decode()

    assert own.status_code == 200 and own["Content-Type"] == "image/jpeg"
    assert (side_door.status_code, side_door.json()["rule"]) == (403, "photo_not_on_ticket")
    assert f'name="context_id" value="{ticket.pk}"' not in waiting_page  # not offered where it does not apply


def test_approve_button_is_shown_only_to_another_supervisor(floor):
    active = floor["active"]
    opener_client, opener = client_as("supervisor")
    opener_client.post(f"/lab/jobs/{active.pk}/tickets/", {"description": "banding", "job_ids": [active.pk]})
    ticket = MaintenanceTicket.objects.get()
    approve_url = f"/lab/jobs/{active.pk}/tickets/{ticket.pk}/approve/"
    other_client, other = client_as("supervisor")
    technician_client, _ = client_as("technician")

    own_page = opener_client.get(f"/lab/jobs/{active.pk}/").content.decode()
    other_page = other_client.get(f"/lab/jobs/{active.pk}/").content.decode()
    technician_post = technician_client.post(approve_url)
    own_post = opener_client.post(approve_url, follow=True)
    ticket.refresh_from_db()
    unchanged = ticket.approved_by_id
    other_client.post(approve_url)

    assert approve_url not in own_page and approve_url in other_page
    assert technician_post.status_code == 403
    assert "A second person must approve" in own_post.content.decode()
    assert unchanged is None
    ticket.refresh_from_db()
    assert ticket.approved_by_id == other.pk
    assert opener.pk != other.pk
