"""A host whose clock is wrong takes over no live claim: every lease is written and judged on the database's
clock (lab/lib/clock.py), not on the clock of the host that happens to look.

Each test claims something the ordinary way, then acts as another host of the lab (a worker on another box,
the reconciler under beat) whose clock runs more than a lease ahead (or behind): `timezone.now()` is that
host's clock. Before the shared clock, each of these took over, settled or sent again what a live worker held.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lab.customer_data import receipts
from lab.customer_data.models import PrivacyReceipt
from lab.lib.clock import database_now
from lab.lib.errors import Conflict
from lab.notify import services as notify
from lab.notify.models import Notification
from lab.orders import photos
from lab.orders.models import Asset, Order, OrderEvent
from lab.packing import station
from lab.packing.errors import PackingError
from lab.production import cancellation, raster, rasterizing, reconcile, routing
from lab.production.models import JobEvent, PrintJob
from lab.production.states import JobStatus
from tests.builders import (
    TO_PACKED,
    WORKER,
    hotfolder_printer,
    new_customer,
    order_for,
    order_move,
    pack_and_ship,
    paid_order,
    person,
    ready_to_pack_order,
)
from tests.support.clock import host_clock_off
from tests.support.dba import dba

pytestmark = pytest.mark.django_db

# Well past every lease the lab keeps (production claims 10 minutes by default, e-mail claims 10 minutes).
SKEW = timedelta(hours=2)


def _released_job() -> PrintJob:
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    return PrintJob.objects.get()


def _events(job: PrintJob) -> list[str]:
    return list(JobEvent.objects.filter(job=job).order_by("pk").values_list("kind", flat=True))


class _StillRasterizing(Exception):
    """Stands for a worker busy with the raster: its claim is taken and held."""


def _claim_raster(job: PrintJob, worker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The raster claim print_job_rasterize takes, held as a worker still making the raster holds it."""

    def still_working(**arguments: object) -> object:
        raise _StillRasterizing

    with monkeypatch.context() as patched:
        patched.setattr(raster, "rasterize", still_working)
        with pytest.raises(_StillRasterizing):
            rasterizing.print_job_rasterize(job_id=job.pk, worker=worker)


@pytest.mark.parametrize(
    ("claimer", "looker"), [(timedelta(0), SKEW), (-SKEW, timedelta(0))], ids=["ahead", "behind"]
)
def test_a_worker_whose_clock_is_off_takes_over_no_live_raster_claim(
    settings, monkeypatch: pytest.MonkeyPatch, claimer: timedelta, looker: timedelta
) -> None:
    # given a job a worker has just claimed for its raster and is working on (on a host whose clock is right,
    # or runs behind)
    job = _released_job()
    with host_clock_off(claimer, monkeypatch):
        _claim_raster(job, "first:1", monkeypatch)
    # when another worker gets the job's message, and the reconciler runs, on a host whose clock runs ahead
    # (or is right)
    with host_clock_off(looker, monkeypatch):
        outcome = rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
        swept = reconcile.production_reconcile()
    # then the live claim is left to its worker
    job.refresh_from_db()
    assert outcome == "not_claimed"
    assert swept.get("rasterize_taken_over", 0) == 0
    assert (job.status, job.claimed_by) == (JobStatus.RASTERIZING, "first:1")
    assert "lease_taken_over" not in _events(job)


def test_a_reconciler_whose_clock_runs_ahead_settles_no_job_being_sent(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a job a worker has claimed for sending and is sending now (nothing at the printer yet)
    job = _released_job()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    from lab.lib.clock import database_now
    from lab.production.jobs import job_move

    assert job_move(
        job_id=job.pk,
        from_statuses={JobStatus.READY},
        to_status=JobStatus.SUBMITTING,
        kind="claimed",
        note="sender:1",
        claimed_at=database_now(),
        claimed_by="sender:1",
    )
    # when the reconciler runs on a host whose clock runs ahead, and the printer poll there settles cancels
    with host_clock_off(SKEW, monkeypatch):
        swept = reconcile.production_reconcile()
    # then it does not look for the job at the printer (finding nothing, it would call it `unknown`)
    job.refresh_from_db()
    assert swept.get("unknown", 0) == 0 and swept.get("reconciled", 0) == 0
    assert (job.status, job.claimed_by) == (JobStatus.SUBMITTING, "sender:1")
    # and a cancel of that job waits for the worker that may be sending it, whatever the host's clock
    PrintJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED, cancel_at_printer=True)
    with host_clock_off(SKEW, monkeypatch):
        assert cancellation.printer_cancels_settle()["waiting_for_worker"] == 1


