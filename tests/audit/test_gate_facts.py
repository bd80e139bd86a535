"""The gate's facts in one PostgreSQL statement are the facts the ORM reads one query at a time: for every
purpose, context state, photo, resolution and grant, both give the same photo, context, live grant and
decision (lab/gate/facts.py keeps the ORM path for other databases)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from lab.accounts.roles import primary_role
from lab.audit.models import AccessGrant
from lab.audit.records import RequestMeta
from lab.gate.facts import Facts, _facts_postgresql, _uuid, facts_portable
from lab.gate.rules import AccessRequest, request_decide
from lab.orders.models import ClarificationCase, Order
from lab.orders.transitions import order_transition
from lab.production.maintenance import maintenance_ticket_approve, maintenance_ticket_open
from lab.production.models import PrintJob
from tests.builders import hotfolder_printer, person, ready_to_pack_order, released_order

pytestmark = pytest.mark.django_db
META = RequestMeta(client_ip="10.1.2.3", user_agent="pytest", request_id="req-f")


def _snapshot(facts: Facts) -> tuple[object, ...]:
    asset = facts.asset
    return (
        None if asset is None else (asset.pk, asset.status, asset.blob_name, asset.data_key_id),
        None if asset is None or asset.data_key is None else asset.data_key.master_key_id,
        # Without the photo the context is never looked at (the ORM does not read it).
        facts.context if asset is not None else None,
        None if facts.grant is None else facts.grant.pk,
        facts.has_open_grants,
    )


def test_one_statement_and_the_orm_read_the_same_facts_and_decide_alike(settings) -> None:
    assert connection.vendor == "postgresql"
    minilab = hotfolder_printer("minilab", sizes=["4x6"])
    active = PrintJob.objects.select_related("order", "item").get(
        order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    )
    waiting = PrintJob.objects.select_related("order", "item").get(
        order=ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    )
    held = PrintJob.objects.select_related("order", "item").get(
        order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    )
    technician, supervisor, packer = person("technician"), person("supervisor"), person("packer")
    second_supervisor = person("supervisor")
    ticket = maintenance_ticket_open(
        printer_id=minilab.pk, actor=technician, description="banding", job_ids=[active.pk]
    )
    approved = maintenance_ticket_open(
        printer_id=minilab.pk, actor=supervisor, description="jam", job_ids=[waiting.pk]
    )
    maintenance_ticket_approve(ticket_id=approved.pk, actor=second_supervisor)
    order_transition(order=Order.objects.get(pk=held.order_id), to_status="on_hold")
    case = ClarificationCase.objects.create(order=held.order, opened_by=supervisor, question="which crop?")
    closed_case = ClarificationCase.objects.create(
        order=held.order, opened_by=supervisor, question="old", closed_at=timezone.now()
    )
    # A live grant and an expired one for the same scope, and a full-resolution one.
    now = timezone.now()
    for expires, full in ((now + timedelta(minutes=5), False), (now - timedelta(minutes=1), False)):
        AccessGrant.objects.create(
            actor=technician,
            asset_id=active.item.asset_id,
            purpose="printing",
            context_type="print_job",
            context_id=str(active.pk),
            justification="check",
            expires_at=expires,
            is_full_resolution=full,
        )
    contexts = {
        "printing": [("print_job", str(active.pk)), ("print_job", str(waiting.pk)), ("order", "x")],
        "handling": [("print_job", str(held.pk)), ("print_job", "not-a-number")],
        "packaging": [("order", waiting.order.ref), ("order", active.order.ref), ("order", "PL-NONE")],
        "maintenance": [
            ("maintenance_ticket", str(ticket.pk)),
            ("maintenance_ticket", str(approved.pk)),
            ("maintenance_ticket", "999999"),
        ],
        "order_clarification": [
            ("clarification_case", str(case.pk)),
            ("clarification_case", str(closed_case.pk)),
        ],
        "curiosity": [("print_job", str(active.pk))],
    }
    photos = [
        str(active.item.asset_id),
        str(waiting.item.asset_id),
        str(held.item.asset_id),
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
    ]
    compared = 0
    rules: set[str] = set()
    for user in (technician, supervisor, packer):
        for purpose, pairs in contexts.items():
            for (context_type, context_id), photo, variant in itertools.product(
                pairs, photos, ("preview", "full")
            ):
                request = AccessRequest(
                    asset_id=photo,
                    purpose=purpose,
                    justification="check the crop on the print",
                    context_type=context_type,
                    context_id=context_id,
                    variant=variant,
                )
                one = _facts_postgresql(user=user, request=request, asset_id=_uuid(photo))
                orm = facts_portable(user=user, request=request, asset_id=_uuid(photo))
                assert _snapshot(one) == _snapshot(orm), (purpose, context_type, context_id, photo, variant)
                role = primary_role(user)
                decision = request_decide(user=user, role=role, request=request, facts=one)
                assert decision == request_decide(user=user, role=role, request=request, facts=orm)
                rules.add(decision.rule)
                compared += 1
    # Every outcome the context rules know was among them, granted and refused.
    assert {
        "active_print_job",
        "print_job_not_active",
        "order_being_packed",
        "order_not_being_packed",
        "open_maintenance_ticket",
        "photo_not_on_ticket",
        "maintenance_full_resolution_needs_approval",
        "open_clarification_case",
        "clarification_not_open",
        "context_not_found",
        "asset_unavailable",
        "purpose_not_allowed_for_role",
    } <= rules, rules
    assert compared == 3 * sum(len(pairs) for pairs in contexts.values()) * len(photos) * 2
