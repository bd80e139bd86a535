"""Audit records as the gate writes them, appended through the real chain writer at chosen times (the writer's
clock, the database's, reads that moment for the append: lab.audit.lanes.record_time); shipped orders to
compare them with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

from lab.accounts.models import User
from lab.audit import lanes
from lab.audit.models import AuditRecord
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.orders.models import Order

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00 UTC


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def attempt(
    person: User,
    *,
    at: datetime,
    order_ref: str | None = "PL-ORDER0000001",
    action: str = "image.view.preview",
    outcome: str = "granted",
    rule: str = "active_print_job",
    purpose: str = "printing",
    asset_id: str | None = "00000000-0000-4000-8000-000000000001",
    role: str = "technician",
) -> AuditRecord:
    """A record of `person`'s access attempt, stamped `at` by the chain writer's own clock."""
    with mock.patch.object(lanes, "record_time", lambda database_time: at):
        return audit_append(
            Entry(
                action=action,
                actor_id=str(person.public_id),
                actor_role=role,
                outcome=outcome,
                rule=rule,
                purpose=purpose,
                justification="check the crop",
                asset_id=asset_id,
                order_ref=order_ref,
                context_type="print_job",
                context_id="17",
                meta=RequestMeta(client_ip="10.0.0.7", user_agent="pytest", request_id="req-1"),
            )
        )


def denied(person: User, *, at: datetime, rule: str, order_ref: str | None = None) -> AuditRecord:
    return attempt(
        person, at=at, order_ref=order_ref, action="image.access.denied", outcome="denied", rule=rule
    )


def shipped_order(*, shipped_at: datetime) -> Order:
    return Order.objects.create(
        status="shipped",
        shipping_method="standard",
        subtotal_minor=100,
        shipping_minor=0,
        total_minor=100,
        currency="usd",
        shipped_at=shipped_at,
    )


def preview_entry(
    actor_id: str, *, asset_id: str, order_ref: str = "PL-TEST", context_id: str = "1"
) -> Entry:
    """What the gate records for a technician's granted preview of a photo for an active print job."""
    return Entry(
        action="image.view.preview",
        actor_id=actor_id,
        actor_role="technician",
        outcome="granted",
        rule="active_print_job",
        purpose="printing",
        asset_id=asset_id,
        order_ref=order_ref,
        context_type="print_job",
        context_id=context_id,
    )


def audit_write(count: int) -> None:
    """`count` granted preview records by three technicians, now (also run in other processes)."""
    for i in range(count):
        audit_append(preview_entry(f"actor-{i % 3}", asset_id=f"asset-{i}", context_id=str(i)))
