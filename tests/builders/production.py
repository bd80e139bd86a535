"""Hot-folder printers, orders released into production or printed, jobs walked forward; and the state a
refused staff action must leave unchanged, and the tasks waiting in the broker.

Jobs are moved only through the production services (job_move and friends), never by writing statuses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Case, F, When
from django.utils import timezone

from lab.orders.models import Order, OrderEvent
from lab.production import jobs, rasterizing, reconcile, routing, submission, tracking
from lab.production.backends import backend_for
from lab.production.models import Batch, JobEvent, Printer, PrintJob
from lab.production.resolutions import job_resolve_unknown
from lab.production.restarts import server_restarts_check
from lab.production.states import JobStatus
from printers.base import JobState
from printers.cups_backend import CupsBackend
from printers.cups_ipp import connect
from printers.errors import TransientPrinterError
from tests.builders.orders import paid_order
from tests.builders.people import person
from tests.support.celery_worker import wait_until
from tests.support.cups import PrivateCups

WORKER = "test-worker:1"  # the worker name a test's service calls claim jobs under
J = JobStatus
# The path a job takes through the machine; `job_walk` follows it with job_move.
_FORWARD: list[str] = [J.QUEUED, J.RASTERIZING, J.READY, J.SUBMITTING, J.SUBMITTED, J.PRINTED]


def hotfolder_printer(
    name: str, *, sizes: list[str], papers: list[str] | None = None, **extra: object
) -> Printer:
    (Path(settings.HOTFOLDER_ROOT) / name).mkdir(parents=True, exist_ok=True)
    return Printer.objects.create(
        name=name,
        backend="hotfolder",
        target=name,
        media_sizes=sizes,
        papers=papers or ["lustre", "glossy"],
        **extra,
    )


def cups_printer(cups_server: PrivateCups, queue: str, *, print_seconds: float) -> Printer:
    """A 4x6 lab printer on a new queue of a private cupsd, whose device takes `print_seconds` a print."""
    cups_server.add_printer(queue, media=["na_index-4x6_4x6in"], print_seconds=print_seconds)
    return Printer.objects.create(
        name=queue.replace("_", "-"),
        backend="cups",
        target=queue,
        cups_server=cups_server.server,
        media_sizes=["4x6"],
        papers=["lustre", "glossy"],
    )


def printer_folder(printer: Printer) -> Path:
    return Path(settings.HOTFOLDER_ROOT) / printer.target


def released_order(*, lines: list[tuple[str, int]], promised_by: datetime | None = None) -> Order:
    order = paid_order(lines=lines, promised_by=promised_by)
    routing.order_release(order_id=order.pk)
    order.refresh_from_db()
    return order


def job_on_the_first_of_two_minilabs() -> tuple[PrintJob, Printer, Printer]:
    """A released 4x6 job routed to minilab A and rasterized (`ready`), beside another capable minilab B."""
    from lab.production import rasterizing

    first = hotfolder_printer("minilab", sizes=["4x6"])
    second = hotfolder_printer("minilab-2", sizes=["4x6"])
    Printer.objects.filter(pk=second.pk).update(is_paused_by_lab=True)  # the job is routed to A
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    Printer.objects.filter(pk=second.pk).update(is_paused_by_lab=False)
    assert job.printer_id == first.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    job.refresh_from_db()
    return job, first, second


def job_walk(job: PrintJob, to_status: str) -> PrintJob:
    """Move a routed job forward through the state machine with job_move, one legal step at a time."""
    job.refresh_from_db()
    start = _FORWARD.index(job.status)
    for from_status, next_status in zip(_FORWARD[start:], _FORWARD[start + 1 :], strict=False):
        extra: dict[str, Any] = {"printed_at": timezone.now()} if next_status == J.PRINTED else {}
        if next_status == J.READY:
            extra["raster_printer_id"] = job.printer_id
        if next_status == J.SUBMITTED:
            extra["backend_job_id"] = f"walk-{job.pk}"
        assert jobs.job_move(job_id=job.pk, from_statuses={from_status}, to_status=next_status, **extra)
        if next_status == to_status:
            break
    job.refresh_from_db()
    assert job.status == to_status
    return job


def ready_to_pack_order(*, lines: list[tuple[str, int]]) -> Order:
    order = released_order(lines=lines)
    for job in PrintJob.objects.filter(order=order):
        job_walk(job, J.PRINTED)
    assert tracking.order_check_printed(order_id=order.pk)
    order.refresh_from_db()
    return order


def floor_state() -> tuple[object, ...]:
    """Everything a staff action could change, to assert that a refused one changed nothing."""
    return (
        list(Printer.objects.order_by("pk").values_list("pk", "is_paused_by_lab")),
        list(Batch.objects.order_by("pk").values_list("pk", "is_held")),
        list(PrintJob.objects.order_by("pk").values_list("pk", "status", "printer_id", "copies_verified")),
        list(Order.objects.order_by("pk").values_list("pk", "status", "hold_message", "carrier")),
        JobEvent.objects.count(),
        OrderEvent.objects.count(),
    )


def broker_tasks(queue: str) -> list[tuple[str, dict[str, Any]]]:
    """Task names and kwargs waiting in a Redis broker queue (kombu keeps each queue as a Redis list); the
    kwargs are as JSON decodes them."""
    import base64
    import json

    import redis

    connection = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    tasks = []
    for raw in reversed(connection.lrange(queue, 0, -1)):
        message = json.loads(raw)
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        tasks.append((message["headers"]["task"], kwargs))
    return tasks


def printing_at_the_device(
    cups_server: PrivateCups, printer: Printer, handle: str, *, received: int = 1
) -> None:
    """Wait until the device has the job and prints it, CUPS calling it `processing` meanwhile: the device
    holds `received` documents then, this one the last. (CUPS calls a job `processing` as it begins to send it
    to the device: a cancel then can stop it before the device has it, and nothing prints.)"""
    backend = backend_for(printer)
    wait_until(
        lambda: (
            backend.job_info(handle).state is JobState.PROCESSING
            and len(cups_server.received_files(printer.target)) == received
        ),
        timeout=30,
        what="the device printing the job",
    )


def claim_lease_runs_out(job: PrintJob) -> None:
    """Age the job's send claim past its lease, as a worker stalled in its send leaves it. Its identity
    (claimed_by) stays, as the reconciler reads it, and so does its record of having armed the fence (a claim
    of a worker of the version before armed none: that stays as it was)."""
    lease = timedelta(seconds=settings.PRODUCTION_CLAIM_LEASE_SECONDS + 1)
    job.refresh_from_db()
    assert job.status == JobStatus.SUBMITTING and job.claimed_at is not None
    PrintJob.objects.filter(pk=job.pk).update(
        claimed_at=job.claimed_at - lease,
        fence_armed_at=Case(
            When(fence_armed_at=F("claimed_at"), then=F("claimed_at") - lease), default=F("fence_armed_at")
        ),
    )


SECOND_WORKER = "test-worker:2"  # the worker a technician's send again runs as, beside WORKER's stalled one


@dataclass
class StalledSend:
    """What the printer gave for a send stalled past its lease: its handles in the order they landed (the
    copy sent again first, then the stalled one), and what the send again returned."""

    handles: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def send_stalls_past_its_lease(
    monkeypatch: pytest.MonkeyPatch, job: PrintJob, *, when_it_lands: Callable[[str], None] | None = None
) -> StalledSend:
    """The next send of `job` stalls past its lease: meanwhile the reconciler, finding no copy at the printer,
    makes the job `unknown`, a technician sends it again (SECOND_WORKER) and that copy lands; then the stalled
    send lands too, and `when_it_lands` runs with its handle before its worker hears so."""
    real_submit = CupsBackend.submit
    stalled = StalledSend()

    def stalled_past_its_lease(self: CupsBackend, **kwargs: Any) -> str:
        first = not stalled.resent
        if first:
            stalled.resent.append("")
            claim_lease_runs_out(job)
            assert reconcile.production_reconcile().get("unknown") == 1
            job_resolve_unknown(job_id=job.pk, actor=person("technician"), was_printed=False)
            stalled.resent[0] = submission.print_job_submit(job_id=job.pk, worker=SECOND_WORKER)
        stalled.handles.append(real_submit(self, **kwargs))
        if first and when_it_lands is not None:
            when_it_lands(stalled.handles[-1])
        return stalled.handles[-1]

    monkeypatch.setattr(CupsBackend, "submit", stalled_past_its_lease)
    return stalled


def state_at_the_printer(printer: Printer, handle: str, state: JobState) -> None:
    """Wait until the printer calls the copy `handle` by `state`."""
    backend = backend_for(printer)
    wait_until(lambda: backend.job_info(handle).state is state, timeout=30, what=f"the job {state}")


def console_cancel(cups_server: PrivateCups, printer: Printer, handle: str) -> None:
    """Cancel a copy as a person at the CUPS console does (no record of it in the lab)."""
    connect(server=cups_server.server).cancelJob(int(handle))
    state_at_the_printer(printer, handle, JobState.CANCELED)


def ready_with_a_send_that_began(
    cups_server: PrivateCups, monkeypatch: pytest.MonkeyPatch
) -> tuple[PrintJob, Printer, str]:
    """A job back in `ready` on printer `busy` after a transient submit error, though its send reached cupsd;
    its device printing that copy when a person cancelled it at the CUPS console (`canceled`, began)."""
    printer = cups_printer(cups_server, "busy", print_seconds=4)
    assert server_restarts_check(printer)
    job = PrintJob.objects.get(order=released_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    assert job.printer_id == printer.pk
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    real_submit = CupsBackend.submit
    sent: list[str] = []

    def reached_then_went_away(self: CupsBackend, **kwargs: Any) -> str:
        sent.append(real_submit(self, **kwargs))
        monkeypatch.setattr(CupsBackend, "submit", real_submit)
        raise TransientPrinterError(code="printer_unreachable", message="connection reset by peer")

    monkeypatch.setattr(CupsBackend, "submit", reached_then_went_away)
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "retry"
    (handle,) = sent
    printing_at_the_device(cups_server, printer, handle)
    console_cancel(cups_server, printer, handle)
    info = backend_for(printer).job_info(handle)
    assert (info.state, info.began) == (JobState.CANCELED, True)
    job.refresh_from_db()
    assert (job.status, job.submit_attempts, job.backend_job_id) == (J.READY, 1, "")
    return job, printer, handle
