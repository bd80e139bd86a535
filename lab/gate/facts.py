"""What the access gate decides on, read in one statement: the person's roles, the photo (with its data key),
the state of the context a request names and the person's live grant for that scope.

The gate's rules (lab/gate/rules.py) run on these facts in Python, in their fixed order. On PostgreSQL the
facts are one query (lateral joins); elsewhere (the embedded SQLite default) the same facts come from the ORM
queries the gate used before, one per fact. Both read the same rows: tests/audit/test_gate_facts.py compares
them for every purpose and outcome.
"""

from __future__ import annotations

# The SQL here is built from model table and column names (never from input); values are parameters.
# ruff: noqa: S608
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Field, Model

from lab.accounts.models import User
from lab.accounts.roles import user_roles
from lab.audit.models import AccessGrant, Purpose
from lab.audit.records import prepared_cursor
from lab.lib.clock import database_now
from lab.orders.models import Asset, ClarificationCase, Order, OrderItem
from lab.privacy.models import DataKey
from lab.production.models import MaintenanceTicket, PrintJob

if TYPE_CHECKING:
    from lab.gate.rules import AccessRequest


@dataclass(frozen=True)
class Context:
    """The state of the context a request names, as far as its purpose needs it.

    found: the job (printing, handling), order (packaging), ticket (maintenance) or case (clarification)
    exists and, except for the ticket, concerns this photo. status: the print job's. order_status/order_ref:
    the order of that job (a held order's jobs stay active), case or ticket job. is_open/is_approved: the
    case or ticket. on_ticket: the ticket names a job of this photo; probed_ref: otherwise the photo's
    latest order (named as the one probed).
    For a case, is_approved: a second person stands behind the view, as a ticket's approval does: someone
    other than the viewer opened it.
    """

    found: bool = False
    status: str | None = None
    order_status: str | None = None
    order_ref: str | None = None
    is_open: bool = False
    is_approved: bool = False
    on_ticket: bool = False
    probed_ref: str | None = None


@dataclass(frozen=True)
class Facts:
    asset: Asset | None  # with its data key loaded
    context: Context
    # The database's clock as these facts were read: what grants are opened and judged expired by, so a web
    # host whose own clock is off neither stretches nor cuts a grant's lifetime (lab/lib/clock.py).
    now: datetime
    grant: AccessGrant | None = None  # the person's live grant for this scope and resolution, newest first
    has_open_grants: bool = True  # any grant of this person for this scope not yet revoked (unknown: True)


def facts_gather(*, user: User, request: AccessRequest) -> Facts:
    """Everything the gate's rules and the grant step need for one request, and the time it was read at."""
    asset_id = _uuid(request.asset_id)
    if connection.vendor == "postgresql":
        return _facts_postgresql(user=user, request=request, asset_id=asset_id)
    return facts_portable(user=user, request=request, asset_id=asset_id)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def context_int(value: str) -> int:
    """A context's id as the lab writes it (`42`), else -1 (no such context). `042`, or digits of another
    script, named the same job to the gate, while a grant's scope and a closing context's revocation go by
    the id as written: asked that way, a fresh grant opened that was no renewal and that no close ended."""
    if not (value.isascii() and value.isdigit() and len(value) < 18) or str(int(value)) != value:
        return -1
    return int(value)


# --- PostgreSQL: one statement ----------------------------------------------------------------------------


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column is not None
    return connection.ops.quote_name(field.column)


def _attnames(model: type[Model]) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


def _select_all(model: type[Model], alias: str) -> str:
    return ", ".join(f"{alias}.{_column(model, f.name)}" for f in model._meta.concrete_fields)


_CONTEXT_COLUMNS = "found, status, order_status, order_ref, is_open, is_approved, on_ticket, probed_ref"


