"""The retention rules: which photos, rasters and unpaid orders are due at a time, by the policy's days, and
which orders still keep their photos (the one rule a purge decides by under its locks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Model, Q, QuerySet

from lab.orders.models import Asset, Order
from lab.orders.payments import UNPAID_PAYMENT_STATUSES
from lab.orders.states import OrderStatus
from lab.production.models import PrintJob
from lab.production.states import JobStatus

RULE_SHIPPED = "shipped_order"
RULE_UNPAID = "unpaid_order"
RULE_CANCELLED = "cancelled_order"
RULE_NEVER_ORDERED = "never_ordered"
RULE_ERASURE = "erasure"
RULE_UNDER_AGE = "under_age"  # COPPA: the photos of a guest refused as under 13, purged with the refusal
RULE_PRINTED_RASTER = "printed_raster"

S = OrderStatus
# An order in one of these still needs its photos; neither retention nor erasure touches them.
PHOTO_NEEDED_STATUSES = frozenset({S.PAID, S.IN_PRODUCTION, S.ON_HOLD, S.READY_TO_PACK, S.PACKED})
# An unpaid order may still be paid (and then printed): retention first cancels it when it is stale.
HOLDING_STATUSES = PHOTO_NEEDED_STATUSES | {S.AWAITING_PAYMENT}
SHIPPED_STATUSES = frozenset({S.SHIPPED, S.DELIVERED})
# A photo not yet purged (what a purge may still take).
LIVE_ASSET_STATUSES = frozenset(set(Asset.Status) - {Asset.Status.PURGED})


# Defaults of the RETENTION_* settings (lab/settings.py); read with getattr so a partial settings
# module (a management shell, an older deployment) still applies the documented schedule.
DEFAULT_DAYS = {
    "RETENTION_SHIPPED_DAYS": 30,
    "RETENTION_RASTER_DAYS": 7,
    "RETENTION_UNPAID_DAYS": 7,
    "RETENTION_UNUSED_DAYS": 7,
}
DEFAULT_BATCH = 500


@dataclass(frozen=True)
class RetentionPolicy:
    shipped_days: int
    raster_days: int
    unpaid_days: int
    unused_days: int
    batch: int

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        def days(name: str) -> int:
            return int(getattr(settings, name, DEFAULT_DAYS[name]))

        return cls(
            shipped_days=days("RETENTION_SHIPPED_DAYS"),
            raster_days=days("RETENTION_RASTER_DAYS"),
            unpaid_days=days("RETENTION_UNPAID_DAYS"),
            unused_days=days("RETENTION_UNUSED_DAYS"),
            batch=int(getattr(settings, "RETENTION_BATCH", DEFAULT_BATCH)),
        )


@dataclass(frozen=True)
class Cutoffs:
    """An order releases its photos once shipped before `shipped_before`, or cancelled and created before
    `unpaid_before`."""

    shipped_before: datetime
    unpaid_before: datetime

    @classmethod
    def at(cls, *, policy: RetentionPolicy, now: datetime) -> Cutoffs:
        return cls(
            shipped_before=now - timedelta(days=policy.shipped_days),
            unpaid_before=now - timedelta(days=policy.unpaid_days),
        )


def orders_keeping(cutoffs: Cutoffs | None) -> QuerySet[Order]:
    """The orders that keep their photos: open ones, and under `cutoffs` (None: an erasure, where only open
    orders count) those shipped or cancelled too recently, and those with a job a printer may still hold. The
    one rule the purge decides by under its locks, and the sweep leaves their photos out of its batches (and
    the gauge out of what it calls late), so photos that cannot go yet never take the places of photos that
    can."""
    if cutoffs is None:
        return Order.objects.filter(status__in=HOLDING_STATUSES)
    return Order.objects.filter(
        Q(status__in=HOLDING_STATUSES)
        | Q(status__in=SHIPPED_STATUSES, shipped_at__gt=cutoffs.shipped_before)
        | Q(status__in=SHIPPED_STATUSES, shipped_at__isnull=True, updated_at__gt=cutoffs.shipped_before)
        | Q(status=S.CANCELLED, created_at__gt=cutoffs.unpaid_before)
        | ~Q(status__in=HOLDING_STATUSES | SHIPPED_STATUSES | {S.CANCELLED})
        # A cancelled job whose decrypted raster may still sit in its printer's spool (cancel_at_printer: the
        # printer was unreachable at the cancel) until the poll settles it. Before, the order's photo key was
        # destroyed and a "purged" receipt sent while that plain copy could still print; the erasure waits
        # for it (erasure_refusals.py: WITHDRAWING_FROM_PRINTER_REASON), and retention now does too.
        | Q(pk__in=PrintJob.objects.filter(cancel_at_printer=True).values("order_id"))
    )


def stale_unpaid_orders(before: datetime) -> QuerySet[Order]:
    return Order.objects.filter(status=S.AWAITING_PAYMENT, created_at__lte=before).exclude(
        payment_status=Order.PaymentStatus.SUCCEEDED  # money arrived: the webhook will move it on
    )


@dataclass(frozen=True)
class Due:
    name: str  # the rule, as the sweep's counts name it
    rows: QuerySet[Model]  # what it covers at the time given, ordered by `order`
    order: tuple[str, ...]


def retention_due(*, policy: RetentionPolicy, now: datetime) -> list[Due]:
    """What each retention rule covers at `now`, in the order the sweep applies them: the sweep's work, and
    (at `now` one sweep's lag back) what the gauge says it should have done already (retention_due_late)."""
    cutoffs = Cutoffs.at(policy=policy, now=now)
    unused_before = now - timedelta(days=policy.unused_days)
    # First, so the photos of the orders it cancels are due under RULE_UNPAID in this sweep.
    expiring = Due(
        "orders_expired",
        stale_unpaid_orders(cutoffs.unpaid_before).order_by("created_at", "pk"),
        ("created_at", "pk"),
    )
    # Candidates skip photos an order still keeps (open, shipped or cancelled too recently): each batch is
    # then photos that can go; asset_purge decides again under lock. Before, a batch of photos due by one
    # order but kept by another was refused at every run and held up every photo after it. Live photos by
    # their status (not "all but purged"): the (status, created_at) index then reads only photos not yet
    # purged, which retention keeps few, not every photo the lab ever had.
    candidates = Asset.objects.filter(status__in=LIVE_ASSET_STATUSES).exclude(
        items__order__in=orders_keeping(cutoffs)
    )
    rules: list[tuple[str, Q]] = [
        (
            RULE_SHIPPED,
            Q(items__order__status__in=SHIPPED_STATUSES)
            & (
                Q(items__order__shipped_at__lte=cutoffs.shipped_before)
                # Shipped before shipped_at was recorded: the last change of the order stands in for it.
                | Q(
                    items__order__shipped_at__isnull=True,
                    items__order__updated_at__lte=cutoffs.shipped_before,
                )
            ),
        ),
        (
            RULE_UNPAID,
            Q(
                items__order__status=S.CANCELLED,
                items__order__payment_status__in=UNPAID_PAYMENT_STATUSES,
                items__order__created_at__lte=cutoffs.unpaid_before,
            ),
        ),
        (
            RULE_CANCELLED,
            Q(items__order__status=S.CANCELLED, items__order__created_at__lte=cutoffs.unpaid_before),
        ),
        (RULE_NEVER_ORDERED, Q(items__isnull=True, created_at__lte=unused_before)),
    ]
    photos = [
        Due(rule, candidates.filter(condition).distinct().order_by("created_at", "pk"), ("created_at", "pk"))
        for rule, condition in rules
    ]
    raster_cutoff = now - timedelta(days=policy.raster_days)
    rasters = Due(
        RULE_PRINTED_RASTER,
        PrintJob.objects.exclude(raster_blob="")
        .filter(
            Q(status=JobStatus.PRINTED, printed_at__lte=raster_cutoff)
            | Q(status=JobStatus.CANCELLED, updated_at__lte=raster_cutoff)
        )
        .order_by("pk"),
        ("pk",),
    )
    return [expiring, *photos, rasters]
