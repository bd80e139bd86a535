"""The gate's decision rules: who may ask for which purpose, and whether the purpose fits the current state
of the context a request names (the same rules decide what a page may offer)."""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass

from lab.accounts.models import User
from lab.accounts.roles import Role, user_roles
from lab.audit.models import AuditRecord, Purpose
from lab.gate.errors import GateError
from lab.gate.facts import Context, Facts, context_int
from lab.gate.variants import VARIANT_ACTIONS
from lab.orders.models import Asset
from lab.orders.states import OrderStatus
from lab.production.maintenance import MAINTENANCE_ORDER_STATUSES
from lab.production.models import MaintenanceTicket
from lab.production.states import ACTIVE_JOB_STATUSES, JobStatus

# The gate's one logger, named as before its modules were split: log routing and alerts key on the name.
logger = logging.getLogger("lab.gate.access")

# Who may ask for which purpose. Auditors and admins are absent on purpose: they never see photos.
PURPOSES_BY_ROLE: dict[str, frozenset[str]] = {
    Role.TECHNICIAN: frozenset(
        {Purpose.PRINTING, Purpose.HANDLING, Purpose.MAINTENANCE, Purpose.ORDER_CLARIFICATION}
    ),
    Role.PACKER: frozenset({Purpose.PACKAGING, Purpose.HANDLING}),
    Role.SUPERVISOR: frozenset(
        {
            Purpose.PRINTING,
            Purpose.HANDLING,
            Purpose.PACKAGING,
            Purpose.MAINTENANCE,
            Purpose.ORDER_CLARIFICATION,
        }
    ),
}
FULL_RESOLUTION_PURPOSES = frozenset({Purpose.PRINTING, Purpose.MAINTENANCE, Purpose.ORDER_CLARIFICATION})
MIN_JUSTIFICATION = 10
SHIPPED_STATUSES = frozenset({OrderStatus.PACKED, OrderStatus.SHIPPED, OrderStatus.DELIVERED})
# The job statuses a hold stops (nothing submits a held order's job: lab/production/submission.py). A job
# already at the printer when the order was held finishes there, and may fail, end unknown or suspect: a
# person still counts its prints under `handling`, as for any other order.
HOLD_STOPPED_JOB_STATUSES = frozenset(
    {JobStatus.NO_PRINTER, JobStatus.QUEUED, JobStatus.RASTERIZING, JobStatus.READY}
)
# Jobs that left the printer with their prints still to count or decide: a failed job (rerouted or cancelled
# next), an unknown one and a suspect one (a print sent twice, a cancel at the console mid-print), which a
# person counts before confirming it printed or asking for a reprint (lab/production/resolutions.py,
# reprints.py).
PRINTS_TO_COUNT_JOB_STATUSES = frozenset({JobStatus.FAILED, JobStatus.UNKNOWN, JobStatus.SUSPECT})


@dataclass(frozen=True)
class AccessRequest:
    asset_id: str
    purpose: str
    justification: str
    context_type: str  # print_job | order | maintenance_ticket | clarification_case
    context_id: str
    variant: str = "preview"  # preview | full | download

    def __post_init__(self) -> None:
        # PostgreSQL's text holds no NUL: a NUL in any of these failed the facts query or the record's insert
        # (a 500, or a 503 "audit unavailable") and left the attempt unrecorded, the status telling a prober
        # what the gate would have decided. Made U+FFFD, it is an ordinary request, refused and recorded.
        for name in ("asset_id", "purpose", "justification", "context_type", "context_id", "variant"):
            value = getattr(self, name)
            if "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", "\ufffd"))

    @property
    def is_full_resolution(self) -> bool:
        return self.variant != "preview"


@dataclass(frozen=True)
class Decision:
    granted: bool
    rule: str
    order_ref: str | None = None
    refusal: GateError = GateError.IMAGE_ACCESS_DENIED  # the code a refusal is raised with (see REFUSALS)


def request_decide(*, user: User, role: str, request: AccessRequest, facts: Facts) -> Decision:
    """Variant, role, then whether the purpose fits the current state of the named context."""
    if request.variant not in VARIANT_ACTIONS:
        return Decision(False, "unknown_variant", refusal=GateError.IMAGE_NOT_FOUND)
    roles = user_roles(user)
    allowed = set().union(*(PURPOSES_BY_ROLE.get(r, frozenset()) for r in roles))
    if role in (Role.AUDITOR, Role.ADMIN) and not (roles & set(PURPOSES_BY_ROLE)):
        return Decision(False, "role_never_views_photos")
    if request.purpose not in allowed:
        return Decision(False, "purpose_not_allowed_for_role")
    asset = facts.asset
    if asset is None or asset.status != Asset.Status.READY:
        return Decision(False, "asset_unavailable")
    if request.is_full_resolution and request.purpose not in FULL_RESOLUTION_PURPOSES:
        return Decision(False, "full_resolution_not_needed_for_purpose")
    if request.is_full_resolution and _visible_length(request.justification) < MIN_JUSTIFICATION:
        return Decision(False, "justification_required_for_full_resolution")
    return _context_fits(request=request, context=facts.context)


# Characters an auditor does not see: whitespace, format (Cf: zero-width space, joiners, BOM), control (Cc)
# and space separators (Zs: no-break and ideographic spaces). Ten zero-width spaces were ten characters.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs"})


def _visible_length(text: str) -> int:
    """The characters of a justification that count towards MIN_JUSTIFICATION: those a reader sees."""
    return sum(
        1 for char in text if not char.isspace() and unicodedata.category(char) not in _INVISIBLE_CATEGORIES
    )