@cache
def _context_sql(kind: str) -> str:
    """A lateral subquery (≤ 1 row of _CONTEXT_COLUMNS) for one kind of purpose; `a` is the asset."""
    job, item, order = _table(PrintJob), _table(OrderItem), _table(Order)
    j_item, j_order = _column(PrintJob, "item"), _column(PrintJob, "order")
    i_asset, i_order = _column(OrderItem, "asset"), _column(OrderItem, "order")
    o_ref, o_status = _column(Order, "ref"), _column(Order, "status")
    of_photo = f"EXISTS (SELECT 1 FROM {item} oi WHERE oi.{i_order} = o.id AND oi.{i_asset} = a.id)"
    if kind == "job":
        return (
            f"SELECT TRUE AS found, j.{_column(PrintJob, 'status')}::text AS status,"
            f" o.{o_status}::text AS order_status,"
            f" o.{o_ref}::text AS order_ref, FALSE AS is_open, FALSE AS is_approved, FALSE AS on_ticket,"
            f" NULL::text AS probed_ref"
            f" FROM {job} j JOIN {item} i ON i.id = j.{j_item} JOIN {order} o ON o.id = j.{j_order}"
            f" WHERE j.id = %(context_int)s AND i.{i_asset} = a.id"
        )
    if kind == "order":
        return (
            f"SELECT TRUE AS found, NULL::text AS status, o.{o_status}::text AS order_status,"
            f" o.{o_ref}::text AS order_ref, FALSE AS is_open, FALSE AS is_approved, FALSE AS on_ticket,"
            f" NULL::text AS probed_ref"
            f" FROM {order} o WHERE o.{o_ref} = %(context_id)s AND {of_photo} LIMIT 1"
        )
    if kind == "case":
        case = _table(ClarificationCase)
        return (
            f"SELECT TRUE AS found, NULL::text AS status, o.{o_status}::text AS order_status,"
            f" o.{o_ref}::text AS order_ref, c.{_column(ClarificationCase, 'closed_at')} IS NULL AS is_open,"
            f" c.{_column(ClarificationCase, 'opened_by')} <> %(user)s AS is_approved,"
            f" FALSE AS on_ticket, NULL::text AS probed_ref"
            f" FROM {case} c JOIN {order} o ON o.id = c.{_column(ClarificationCase, 'order')}"
            f" WHERE c.id = %(context_int)s AND {of_photo}"
        )
    if kind == "ticket":
        ticket = _table(MaintenanceTicket)
        through = MaintenanceTicket.jobs.through
        t_ticket = connection.ops.quote_name(through._meta.get_field("maintenanceticket").column)
        t_job = connection.ops.quote_name(through._meta.get_field("printjob").column)
        return (
            f"SELECT TRUE AS found, NULL::text AS status, tj.order_status, tj.order_ref,"
            f" t.{_column(MaintenanceTicket, 'closed_at')} IS NULL AS is_open,"
            f" t.{_column(MaintenanceTicket, 'approved_at')} IS NOT NULL AS is_approved,"
            f" tj.order_ref IS NOT NULL AS on_ticket,"
            f" CASE WHEN tj.order_ref IS NULL THEN (SELECT o.{o_ref}::text FROM {order} o WHERE {of_photo}"
            f" ORDER BY o.id DESC LIMIT 1) END AS probed_ref"
            f" FROM {ticket} t LEFT JOIN LATERAL (SELECT o.{o_status}::text AS order_status,"
            f" o.{o_ref}::text AS order_ref FROM {_table(through)} x JOIN {job} j ON j.id = x.{t_job}"
            f" JOIN {item} i ON i.id = j.{j_item} JOIN {order} o ON o.id = j.{j_order}"
            f" WHERE x.{t_ticket} = t.id AND i.{i_asset} = a.id ORDER BY j.id DESC LIMIT 1) tj ON TRUE"
            f" WHERE t.id = %(context_int)s"
        )
    return f"SELECT {', '.join(f'NULL AS {name}' for name in _CONTEXT_COLUMNS.split(', '))} WHERE FALSE"


_CONTEXT_KINDS: dict[str, str] = {
    Purpose.PRINTING: "job",
    Purpose.HANDLING: "job",
    Purpose.PACKAGING: "order",
    Purpose.ORDER_CLARIFICATION: "case",
    Purpose.MAINTENANCE: "ticket",
}


def _context_kind(purpose: str) -> str:
    return _CONTEXT_KINDS.get(purpose, "none")


