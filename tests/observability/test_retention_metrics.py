"""Retention seen from /metrics: what each rule should have deleted by now and has not
(printlab_retention_due_past_schedule), and the files of a committed purge that could not be deleted
(printlab_purge_file_delete_failures_total). Before, both were log lines only.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import Client
from django.utils import timezone

from lab.customer_data import raster_purge, retention, retention_rules
from lab.orders.models import Asset, Order
from lab.production.models import PrintJob
from tests.builders import UserFactory, asset_for, blob_path, minilab, order_move, paid_order, print_order
from tests.support.metrics import Samples
from tests.support.metrics import scrape as metrics_scrape

pytestmark = pytest.mark.django_db
TOKEN = "a-metrics-token-of-this-test"
RULES = (
    "orders_expired",
    retention_rules.RULE_SHIPPED,
    retention_rules.RULE_UNPAID,
    retention_rules.RULE_CANCELLED,
    retention_rules.RULE_NEVER_ORDERED,
    retention_rules.RULE_PRINTED_RASTER,
)


def scrape() -> Samples:
    return metrics_scrape(Client(), token=TOKEN)


def due_late(samples: Samples) -> dict[str, float]:
    return {rule: samples[("printlab_retention_due_past_schedule", (("rule", rule),))] for rule in RULES}


def printed_order() -> Order:
    minilab()
    return print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]))


def test_items_due_longer_ago_than_a_sweep_s_lag_are_counted_by_rule_and_nothing_else(settings):
    settings.METRICS_TOKEN = TOKEN
    lag = retention.retention_schedule_lag()
    unused = timedelta(days=settings.RETENTION_UNUSED_DAYS)
    customer = UserFactory.create()
    # given two photos never ordered, due (by a week) an hour longer ago than a sweep's lag
    late = [asset_for(customer) for _ in range(2)]
    Asset.objects.filter(pk__in=[photo.pk for photo in late]).update(
        created_at=F("created_at") - unused - lag - timedelta(hours=1)
    )
    # and one due a minute ago: the next sweep's, not late
    just_due = asset_for(customer)
    Asset.objects.filter(pk=just_due.pk).update(created_at=F("created_at") - unused - timedelta(minutes=1))
    # and a printed job whose raster is due a week after printing, an hour past the lag
    order = printed_order()
    job = PrintJob.objects.get(order=order)
    PrintJob.objects.filter(pk=job.pk).update(
        printed_at=timezone.now() - timedelta(days=settings.RETENTION_RASTER_DAYS) - lag - timedelta(hours=1)
    )

    samples = scrape()

    # then each rule counts what it should have purged already
    assert due_late(samples) == {
        **dict.fromkeys(RULES, 0),
        retention_rules.RULE_NEVER_ORDERED: 2,
        retention_rules.RULE_PRINTED_RASTER: 1,
    }

    # and a sweep that does its work clears it
    retention.retention_sweep()
    assert due_late(scrape()) == dict.fromkeys(RULES, 0)


def test_a_photo_an_open_order_still_needs_is_not_counted_late(settings):
    settings.METRICS_TOKEN = TOKEN
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    Asset.objects.filter(pk=order.items.get().asset_id).update(
        created_at=F("created_at") - timedelta(days=90)
    )
    Order.objects.filter(pk=order.pk).update(created_at=F("created_at") - timedelta(days=90))

    assert due_late(scrape()) == dict.fromkeys(RULES, 0)


def test_a_purged_raster_that_could_not_be_deleted_is_counted(settings, django_capture_on_commit_callbacks):
    settings.METRICS_TOKEN = TOKEN
    key = ("printlab_purge_file_delete_failures_total", (("kind", "raster"),))
    before = scrape().get(key, 0.0)
    order = order_move(printed_order(), "packed")
    job = PrintJob.objects.get(order=order)
    name = job.raster_blob
    week_ago = timezone.now() - timedelta(days=settings.RETENTION_RASTER_DAYS, hours=1)
    PrintJob.objects.filter(pk=job.pk).update(printed_at=week_ago)

    # given the raster's purge committed, and its file cannot be deleted (here: a folder in its place)
    with django_capture_on_commit_callbacks() as callbacks:
        assert raster_purge.raster_purge(job_id=job.pk, cutoff=timezone.now() - timedelta(days=1))
    path = blob_path(name)
    path.unlink()
    path.mkdir()
    (path / "kept").write_bytes(b"x")

    # when the deletes after commit run (each on its own, as on_commit(robust=True) runs them)
    for callback in callbacks:
        with contextlib.suppress(OSError):
            callback()

    # then the failure is counted (before: an error line only), and the purge stands
    assert scrape()[key] == before + 1
    assert PrintJob.objects.get(pk=job.pk).raster_blob == ""