def _context_fits(*, request: AccessRequest, context: Context) -> Decision:
    decision = _context_state_fits(request=request, context=context)
    if decision.granted and request.purpose == Purpose.MAINTENANCE:
        return _maintenance_ticket_on_record(request=request, decision=decision)
    return decision


def offer_fits(*, purpose: str, context_type: str, context_id: str, context: Context, variant: str) -> bool:
    """Whether the gate's own rules on a context's state grant this purpose at this variant: what a page may
    offer. An offer the gate refuses got an honest person a flagged denial and ended their live grant on the
    photo. The person's role, the photo and the justification are decided on the request itself, and so is
    a maintenance ticket's record (a query per ticket, left to the request)."""
    request = AccessRequest(
        asset_id="",
        purpose=purpose,
        justification="",
        context_type=context_type,
        context_id=context_id,
        variant=variant,
    )
    return _context_state_fits(request=request, context=context).granted


def _context_state_fits(*, request: AccessRequest, context: Context) -> Decision:
    purpose, kind = request.purpose, request.context_type
    if purpose in (Purpose.PRINTING, Purpose.HANDLING):
        if kind != "print_job" or not context.found:
            return Decision(False, "context_not_found")
        if context.order_status == OrderStatus.ON_HOLD and context.status in HOLD_STOPPED_JOB_STATUSES:
            # A held order's waiting jobs stay where they are (nothing submits them): the work on it is the
            # clarification, whose full resolution is for someone other than the person who held it. Under
            # printing, whoever held the order downloaded its originals alone, unflagged. A job that was at
            # the printer (failed, unknown, suspect) is still handled: its prints are counted.
            return Decision(False, "order_on_hold", context.order_ref)
        if context.status not in ACTIVE_JOB_STATUSES | PRINTS_TO_COUNT_JOB_STATUSES:
            # A suspect job was left out: the technician who must count its prints was offered nothing, and
            # asking directly was a flagged refusal that ended their grants on the photo.
            return Decision(False, "print_job_not_active", context.order_ref)
        return Decision(True, "active_print_job", context.order_ref)
    if purpose == Purpose.PACKAGING:
        if kind != "order" or not context.found:
            return Decision(False, "context_not_found")
        if context.order_status not in (OrderStatus.READY_TO_PACK, OrderStatus.PACKED):
            return Decision(False, "order_not_being_packed", context.order_ref)
        return Decision(True, "order_being_packed", context.order_ref)
    if purpose == Purpose.MAINTENANCE:
        return _maintenance_state_fits(request=request, context=context)
    if purpose == Purpose.ORDER_CLARIFICATION:
        if kind != "clarification_case" or not context.found:
            return Decision(False, "context_not_found")
        if not context.is_open or context.order_status != OrderStatus.ON_HOLD:
            return Decision(False, "clarification_not_open", context.order_ref)
        if request.is_full_resolution and not context.is_approved:
            # Whoever puts an order on hold opens its case: alone, any floor person could put any order on
            # hold, download its originals and release it (a maintenance ticket needs a second person for
            # full resolution too). The opener sees the preview; full resolution is for another person.
            return Decision(False, "clarification_full_resolution_not_by_its_opener", context.order_ref)
        return Decision(True, "open_clarification_case", context.order_ref)
    return Decision(False, "unknown_purpose")


def _maintenance_state_fits(*, request: AccessRequest, context: Context) -> Decision:
    """Only the jobs the ticket names, only while their order is still in production, full resolution only
    on a ticket a second person (a supervisor) approved; then the ticket's record (below)."""
    if request.context_type != "maintenance_ticket" or not context.found:
        return Decision(False, "context_not_found")
    if not context.on_ticket:
        # Name the order the photo belongs to, so auditors see which one was probed (and whether it shipped).
        return Decision(False, "photo_not_on_ticket", context.probed_ref)
    if not context.is_open:
        return Decision(False, "maintenance_ticket_closed", context.order_ref)
    if context.order_status in SHIPPED_STATUSES:
        return Decision(False, "order_packed_or_shipped", context.order_ref)
    if context.order_status not in MAINTENANCE_ORDER_STATUSES:
        return Decision(False, "order_not_in_production", context.order_ref)
    if request.is_full_resolution and not context.is_approved:
        return Decision(False, "maintenance_full_resolution_needs_approval", context.order_ref)
    return Decision(True, "open_maintenance_ticket", context.order_ref)


def _maintenance_ticket_on_record(*, request: AccessRequest, decision: Decision) -> Decision:
    """A ticket whose state fits, as its own actions left it (else refused, naming the decision's order)."""
    # Read only for a view the ticket would allow: a job added, an approval or a reopening written in the
    # database alone, not by the ticket's actions, shows nothing (lab/production/models.py).
    # A ticket the audit log says was closed stays closed: an open state (and its seal) copied before the
    # close and put back afterwards would carry a valid seal.
    ticket = MaintenanceTicket.objects.filter(pk=context_int(request.context_id)).first()
    if ticket is None or not ticket.is_sealed or _closed_on_the_record(ticket):
        logger.error("maintenance ticket changed outside the lab refused ticket=%s", request.context_id)
        return Decision(False, "maintenance_ticket_changed_outside_the_lab", decision.order_ref)
    return decision


def _closed_on_the_record(ticket: MaintenanceTicket) -> bool:
    return AuditRecord.objects.filter(
        action="maintenance.ticket.close", context_type="maintenance_ticket", context_id=str(ticket.pk)
    ).exists()