def test_a_worker_whose_claim_was_taken_over_leaves_the_job_to_the_taker(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a job whose first worker stalled in its raster past the lease, and another worker that took the
    # job over and is making the raster now
    job = _released_job()
    real_rasterize = raster.rasterize

    def stalled_past_the_lease(**arguments: object) -> object:
        result = real_rasterize(**arguments)  # type: ignore[arg-type]
        PrintJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
        _claim_raster(job, "taker:2", monkeypatch)
        return result

    monkeypatch.setattr(raster, "rasterize", stalled_past_the_lease)
    # when the first worker wakes up with its raster made
    outcome = rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER)
    # then its raster is dropped: the job stays with the taker, which finishes it
    job.refresh_from_db()
    assert outcome == "superseded"
    assert (job.status, job.claimed_by, job.raster_blob) == (JobStatus.RASTERIZING, "taker:2", "")
    assert JobEvent.objects.get(job=job, kind="lease_taken_over").note == "taker:2"
    monkeypatch.setattr(raster, "rasterize", real_rasterize)
    PrintJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker="taker:2") == "ready"
    assert _events(job).count("rasterized") == 1


def test_a_worker_whose_clock_runs_ahead_takes_no_live_notification_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a "paid" notification a worker has claimed and is sending
    order = order_for(new_customer())
    order_move(order, "paid")
    event = OrderEvent.objects.get(order=order, to_status="paid")
    assert notify._claim(order_event=event, kind=Notification.Kind.STATUS_CHANGED) is not None
    # when a redelivered message reaches a worker whose clock runs ahead, or the sweep runs there
    with host_clock_off(SKEW, monkeypatch):
        taken = notify._claim(order_event=event, kind=Notification.Kind.STATUS_CHANGED)
    # then the claim stays with the first worker: the customer gets one mail
    assert taken is None


def test_a_worker_whose_clock_runs_ahead_takes_no_live_photo_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a URL photo whose fetch a worker has claimed and is downloading
    owner = new_customer()
    asset = Asset.objects.create(owner=owner, source_url="https://photos.example/a.jpg", status="pending")
    assert photos._fetch_claim(asset_id=str(asset.pk))
    # when its message reaches a worker whose clock runs ahead
    with host_clock_off(SKEW, monkeypatch):
        claimed = photos._fetch_claim(asset_id=str(asset.pk))
    # then that worker does not download it a second time
    asset.refresh_from_db()
    assert (claimed, asset.fetch_attempts) == (False, 1)


def test_a_worker_whose_clock_runs_ahead_takes_no_live_receipt_e_mail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a shipped order's privacy receipt whose e-mail a worker has claimed and is sending
    order = order_for(new_customer())
    order_move(order, *TO_PACKED, "shipped")
    receipt = receipts.receipt_issue(order=order, reason="shipped", mail=False)
    assert receipt is not None
    assert receipts._email_claim(receipt.pk) is not None
    # when the e-mail's message reaches a worker whose clock runs ahead
    with host_clock_off(SKEW, monkeypatch):
        taken = receipts._email_claim(receipt.pk)
    # then the customer is not mailed twice
    assert taken is None
    assert PrivacyReceipt.objects.get(pk=receipt.pk).email_status == "pending"


def test_a_web_host_whose_clock_runs_behind_serves_no_shipped_slip_past_its_window(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A limit on a person's access: the shipped order's slip (its customer's name and address). Before, the
    station wrote `shipped_at` and judged the window on the web host's clock, so a host running behind served
    the slip for as long past the window as its clock was off."""
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    # given an order shipped from a web host whose clock runs behind: shipped when the database says
    with host_clock_off(-SKEW, monkeypatch):
        shipped = pack_and_ship(order)
    assert shipped.shipped_at is not None
    assert abs(shipped.shipped_at - database_now()) < timedelta(minutes=1)
    # when, by the database's clock, the window has just passed (by less than that host's clock is off)
    dba(
        "UPDATE orders_order SET shipped_at = pg_catalog.statement_timestamp() - make_interval(hours => %s) "
        "WHERE id = %s",
        settings.PACKING_SHIPPED_SLIP_HOURS + 1,
        order.pk,
    )
    # then that host serves its slip no more
    with host_clock_off(-SKEW, monkeypatch), pytest.raises(Conflict) as refused:
        station.slip_pdf(code=order.ref, actor=person("packer"))
    assert refused.value.code == PackingError.SLIP_NO_LONGER_SERVED
    assert Order.objects.get(pk=order.pk).status == "shipped"
