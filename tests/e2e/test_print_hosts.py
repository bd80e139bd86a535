"""Two print hosts, as deploy/README.md lays them out: each host runs its own `cupsd` and one print worker
(`PRINT_HOST=<name> celery -A workers worker -Q print.<name>`); raster, default and the one beat run on the
first. Real components: PostgreSQL, Redis, two Celery worker processes, two private cupsd with ippeveprinter.

Each host's jobs must reach only its own printer, sent by its own worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from lab.orders.models import Order
from lab.production.models import JOB_TITLE_PREFIX, Printer, PrintJob
from printers.registry import KIND_CUPS
from tests.builders import PHOTO_300_DPI, paid_order
from tests.e2e.conftest import PAPERS, PROJECT_DIR
from tests.support.celery_worker import CeleryWorker, database_url, wait_until
from tests.support.cups import PrivateCups

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

QUEUE = "minilab"  # the same CUPS queue name on both hosts: only cups_server tells them apart
HOSTS = {
    "alpha": (["na_index-4x6_4x6in", "na_5x7_5x7in"], ["4x6", "5x7"]),
    "beta": (["na_govt-letter_8x10in"], ["8x10"]),
}
SETTLE_SECONDS = 120.0


@dataclass
class PrintHost:
    name: str
    cups: PrivateCups
    printer: Printer
    worker: CeleryWorker

    def received_titles(self) -> list[str]:
        """`lab-job-<pk>-<token>` per document its device kept (ippeveprinter: `<n>-<title>.<ext>`), once
        this host's CUPS holds no lab job pending, held or processing (a second copy still queued when the
        orders settled would reach the device after the count)."""
        unfinished = self.cups.wait_jobs_over(lambda title: title.startswith(JOB_TITLE_PREFIX))
        assert unfinished == [], f"{self.name}'s CUPS still holds lab jobs after 30 s: {unfinished}"
        return sorted(path.stem.partition("-")[2] for path in self.cups.received_files(QUEUE))

    def submitted_job_ids(self) -> list[int]:
        """Jobs this host's worker process moved to `submitted` (its log, ids only)."""
        found = re.findall(r"job status job=(\d+) from=submitting to=submitted", self.worker.log_text())
        return sorted(int(pk) for pk in found)


@pytest.fixture(scope="module")
def host_cups() -> Iterator[dict[str, PrivateCups]]:
    servers: dict[str, PrivateCups] = {}
    try:
        for name, (media, _) in HOSTS.items():
            servers[name] = PrivateCups().__enter__()
            servers[name].add_printer(QUEUE, media=media, media_ready=media)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def print_hosts(
    tmp_path: Path, host_cups: dict[str, PrivateCups], transactional_db: None
) -> Iterator[dict[str, PrintHost]]:
    broker_url = str(settings.CELERY_BROKER_URL)
    assert broker_url.startswith("redis://"), f"the e2e tests need Redis as the broker, not {broker_url}"
    hosts: dict[str, PrintHost] = {}
    for index, (name, (_, sizes)) in enumerate(HOSTS.items()):
        cups = host_cups[name]
        printer = Printer.objects.create(
            name=f"{name}-{QUEUE}",
            backend=KIND_CUPS,
            target=QUEUE,
            cups_server=cups.server,
            host=name,
            media_sizes=sizes,
            papers=PAPERS,
            dpi=300,
        )
        is_first = index == 0
        worker = CeleryWorker(
            work_dir=tmp_path / f"worker-{name}",
            project_dir=PROJECT_DIR,
            # The first host also runs raster, default, audit and the deployment's one beat; the other prints
            # only.
            queues=("default", "raster", "webhooks", "fetch", "audit", f"print.{name}")
            if is_first
            else (f"print.{name}",),
            beat=is_first,
            env={
                "PRINT_HOST": name,
                "CUPS_SERVER": cups.server,
                "DATABASE_URL": database_url(connection.settings_dict),
                "CELERY_BROKER_URL": broker_url,
                "LAB_VAR_DIR": str(settings.VAR_DIR),
                "LAB_STORAGE_DIR": str(settings.MEDIA_ROOT),
                "HOTFOLDER_ROOT": str(settings.HOTFOLDER_ROOT),
                "PYTHONUNBUFFERED": "1",
            },
        )
        hosts[name] = PrintHost(name=name, cups=cups, printer=printer, worker=worker)
    try:
        for host in hosts.values():
            host.worker.start(purge=True)
        yield hosts
    finally:
        # Stopped before pytest-django truncates the tables the workers use.
        for host in hosts.values():
            host.worker.stop()


def settled(orders: list[Order]) -> bool:
    return all(Order.objects.get(pk=order.pk).status == "ready_to_pack" for order in orders)


def test_each_print_hosts_jobs_reach_only_its_own_printer_sent_by_its_own_worker(print_hosts):
    alpha, beta = print_hosts["alpha"], print_hosts["beta"]
    # given orders whose prints need both hosts' printers
    orders = [
        paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-8X10-MATTE", 1)], photo=PHOTO_300_DPI),
        paid_order(lines=[("PRINT-5X7-GLOSSY", 2), ("PRINT-8X10-LUSTRE", 1)], photo=PHOTO_300_DPI),
    ]

    # when the two hosts' workers run production on their own
    wait_until(
        lambda: settled(orders),
        timeout=SETTLE_SECONDS,
        interval=0.25,
        what=lambda: (
            f"orders ready_to_pack; jobs {list(PrintJob.objects.values_list('pk', 'status', 'printer'))}"
            f"\nalpha log:\n{alpha.worker.log_tail()}\nbeta log:\n{beta.worker.log_tail()}"
        ),
    )

    # then each printer got exactly the jobs assigned to it, and nothing else ...
    jobs = {
        host.name: sorted(PrintJob.objects.filter(printer=host.printer).values_list("pk", flat=True))
        for host in (alpha, beta)
    }
    assert (len(jobs["alpha"]), len(jobs["beta"])) == (2, 2)
    assert set(PrintJob.objects.values_list("status", flat=True)) == {"printed"}
    assert alpha.received_titles() == sorted(PrintJob.objects.get(pk=pk).title for pk in jobs["alpha"])
    assert beta.received_titles() == sorted(PrintJob.objects.get(pk=pk).title for pk in jobs["beta"])
    # ... sent by the worker of its own host, which consumed only its own print queue
    assert alpha.submitted_job_ids() == jobs["alpha"]
    assert beta.submitted_job_ids() == jobs["beta"]
    beta_log = beta.worker.log_text()
    assert ".> print.beta" in beta_log
    assert not re.search(r"\.> (default|raster|print\.alpha|print) ", beta_log)
    assert "Task production.print_job_rasterize[" not in beta_log  # received lines, not the task list
    assert "Task production.printer_poll[" not in beta_log
    assert "Task production.print_job_submit[" in beta_log
    assert "beat: Starting" in alpha.worker.log_text()
    assert "beat: Starting" not in beta_log
