"""Retention keeps a cancelled order's photos while a copy is still being withdrawn from a printer: a
supervisor's cancel leaves the decrypted print file in the printer's spool (a hot folder's inbox) until the
printer confirms the cancel, and the order's photo key and its "purged" receipt wait for that, as the erasure
does (lab/customer_data/erasure_refusals.py: WITHDRAWING_FROM_PRINTER_REASON)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from lab.customer_data import retention, retention_lateness, retention_rules
from lab.customer_data.models import PrivacyReceipt
from lab.orders.models import Asset, Order
from lab.privacy.models import DataKey
from lab.production import rasterizing, routing, submission
from lab.production.cancellation import order_cancel_in_production, printer_cancels_settle
from lab.production.models import PrintJob
from tests.builders import WORKER, broker_tasks, minilab, paid_order, person

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)
COUNTS_ZERO = dict.fromkeys(retention.SWEEP_COUNTS, 0)
PHOTO_RULES = (retention_rules.RULE_UNPAID, retention_rules.RULE_CANCELLED)


@pytest.fixture(autouse=True)
def _schedule(settings) -> None:
    settings.RETENTION_UNPAID_DAYS = 7
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("default")


def _cancelled_while_the_printer_holds_its_copy() -> tuple[Order, PrintJob, Path, Path]:
    """A paid order sent to a hot-folder minilab whose share then went away, cancelled by a supervisor: its
    job is `cancelled` and flagged for the printer. Returns the order, the job, the folder and where it
    went."""
    printer = minilab()
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    routing.order_release(order_id=order.pk)
    job = PrintJob.objects.get(order=order)
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    assert submission.print_job_submit(job_id=job.pk, worker=WORKER) == "submitted"
    folder = Path(settings.HOTFOLDER_ROOT) / printer.target
    away = folder.with_name(f"{folder.name}.unmounted")
    os.replace(folder, away)
    order_cancel_in_production(order_ref=order.ref, actor=person("supervisor"))
    job.refresh_from_db()
    assert (job.status, job.cancel_at_printer) == ("cancelled", True)
    return order, job, folder, away


def _receipts_asked(order: Order) -> list[tuple[str, dict[str, object]]]:
    return [
        task
        for task in broker_tasks("default")
        if task == ("privacy.receipt_issue", {"order_id": order.pk, "reason": "purged"})
    ]


def test_a_cancelled_order_keeps_its_photo_while_its_copy_is_being_withdrawn_from_the_printer(
    django_capture_on_commit_callbacks,
):
    # given an order cancelled in production 8 days ago whose print file is still in the unreachable
    # minilab's inbox
    order, _job, folder, away = _cancelled_while_the_printer_holds_its_copy()
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - 8 * DAY)
    asset = order.items.get().asset
    key = asset.data_key_id
    assert key is not None
    now = timezone.now()

    # when the sweep runs (and the gauge looks a sweep's lag later)
    with django_capture_on_commit_callbacks(execute=True):
        kept = retention.retention_sweep(now=now)
    late = retention_lateness.retention_due_late(now=now + retention.retention_schedule_lag())

    # then the photo, its key and its file stay, no receipt says it was purged, and the gauge calls nothing
    # late (before: purged, the key destroyed and a "purged" receipt sent while the plain copy could still
    # print once the share came back)
    assert sum(kept[rule] for rule in PHOTO_RULES) == 0
    asset.refresh_from_db()
    assert asset.status == Asset.Status.READY
    assert DataKey.objects.get(pk=key).destroyed_at is None
    assert _receipts_asked(order) == []
    assert not PrivacyReceipt.objects.filter(order_ref=order.ref).exists()
    assert sum(late[rule] for rule in PHOTO_RULES) == 0

    # and once the minilab is back and has given up the copy, the next sweep purges the photo
    os.replace(away, folder)
    assert printer_cancels_settle(order_id=order.pk)["cancelled_at_printer"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        purged = retention.retention_sweep(now=now)
    assert sum(purged[rule] for rule in PHOTO_RULES) == 1
    asset.refresh_from_db()
    assert asset.status == Asset.Status.PURGED
    assert DataKey.objects.get(pk=key).destroyed_at is not None
    assert _receipts_asked(order) == [("privacy.receipt_issue", {"order_id": order.pk, "reason": "purged"})]
