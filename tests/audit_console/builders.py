"""Audit records as the gate writes them, appended through the real chain writer at chosen times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from lab.accounts.models import User
from lab.audit.models import AuditRecord
from lab.audit.records import Entry, RequestMeta, audit_append
from lab.orders.models import Order
from tests.factories import UserFactory

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00 UTC


class Clock:
    """The time audit_append stamps on the next record; tests move it forward like the real clock."""

    def __init__(self) -> None:
        self.current = T0

    def now(self) -> datetime:
        return self.current

    def at(self, moment: datetime) -> None:
        self.current = moment


def person(*roles: str, **fields: Any) -> User:
    """A user in the given roles (factory_boy's call is typed as the factory, hence the cast)."""
    return cast(User, UserFactory(roles=list(roles), **fields))


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def attempt(
    clock: Clock,
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
    clock.at(at)
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


def denied(
    clock: Clock, person: User, *, at: datetime, rule: str, order_ref: str | None = None
) -> AuditRecord:
    return attempt(
        clock, person, at=at, order_ref=order_ref, action="image.access.denied", outcome="denied", rule=rule
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
