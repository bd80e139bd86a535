"""Gauges read at scrape time: the broker's queue depths and the database's job, printer, webhook and
retention counts.

Each is one cheap query per scrape (GROUP BY on an indexed status column, or a COUNT on an index); a
dependency that is down yields printlab_<dependency>_up 0 instead of a failed scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import DatabaseError
from django.db.models import Count
from django.utils import timezone
from kombu.exceptions import ChannelError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lab.customer_data.retention_lateness import retention_due_late
from lab.notify.models import WebhookDelivery
from lab.notify.states import DeliveryStatus
from lab.production.alerts import PRINTED_AFTER_CANCEL_HOURS, printed_after_cancel_q
from lab.production.models import Printer, PrintJob
from lab.production.states import JobStatus, PrinterState
from lab.production.sweeps import sweeps_status

logger = logging.getLogger(__name__)


def fixed_queues() -> list[str]:
    """The queues the Celery app declares (lab/celery.py: default, raster, print, webhooks, and this host's
    print.<host>), read from the app, not listed again here: a copy of the list missed the webhooks queue."""
    from lab.celery import app

    return [queue.name for queue in app.conf.task_queues]


def broker_queue_depths(queues: Iterable[str]) -> dict[str, int] | None:
    """Messages waiting per queue; None when the broker does not answer within about a second.

    One connection for all queues and a single quick try (lab.lib.tasks.queue_depth retries for seconds,
    right for the reconciler, too slow for a scrape every 15 s).
    """
    from lab.celery import app

    depths: dict[str, int] = {}
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)
            for queue in queues:
                # A channel per queue: AMQP closes a channel on a passive declare of an unknown queue.
                channel: Any = connection.channel()
                try:
                    depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
                except ChannelError:
                    depths[queue] = 0  # never declared (nothing was ever sent to it): nothing waits
                finally:
                    channel.close()
    except Exception as error:
        logger.info("broker unavailable for metrics error=%s", type(error).__name__)
        return None
    return depths


class LabStateCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        print_hosts: list[str] = []
        database_up = GaugeMetricFamily("printlab_database_up", "1 when the scrape's queries succeeded.")
        try:
            yield from self._database_families()
            print_hosts = sorted(
                set(Printer.objects.exclude(host="").values_list("host", flat=True).order_by())
            )
            database_up.add_metric([], 1)
        except DatabaseError as error:
            logger.warning("database unavailable for metrics error=%s", type(error).__name__)
            database_up.add_metric([], 0)
        yield database_up
        queues = dict.fromkeys([*fixed_queues(), *(f"print.{host}" for host in print_hosts)])
        yield from self._broker_families(list(queues))

    def _database_families(self) -> list[GaugeMetricFamily]:
        # Built completely before anything is yielded, so a failing query never leaves half a family.
        jobs = GaugeMetricFamily("printlab_print_jobs", "Print jobs by status.", labels=["status"])
        counts = dict(
            PrintJob.objects.order_by()
            .values_list("status")
            .annotate(count=Count("pk"))
            .values_list("status", "count")
        )
        for status in JobStatus:
            jobs.add_metric([status.value], counts.get(status.value, 0))
        printers = GaugeMetricFamily("printlab_printers", "Printers by state.", labels=["state"])
        printer_state = GaugeMetricFamily(
            "printlab_printer_state", "1 for each printer's current state.", labels=["printer", "state"]
        )
        by_state = dict.fromkeys((state.value for state in PrinterState), 0)
        for name, state in Printer.objects.order_by("name").values_list("name", "state"):
            by_state[state] = by_state.get(state, 0) + 1
            printer_state.add_metric([name, state], 1)
        for state, count in by_state.items():
            printers.add_metric([state], count)
        backlog = GaugeMetricFamily(
            "printlab_webhook_deliveries_due",
            "Customer webhook deliveries pending and due now (their next attempt time has passed).",
        )
        backlog.add_metric(
            [],
            WebhookDelivery.objects.filter(
                status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
            ).count(),
        )
        sweep_age = GaugeMetricFamily(
            "printlab_sweep_seconds_since_success",
            "Seconds since each scheduled sweep last succeeded (printer_events: the listener's last sign of"
            " life), on the database's clock (absent: never).",
            labels=["task"],
        )
        overdue = GaugeMetricFamily(
            "printlab_sweeps_overdue",
            "Scheduled sweeps that have not succeeded for SWEEP_OVERDUE_FACTOR intervals plus the grace.",
        )
        sweeps = sweeps_status()
        for sweep in sweeps:
            if sweep.age is not None:
                sweep_age.add_metric([sweep.task], sweep.age.total_seconds())
        overdue.add_metric([], sum(sweep.overdue for sweep in sweeps))
        behind = GaugeMetricFamily(
            "printlab_sweeps_behind",
            "Scheduled sweeps whose last run succeeded but left work for the next (the retention sweep out of"
            " its time budget).",
        )
        behind.add_metric([], sum(sweep.behind for sweep in sweeps))
        retention_late = GaugeMetricFamily(
            "printlab_retention_due_past_schedule",
            "Items each retention rule should have deleted more than one sweep interval plus its time budget"
            " ago and that are still here (photos, rasters, unpaid orders to expire; each count stops at"
            " 10000).",
            labels=["rule"],
        )
        for rule, count in retention_due_late().items():
            retention_late.add_metric([rule], count)
        printed_after_cancel = GaugeMetricFamily(
            "printlab_cancelled_jobs_printed",
            f"Cancelled jobs a copy of which printed anyway in the last {PRINTED_AFTER_CANCEL_HOURS} h, and "
            "jobs whose late second copy the printer would not cancel (may have printed twice): their prints "
            "lie at the printer (the board's prints of cancelled orders and late copies).",
        )
        printed_after_cancel.add_metric([], PrintJob.objects.filter(printed_after_cancel_q()).count())
        return [
            jobs,
            printers,
            printer_state,
            backlog,
            sweep_age,
            overdue,
            behind,
            retention_late,
            printed_after_cancel,
        ]

    def _broker_families(self, queues: list[str]) -> Iterator[GaugeMetricFamily]:
        depths = broker_queue_depths(queues)
        broker_up = GaugeMetricFamily("printlab_broker_up", "1 when the broker answered the scrape.")
        broker_up.add_metric([], 0 if depths is None else 1)
        yield broker_up
        if depths is not None:
            depth = GaugeMetricFamily(
                "printlab_celery_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"]
            )
            for queue, count in depths.items():
                depth.add_metric([queue], count)
            yield depth