@cache
def _facts_sql(kind: str, *, with_roles: bool) -> str:
    grant = _table(AccessGrant)
    g = {name: _column(AccessGrant, name) for name in ("actor", "asset", "revoked_at", "expires_at")}
    scope = (
        f"{{alias}}.{g['actor']} = %(user)s AND {{alias}}.{g['asset']} = a.id"
        f" AND {{alias}}.{_column(AccessGrant, 'purpose')} = %(purpose)s"
        f" AND {{alias}}.{_column(AccessGrant, 'context_type')} = %(context_type)s"
        f" AND {{alias}}.{_column(AccessGrant, 'context_id')} = %(context_id)s"
        f" AND {{alias}}.{g['revoked_at']} IS NULL"
    )
    through = User.groups.through
    roles = (
        f"ARRAY(SELECT gr.name FROM auth_group gr JOIN {_table(through)} ug"
        f" ON ug.{connection.ops.quote_name(through._meta.get_field('group').column)} = gr.id"
        f" WHERE ug.{connection.ops.quote_name(through._meta.get_field('user').column)} = %(user)s)"
        if with_roles
        else "NULL::text[]"
    )
    return (
        f"SELECT {roles}, {_select_all(Asset, 'a')}, {_select_all(DataKey, 'k')},"
        f" {', '.join(f'ctx.{name}' for name in _CONTEXT_COLUMNS.split(', '))},"
        f" {_select_all(AccessGrant, 'g')},"
        f" EXISTS (SELECT 1 FROM {grant} og WHERE {scope.format(alias='og')}),"
        f" pg_catalog.statement_timestamp()"
        f" FROM (SELECT 1) AS one"
        f" LEFT JOIN {_table(Asset)} a ON a.id = %(asset)s"
        f" LEFT JOIN {_table(DataKey)} k ON k.id = a.{_column(Asset, 'data_key')}"
        f" LEFT JOIN LATERAL ({_context_sql(kind)}) ctx ON TRUE"
        f" LEFT JOIN LATERAL (SELECT lg.* FROM {grant} lg WHERE {scope.format(alias='lg')}"
        f" AND lg.{g['expires_at']} > pg_catalog.statement_timestamp()"
        f" AND (NOT %(full)s OR lg.{_column(AccessGrant, 'is_full_resolution')})"
        f" ORDER BY lg.{_column(AccessGrant, 'created_at')} DESC LIMIT 1) g ON TRUE"
    )


def _facts_postgresql(*, user: User, request: AccessRequest, asset_id: uuid.UUID | None) -> Facts:
    cached_roles = getattr(user, "_lab_roles", None)
    sql = _facts_sql(_context_kind(request.purpose), with_roles=cached_roles is None)
    parameters = {
        "user": user.pk,
        "asset": asset_id,
        "purpose": request.purpose,
        "context_type": request.context_type,
        "context_id": request.context_id,
        "context_int": context_int(request.context_id),
        "full": request.is_full_resolution,
    }
    # Prepared once per connection: parsing and planning this statement costs more than running it.
    with prepared_cursor(connection) as cursor:
        cursor.execute(sql, parameters)
        row: Sequence[Any] = cursor.fetchone()
    if cached_roles is None and user.is_authenticated:
        user._lab_roles = set(row[0])  # type: ignore[attr-defined]
    at = 1
    asset_values = row[at : at + len(_attnames(Asset))]
    at += len(asset_values)
    key_values = row[at : at + len(_attnames(DataKey))]
    at += len(key_values)
    found, status, order_status, order_ref, is_open, is_approved, on_ticket, probed_ref = row[at : at + 8]
    at += 8
    grant_values = row[at : at + len(_attnames(AccessGrant))]
    has_open_grants, now = bool(row[-2]), row[-1]
    asset = None
    if asset_values[0] is not None:
        asset = Asset.from_db(connection.alias, _attnames(Asset), asset_values)
        key = (
            DataKey.from_db(connection.alias, _attnames(DataKey), key_values)
            if key_values[0] is not None
            else None
        )
        Asset.data_key.field.set_cached_value(asset, key)
    context = Context(
        found=bool(found),
        status=status,
        order_status=order_status,
        order_ref=order_ref,
        is_open=bool(is_open),
        is_approved=bool(is_approved),
        on_ticket=bool(on_ticket),
        probed_ref=probed_ref,
    )
    grant = None
    if grant_values[0] is not None:
        grant = AccessGrant.from_db(connection.alias, _attnames(AccessGrant), grant_values)
    return Facts(asset=asset, context=context, grant=grant, has_open_grants=has_open_grants, now=now)


