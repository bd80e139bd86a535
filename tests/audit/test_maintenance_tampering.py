"""A maintenance ticket changed in the database alone opens no photo (lab/production/models.py: its seal).

The two-person rule and the ticket's list of jobs are rows: a database administrator (helping a technician,
or being one) could add a job to an open ticket, approve it with a supervisor's id, or reopen a closed one.
Each is refused at the gate as a recorded denial; the lab's own actions on the ticket keep it usable."""

from __future__ import annotations

import pytest

from lab.audit.models import AuditRecord
from lab.audit.records import RequestMeta
from lab.gate import access as gate
from lab.gate.refusals import AccessDenied
from lab.gate.rules import AccessRequest
from lab.production.maintenance import (
    maintenance_ticket_approve,
    maintenance_ticket_close,
    maintenance_ticket_open,
)
from lab.production.models import MaintenanceTicket, PrintJob
from tests.builders import hotfolder_printer, person, released_order
from tests.support.dba import dba

pytestmark = pytest.mark.django_db
META = RequestMeta(client_ip="10.1.2.3", user_agent="pytest", request_id="req-t")
CHANGED = "maintenance_ticket_changed_outside_the_lab"


def view(user, job: PrintJob, ticket: MaintenanceTicket, *, variant: str = "preview") -> str:
    """The gate's answer: "granted", or the rule of its refusal."""
    try:
        gate.image_access(
            user=user,
            request=AccessRequest(
                asset_id=str(job.item.asset_id),
                purpose="maintenance",
                justification="banding across the print",
                context_type="maintenance_ticket",
                context_id=str(ticket.pk),
                variant=variant,
            ),
            meta=META,
        )
    except AccessDenied as denied:
        return str(denied.details["rule"])
    return "granted"


@pytest.fixture
def jobs() -> list[PrintJob]:
    hotfolder_printer("minilab", sizes=["4x6"])
    return [PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)])) for _ in range(2)]


def test_a_job_added_to_a_ticket_in_the_database_is_not_shown(jobs):
    technician = person("technician")
    ticket = maintenance_ticket_open(
        printer_id=jobs[0].printer_id, actor=technician, description="banding", job_ids=[jobs[0].pk]
    )
    assert view(technician, jobs[0], ticket) == "granted"

    dba(
        "INSERT INTO audit_maintenanceticket_jobs (maintenanceticket_id, printjob_id) VALUES (%s, %s)",
        ticket.pk,
        jobs[1].pk,
    )

    assert view(technician, jobs[1], ticket) == CHANGED
    assert view(technician, jobs[0], ticket) == CHANGED  # the ticket as a whole is no longer the lab's
    assert AuditRecord.objects.filter(rule=CHANGED, outcome="denied").count() == 2


def test_an_approval_written_in_the_database_gives_no_full_resolution(jobs):
    technician, supervisor = person("technician"), person("supervisor")
    ticket = maintenance_ticket_open(
        printer_id=jobs[0].printer_id, actor=technician, description="banding", job_ids=[jobs[0].pk]
    )
    assert view(technician, jobs[0], ticket, variant="full") == "maintenance_full_resolution_needs_approval"

    dba(
        "UPDATE audit_maintenanceticket SET approved_by_id = %s, approved_at = now() WHERE id = %s",
        supervisor.pk,
        ticket.pk,
    )

    assert view(technician, jobs[0], ticket, variant="full") == CHANGED


def test_a_closed_ticket_reopened_in_the_database_shows_nothing(jobs):
    technician = person("technician")
    ticket = maintenance_ticket_open(
        printer_id=jobs[0].printer_id, actor=technician, description="banding", job_ids=[jobs[0].pk]
    )
    maintenance_ticket_close(ticket_id=ticket.pk, actor=technician)

    dba("UPDATE audit_maintenanceticket SET closed_at = NULL WHERE id = %s", ticket.pk)

    assert view(technician, jobs[0], ticket) == CHANGED


def test_the_tickets_own_approval_keeps_it_usable(jobs):
    technician, supervisor = person("technician"), person("supervisor")
    ticket = maintenance_ticket_open(
        printer_id=jobs[0].printer_id, actor=technician, description="banding", job_ids=[jobs[0].pk]
    )

    maintenance_ticket_approve(ticket_id=ticket.pk, actor=supervisor)

    assert view(technician, jobs[0], ticket, variant="full") == "granted"


def test_a_ticket_put_back_open_with_the_seal_it_had_before_its_close_shows_nothing(jobs):
    """The DBA kept the open ticket's row (and its valid seal) and writes it back after the close: the audit
    log's record of the close still stands."""
    technician = person("technician")
    ticket = maintenance_ticket_open(
        printer_id=jobs[0].printer_id, actor=technician, description="banding", job_ids=[jobs[0].pk]
    )
    kept_seal = MaintenanceTicket.objects.get(pk=ticket.pk).sealed
    maintenance_ticket_close(ticket_id=ticket.pk, actor=technician)

    dba(
        "UPDATE audit_maintenanceticket SET closed_at = NULL, sealed = %s WHERE id = %s", kept_seal, ticket.pk
    )

    assert MaintenanceTicket.objects.get(pk=ticket.pk).is_sealed  # the copy's seal is valid
    assert view(technician, jobs[0], ticket) == CHANGED


def test_approving_a_ticket_widened_in_the_database_does_not_make_the_added_job_the_tickets(jobs):
    technician, supervisor = person("technician"), person("supervisor")
    ticket = maintenance_ticket_open(
        printer_id=jobs[0].printer_id, actor=technician, description="banding", job_ids=[jobs[0].pk]
    )
    dba(
        "INSERT INTO audit_maintenanceticket_jobs (maintenanceticket_id, printjob_id) VALUES (%s, %s)",
        ticket.pk,
        jobs[1].pk,
    )

    maintenance_ticket_approve(ticket_id=ticket.pk, actor=supervisor)

    assert view(technician, jobs[1], ticket, variant="full") == CHANGED
