"""The reconciler: the database, not the broker, is the truth; every hand-off is a state swept here."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.conf import settings

from lab.lib.clock import database_now
from lab.lib.tasks import enqueue, queue_depth
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.production.jobs import rasterize_enqueue
from lab.production.models import PrintJob
from lab.production.routing import jobs_route_waiting, order_release
from lab.production.states import JobStatus
from lab.production.submission import reconcile_submitting
from lab.production.tracking import order_check_printed

logger = logging.getLogger(__name__)
J = JobStatus
# Orders one sweep releases itself: a bound on a sweep's length, not on what gets released.
RELEASES_PER_SWEEP = 50


def production_reconcile() -> dict[str, int]:
    """Recover from lost messages and dead workers; the database, not the broker, is the truth.

    Every hand-off of the flow is a state in the database, and each one is swept here, so work whose message
    was lost (broker restarted, worker killed before it acknowledged) moves on within one interval:
    - an order `paid` with no jobs is released (directly, no broker needed; RELEASES_PER_SWEEP at most);
    - `queued` jobs are sent to the raster queue again when the queue holds fewer messages than them (as
      many as it lacks, newest first);
    - a `rasterizing` or `submitting` claim whose worker died is taken over or settled once its lease ends;
    - `ready` jobs are kicked by every printer poll; an order whose jobs all printed moves to packing, and a
      `ready_to_pack` order without its slip gets one.
    """
    now = database_now()  # claims' leases are judged on the clock every host shares (lab/lib/clock.py)
    lease = timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS)
    grace = timedelta(seconds=settings.PRODUCTION_HANDOFF_GRACE_SECONDS)
    counts: Counter[str] = Counter()
    # At most RELEASES_PER_SWEEP, oldest first: a sweep stays short when the `default` queue has fallen
    # behind (its release messages are still coming), and the next sweep takes the next ones.
    for order_id in (
        Order.objects.filter(status=OrderStatus.PAID, updated_at__lt=now - grace, print_jobs__isnull=True)
        .order_by("updated_at", "pk")
        .values_list("pk", flat=True)[:RELEASES_PER_SWEEP]
    ):
        counts["orders_released"] += int(order_release(order_id=order_id) > 0)
    # Newest first: after a partial loss (a broker restarted with its last writes lost) the lost messages are
    # the newest; the oldest waiting jobs are the ones whose messages a raster worker has already taken off
    # the queue and not started yet. So only as many as the broker lacks are sent again, and a backlog with
    # messages in workers' hands costs a few duplicates (the claim makes them harmless), not the whole
    # backlog again at every sweep.
    queued = list(
        PrintJob.objects.filter(status=J.QUEUED, updated_at__lt=now - grace)
        .order_by("-updated_at", "-pk")
        .values_list("pk", flat=True)
    )
    if queued:
        depth = queue_depth("raster")
        resend = queued if depth is None else queued[: max(len(queued) - depth, 0)]
        for job_id in resend:
            rasterize_enqueue(job_id)
        if resend:
            counts["rasterize_requeued"] += len(resend)
    for job in PrintJob.objects.filter(status=J.RASTERIZING, claimed_at__lt=now - lease):
        rasterize_enqueue(job.pk)  # the claim takes over an expired lease
        counts["rasterize_taken_over"] += 1
    for job in PrintJob.objects.filter(status=J.SUBMITTING, claimed_at__lt=now - lease).select_related(
        "printer"
    ):
        counts[reconcile_submitting(job)] += 1
    jobs_route_waiting()
    for order_id in (
        Order.objects.filter(status=OrderStatus.IN_PRODUCTION, updated_at__lt=now - grace)
        .exclude(print_jobs__status__in=[s for s in J.values if s not in (J.PRINTED, J.CANCELLED)])
        .values_list("pk", flat=True)
    ):
        counts["orders_ready_to_pack"] += int(order_check_printed(order_id=order_id))
    for order_id in Order.objects.filter(
        status=OrderStatus.READY_TO_PACK, updated_at__lt=now - grace, packing_slip__isnull=True
    ).values_list("pk", flat=True):
        enqueue("packing.slip_render", order_id=order_id)
        counts["slips_requested"] += 1
    return dict(counts)