def grant_of(*, user: User, grant_id: str) -> AccessGrant | None:
    """The grant a view names, if it is this person's (one prepared statement on PostgreSQL)."""
    ident = _uuid(grant_id)
    if ident is None:
        return None
    if connection.vendor != "postgresql":
        return AccessGrant.objects.filter(pk=ident, actor=user).first()
    with prepared_cursor(connection) as cursor:
        cursor.execute(_grant_sql(), {"grant": ident, "user": user.pk})
        row = cursor.fetchone()
    return None if row is None else AccessGrant.from_db(connection.alias, _attnames(AccessGrant), row)


@cache
def _grant_sql() -> str:
    return (
        f"SELECT {_select_all(AccessGrant, 'g')} FROM {_table(AccessGrant)} g"
        f" WHERE g.id = %(grant)s AND g.{_column(AccessGrant, 'actor')} = %(user)s"
    )


# --- Any database: the ORM, one query per fact ------------------------------------------------------------


def facts_portable(*, user: User, request: AccessRequest, asset_id: uuid.UUID | None) -> Facts:
    now = database_now()
    user_roles(user)
    asset = (
        Asset.objects.select_related("data_key").filter(pk=asset_id).first() if asset_id is not None else None
    )
    if asset is None:
        return Facts(asset=None, context=Context(), grant=None, has_open_grants=False, now=now)
    scope = AccessGrant.objects.filter(
        actor=user,
        asset_id=asset.pk,
        purpose=request.purpose,
        context_type=request.context_type,
        context_id=request.context_id,
        revoked_at__isnull=True,
    )
    live = scope.filter(expires_at__gt=now)
    if request.is_full_resolution:
        live = live.filter(is_full_resolution=True)
    return Facts(
        asset=asset,
        context=_context_portable(request=request, asset=asset, user=user),
        grant=live.order_by("-created_at").first(),
        has_open_grants=scope.exists(),
        now=now,
    )


def _context_portable(*, request: AccessRequest, asset: Asset, user: User) -> Context:
    kind, ident = _context_kind(request.purpose), request.context_id
    if kind == "job":
        jobs = PrintJob.objects.filter(pk=context_int(ident), item__asset=asset)
        job = jobs.select_related("order").first()
        if job is None:
            return Context()
        return Context(found=True, status=job.status, order_status=job.order.status, order_ref=job.order.ref)
    if kind == "order":
        order = Order.objects.filter(ref=ident, items__asset=asset).first()
        if order is None:
            return Context()
        return Context(found=True, order_status=order.status, order_ref=order.ref)
    if kind == "case":
        case = (
            ClarificationCase.objects.filter(pk=context_int(ident), order__items__asset=asset)
            .select_related("order")
            .first()
        )
        if case is None:
            return Context()
        return Context(
            found=True,
            order_status=case.order.status,
            order_ref=case.order.ref,
            is_open=case.is_open,
            is_approved=case.opened_by_id != user.pk,
        )
    if kind == "ticket":
        ticket = MaintenanceTicket.objects.filter(pk=context_int(ident)).first()
        if ticket is None:
            return Context()
        ticket_job = ticket.jobs.filter(item__asset=asset).select_related("order").order_by("-pk").first()
        if ticket_job is None:
            latest = Order.objects.filter(items__asset=asset).order_by("-pk").only("ref").first()
            return Context(
                found=True,
                is_open=ticket.is_open,
                is_approved=ticket.is_approved,
                probed_ref=latest.ref if latest else None,
            )
        return Context(
            found=True,
            order_status=ticket_job.order.status,
            order_ref=ticket_job.order.ref,
            is_open=ticket.is_open,
            is_approved=ticket.is_approved,
            on_ticket=True,
        )
    return Context()
