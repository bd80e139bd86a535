"""The reconciler: the database, not the broker, is the truth; every hand-off is a state swept here."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from lab.lib.clock import database_now
from lab.lib.tasks import enqueue, queue_depth
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.production.jobs import job_fail, rasterize_enqueue
from lab.production.models import JobEvent, PrintJob
from lab.production.routing import jobs_route_waiting, order_release
from lab.production.silence import SilentServers
from lab.production.states import JobStatus
from lab.production.submit_reconcile import reconcile_submitting
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
    Every step that asks no printer runs first; the expired submit claims, which ask theirs, run last, each
    silent server asked once (`SilentServers`).
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
        if _raster_takeovers(job.pk) >= settings.PRODUCTION_MAX_RASTER_TAKEOVERS:
            counts[_raster_given_up(job, expired_before=now - lease)] += 1
            continue
        rasterize_enqueue(job.pk)  # the claim takes over an expired lease
        counts["rasterize_taken_over"] += 1
    # The steps that ask no printer come before those that do: a stalled cupsd holds a call for libcups'
    # minute, and a sweep killed at its time limit there lost the routing and packing steps that came after.
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
    # One round of printer calls: a server that gave no answer for one expired claim is not asked again.
    silent = SilentServers()
    for job in PrintJob.objects.filter(status=J.SUBMITTING, claimed_at__lt=now - lease).select_related(
        "printer"
    ):
        counts[reconcile_submitting(job, silent=silent)] += 1
    return dict(counts)


def _raster_takeovers(job_id: int) -> int:
    """How many times this raster's worker was lost since the job last entered the queue."""
    entries = JobEvent.objects.filter(job_id=job_id, to_status=J.QUEUED).order_by("-pk")
    since = entries.values_list("pk", flat=True).first() or 0
    return JobEvent.objects.filter(job_id=job_id, kind="lease_taken_over", pk__gt=since).count()


def _raster_given_up(job: PrintJob, *, expired_before: datetime) -> str:
    """Every worker that took this raster on was lost (a photo that crashes libvips, or runs a worker out of
    memory, kills each one): a technician looks, instead of a loop of takeovers that never ends and that
    nobody sees (the job only ever looked `rasterizing`). Nothing of it was printed."""
    failed = job_fail(
        job_id=job.pk,
        from_statuses={J.RASTERIZING},
        kind="raster_failed",
        code="raster_worker_lost",
        message=(
            f"The worker making this raster was lost {settings.PRODUCTION_MAX_RASTER_TAKEOVERS + 1} times; "
            "nothing was printed."
        ),
        is_permanent=False,
        where=Q(claimed_at__lt=expired_before),
        claimed_at=None,
        claimed_by="",
    )
    return "raster_given_up" if failed else "raster_claim_moved"
