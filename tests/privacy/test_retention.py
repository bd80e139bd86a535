"""Retention: shipped orders' photos after N days, printed rasters after M days, unpaid/cancelled orders and
never-ordered photos after 7 days; purge = files deleted + data key destroyed + `image.purge`, atomically."""

from __future__ import annotations

import io
import shutil
import time
from datetime import timedelta

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from lab.accounts.models import SecurityEvent
from lab.audit.database_verify import audit_verify_database
from lab.audit.models import AuditRecord
from lab.audit.records import RequestMeta
from lab.customer_data import (
    photo_purge,
    purged_files,
    raster_purge,
    retention,
    retention_rules,
    unpaid_expiry,
)
from lab.gate import access as gate
from lab.gate.refusals import AccessDenied
from lab.gate.rules import AccessRequest
from lab.orders.models import Asset, Order, OrderEvent
from lab.privacy.crypto import KeyDestroyed
from lab.privacy.models import BlobDeletion, DataKey
from lab.privacy.vault import vault_read
from lab.production.models import PrintJob
from tests.builders import UserFactory, asset_for, blob_path, minilab, order_move, paid_order, print_order
from tests.support.clock import host_clock_off, keys_age

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)
COUNTS_ZERO = dict.fromkeys(retention.SWEEP_COUNTS, 0)


@pytest.fixture(autouse=True)
def _schedule(settings) -> None:
    settings.RETENTION_SHIPPED_DAYS = 30
    settings.RETENTION_RASTER_DAYS = 7
    settings.RETENTION_UNPAID_DAYS = 7
    settings.RETENTION_UNUSED_DAYS = 7


def shipped_order() -> Order:
    minilab()
    order = print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    order_move(order, "packed")
    return order_move(order, "shipped", shipped_at=timezone.now())


def files_of(order: Order) -> list[str]:
    asset = order.items.get().asset
    return [asset.blob_name, *PrintJob.objects.filter(order=order).values_list("raster_blob", flat=True)]


def sweep(when, django_capture_on_commit_callbacks) -> dict[str, int]:
    with django_capture_on_commit_callbacks(execute=True):
        return retention.retention_sweep(now=when)


def test_shipped_order_photo_and_raster_purged_after_30_days_not_before(django_capture_on_commit_callbacks):
    order = shipped_order()
    assert order.shipped_at is not None
    asset = order.items.get().asset
    names = files_of(order)
    assert len(names) == 2 and all(blob_path(name).exists() for name in names)

    early = sweep(order.shipped_at + 30 * DAY - timedelta(seconds=1), django_capture_on_commit_callbacks)
    asset.refresh_from_db()
    assert early == {**COUNTS_ZERO, retention_rules.RULE_PRINTED_RASTER: 1}  # the raster went after 7 days
    assert asset.status == "ready"

    result = sweep(order.shipped_at + 30 * DAY, django_capture_on_commit_callbacks)

    assert result == {**COUNTS_ZERO, retention_rules.RULE_SHIPPED: 1}
    asset.refresh_from_db()
    assert (asset.status, asset.blob_name) == ("purged", "")
    assert asset.purged_at is not None
    assert asset.data_key_id is not None
    key = DataKey.objects.get(pk=asset.data_key_id)
    assert (key.wrapped_key, key.is_destroyed) == (None, True)
    assert [blob_path(name).exists() for name in names] == [False, False]
    assert list(PrintJob.objects.filter(order=order).values_list("raster_blob", flat=True)) == [""]
    assert not BlobDeletion.objects.exists()  # each file's row went with it, after the commit
    record = AuditRecord.objects.get(action="image.purge")
    assert (record.actor_id, record.actor_role, record.outcome, record.rule, record.purpose) == (
        None,
        "system",
        "done",
        "shipped_order",
        "retention",
    )
    assert (record.asset_id, record.order_ref) == (str(asset.pk), order.ref)
    assert audit_verify_database().problem is None


def test_a_restored_backup_of_a_purged_photo_never_shows_again(django_capture_on_commit_callbacks, tmp_path):
    order = shipped_order()
    assert order.shipped_at is not None
    asset = order.items.get().asset
    name, raster_name = files_of(order)
    backup = tmp_path / "backup.blob"
    shutil.copy2(blob_path(name), backup)

    result = sweep(order.shipped_at + 31 * DAY, django_capture_on_commit_callbacks)
    # One sweep: the photo's purge takes the raster with it, so the raster rule finds nothing left.
    assert result == {**COUNTS_ZERO, retention_rules.RULE_SHIPPED: 1}
    assert (blob_path(name).exists(), blob_path(raster_name).exists()) == (False, False)
    assert PrintJob.objects.get(order=order).raster_blob == ""
    shutil.copy2(backup, blob_path(name))  # the files come back from a backup

    asset.refresh_from_db()
    with pytest.raises(KeyDestroyed):
        vault_read(data_key=asset.data_key, name=name, purpose="original")
    supervisor = UserFactory.create(roles=["supervisor"])
    job = PrintJob.objects.get(order=order)
    with pytest.raises(AccessDenied) as denied:
        gate.image_access(
            user=supervisor,
            request=AccessRequest(
                asset_id=str(asset.pk),
                purpose="printing",
                justification="restored from the nightly backup",
                context_type="print_job",
                context_id=str(job.pk),
                variant="full",
            ),
            meta=RequestMeta(),
        )
    assert denied.value.details["rule"] == "asset_unavailable"
    assert list(AuditRecord.objects.values_list("action", "outcome")) == [
        ("image.read.system", "done"),
        ("image.purge", "done"),
        ("image.access.denied", "denied"),
    ]


def test_rasters_of_printed_jobs_go_after_7_days_and_the_original_stays(django_capture_on_commit_callbacks):
    minilab()
    order = print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]))
    job = PrintJob.objects.get(order=order)
    assert job.printed_at is not None
    raster_name, asset = job.raster_blob, job.item.asset

    assert sweep(job.printed_at + 7 * DAY - timedelta(seconds=1), django_capture_on_commit_callbacks) == (
        COUNTS_ZERO
    )
    result = sweep(job.printed_at + 7 * DAY, django_capture_on_commit_callbacks)

    assert result == {**COUNTS_ZERO, retention_rules.RULE_PRINTED_RASTER: 1}
    job.refresh_from_db()
    assert (job.raster_blob, blob_path(raster_name).exists()) == ("", False)
    assert job.events.filter(kind="raster_purged").count() == 1
    asset.refresh_from_db()
    assert asset.status == "ready"
    assert vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original").startswith(
        b"\xff\xd8"
    )
    record = AuditRecord.objects.get(action="raster.purge")
    assert (record.rule, record.asset_id, record.order_ref, record.context_type, record.context_id) == (
        "printed_raster",
        str(asset.pk),
        order.ref,
        "print_job",
        str(job.pk),
    )


def unpaid_order(customer, asset) -> Order:
    from lab.catalog.demo import catalog_seed_demo
    from lab.catalog.models import Product
    from lab.orders.models import OrderItem
    from tests.builders import SKU

    catalog_seed_demo()
    order = Order.objects.create(
        customer=customer,
        shipping_address={"name": "X"},
        shipping_method="standard",
        subtotal_minor=35,
        shipping_minor=0,
        total_minor=35,
        currency="usd",
        payment_status="requires_payment",
    )
    OrderItem.objects.create(
        order=order,
        position=1,
        product=Product.objects.get(sku=SKU),
        asset=asset,
        copies=1,
        sizing="fill",
        unit_price_minor=35,
        line_total_minor=35,
    )
    return order


def test_an_unpaid_order_is_cancelled_after_7_days_and_its_photo_purged(django_capture_on_commit_callbacks):
    customer = UserFactory.create()
    stale = unpaid_order(customer, asset_for(customer))
    fresh_asset = asset_for(customer)
    fresh = unpaid_order(customer, fresh_asset)
    Order.objects.filter(pk=fresh.pk).update(created_at=stale.created_at + 2 * DAY)

    result = sweep(stale.created_at + 7 * DAY, django_capture_on_commit_callbacks)

    assert result == {**COUNTS_ZERO, "orders_expired": 1, retention_rules.RULE_UNPAID: 1}
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status) == ("cancelled", "awaiting_payment")
    assert OrderEvent.objects.get(order=stale, to_status="cancelled").actor_kind == "system"
    assert stale.items.get().asset.status == "purged"
    fresh_asset.refresh_from_db()
    assert fresh_asset.status == "ready"
    assert AuditRecord.objects.get(action="image.purge").rule == "unpaid_order"


def test_a_cancelled_paid_order_releases_its_photo_7_days_after_it_was_placed(
    django_capture_on_commit_callbacks,
):
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    Order.objects.filter(pk=order.pk).update(payment_status="refunded")
    order_move(order, "cancelled")

    result = sweep(order.created_at + 7 * DAY, django_capture_on_commit_callbacks)

    assert result == {**COUNTS_ZERO, retention_rules.RULE_CANCELLED: 1}
    assert AuditRecord.objects.get(action="image.purge").rule == "cancelled_order"


def test_a_photo_never_ordered_goes_after_7_days(django_capture_on_commit_callbacks):
    customer = UserFactory.create()
    old = asset_for(customer)
    young = asset_for(customer)
    Asset.objects.filter(pk=young.pk).update(created_at=old.created_at + DAY)
    name = old.blob_name

    result = sweep(old.created_at + 7 * DAY, django_capture_on_commit_callbacks)

    assert result == {**COUNTS_ZERO, retention_rules.RULE_NEVER_ORDERED: 1}
    old.refresh_from_db()
    young.refresh_from_db()
    assert (old.status, young.status, blob_path(name).exists()) == ("purged", "ready", False)
    record = AuditRecord.objects.get(action="image.purge")
    assert (record.rule, record.asset_id, record.order_ref) == ("never_ordered", str(old.pk), None)


@pytest.mark.parametrize(
    "status_path", [(), ("in_production",), ("on_hold",), ("in_production", "ready_to_pack")]
)
def test_a_photo_still_needed_by_an_open_order_is_never_purged(
    status_path, django_capture_on_commit_callbacks
):
    shipped = shipped_order()
    assert shipped.shipped_at is not None
    asset = shipped.items.get().asset
    again = unpaid_order(shipped.customer, asset)
    # Placed again a day before the shipped order's photo would go: not a stale unpaid order.
    Order.objects.filter(pk=again.pk).update(created_at=shipped.shipped_at + 29 * DAY)
    if status_path:
        Order.objects.filter(pk=again.pk).update(payment_status="succeeded")
        order_move(again, "paid", *status_path)
    names = files_of(shipped)

    result = sweep(shipped.shipped_at + 30 * DAY, django_capture_on_commit_callbacks)
    with pytest.raises(photo_purge.AssetStillNeeded) as refused:
        photo_purge.asset_purge(asset_id=asset.pk, rule=retention_rules.RULE_ERASURE, cutoffs=None)

    assert refused.value.details["orders"] == [again.ref]
    asset.refresh_from_db()
    assert asset.status == "ready"
    assert asset.data_key_id is not None
    assert DataKey.objects.get(pk=asset.data_key_id).wrapped_key is not None
    assert blob_path(names[0]).exists()
    assert not AuditRecord.objects.filter(action="image.purge").exists()
    assert result == {**COUNTS_ZERO, retention_rules.RULE_PRINTED_RASTER: 1}


def test_a_rolled_back_purge_leaves_the_key_the_files_and_the_log_as_they_were(
    django_capture_on_commit_callbacks,
):
    customer = UserFactory.create()
    asset = asset_for(customer)
    seq_before = AuditRecord.objects.count()

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        photo_purge.asset_purge(asset_id=asset.pk, rule=retention_rules.RULE_NEVER_ORDERED, cutoffs=None)
        raise RuntimeError("the caller failed after the purge")

    asset.refresh_from_db()
    assert asset.status == "ready"
    assert vault_read(data_key=asset.data_key, name=asset.blob_name, purpose="original").startswith(
        b"\xff\xd8"
    )
    assert AuditRecord.objects.count() == seq_before
    assert not BlobDeletion.objects.exists()


def test_the_beat_task_and_the_command_run_the_sweep(django_capture_on_commit_callbacks, settings):
    from workers.app import app
    from workers.privacy_tasks import retention_purge

    settings.RETENTION_UNUSED_DAYS = 0
    customer = UserFactory.create()
    asset_for(customer)
    asset_for(customer)

    with django_capture_on_commit_callbacks(execute=True):
        assert retention_purge() == {**COUNTS_ZERO, retention_rules.RULE_NEVER_ORDERED: 2}
    out = io.StringIO()
    call_command("retention_purge", stdout=out)

    assert app.tasks["privacy.retention_purge"].name == retention_purge.name == "privacy.retention_purge"
    assert out.getvalue().splitlines() == [
        "retention: shipped orders 30 d, rasters 7 d after printing, unpaid/cancelled orders 7 d,"
        " photos never ordered 0 d",
        "orders_expired: 0",
        "shipped_order: 0",
        "unpaid_order: 0",
        "cancelled_order: 0",
        "never_ordered: 0",
        "printed_raster: 0",
        "still_needed: 0",
        "sessions_expired: 0",
        "orphan_keys_destroyed: 0",
        "unknown_account_events_deleted: 0",
    ]


def test_photos_an_order_still_keeps_hold_up_no_other_photo_due_for_its_purge(
    django_capture_on_commit_callbacks,
):
    """Each rule takes its photos a batch at a time, oldest first. Before, a photo due by one order but kept
    by another (the same photo reordered and shipped since) stayed at the head of the rule's batch and was
    refused at every run, and a whole batch of such photos (a customer who reorders a 500-photo album each
    month) stopped every other customer's photos from ever being purged."""
    now = timezone.now()
    kept_order = shipped_order()  # its photo is ordered again below and that order shipped only 5 days ago
    kept = kept_order.items.get().asset
    due_order = shipped_order()
    due = due_order.items.get().asset
    Asset.objects.filter(pk=kept.pk).update(created_at=now - 90 * DAY)
    Asset.objects.filter(pk=due.pk).update(created_at=now - 80 * DAY)
    Order.objects.filter(pk__in=[kept_order.pk, due_order.pk]).update(shipped_at=now - 60 * DAY)
    again = unpaid_order(kept_order.customer, kept)
    Order.objects.filter(pk=again.pk).update(payment_status="succeeded")
    order_move(again, "paid", "in_production", "ready_to_pack", "packed")
    order_move(again, "shipped", shipped_at=now - 5 * DAY)
    policy = retention_rules.RetentionPolicy(
        shipped_days=30, raster_days=7, unpaid_days=7, unused_days=7, batch=1
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = retention.retention_sweep(now=now, policy=policy)

    due.refresh_from_db()
    kept.refresh_from_db()
    assert (due.status, kept.status) == ("purged", "ready")
    assert result[retention_rules.RULE_SHIPPED] == 1


def test_a_key_left_by_an_upload_killed_before_its_photo_row_is_destroyed_by_the_sweep(
    django_capture_on_commit_callbacks,
):
    """The web process was killed between storing the encrypted photo and writing its row (SIGKILL cannot be
    caught, so the upload's own clean-up never ran): its key and blob stayed readable, and no purge or
    erasure could ever reach them, as no photo row names them."""
    from lab.orders import imaging
    from lab.orders.photos import asset_store
    from tests.support.images import jpeg_bytes

    kept = asset_for(UserFactory.create())
    orphan_of = Asset(owner=UserFactory.create())
    data = jpeg_bytes(640, 480)
    asset_store(asset=orphan_of, facts=imaging.inspect_image(data=data, max_bytes=10**8, max_pixels=10**8))
    # ... and here the process died: no Asset row
    assert vault_read(data_key=orphan_of.data_key, name=orphan_of.blob_name, purpose="original")
    now = timezone.now()

    early = sweep(now, django_capture_on_commit_callbacks)  # an upload may still be on its way
    # The grace passes on the database's clock, which keys are dated and judged by
    keys_age(2 * retention.ORPHAN_KEY_GRACE)
    later = sweep(now + 2 * retention.ORPHAN_KEY_GRACE, django_capture_on_commit_callbacks)

    assert (early["orphan_keys_destroyed"], later["orphan_keys_destroyed"]) == (0, 1)
    assert orphan_of.data_key is not None
    orphan_of.data_key.refresh_from_db()
    # crypto-shredded: the wrapped key itself is gone, not the key only marked destroyed (a database backup
    # taken after the sweep would otherwise still hold it)
    assert orphan_of.data_key.wrapped_key is None
    with pytest.raises(KeyDestroyed):
        vault_read(
            data_key=orphan_of.data_key,
            name=orphan_of.blob_name,
            purpose="original",
        )
    kept.refresh_from_db()
    assert vault_read(data_key=kept.data_key, name=kept.blob_name, purpose="original")


def test_a_retention_worker_whose_clock_runs_hours_ahead_destroys_no_key_of_an_upload_in_progress(
    django_capture_on_commit_callbacks, monkeypatch
):
    """An upload commits its key on its own, then writes the encrypted photo and its row
    (lab/orders/photos.py). A retention worker whose clock ran two hours ahead of the web host's took that
    key, dated by the web host's clock, for one an upload had left over an hour ago and destroyed it: the
    photo, stored a moment later, was unreadable for good. The key is now dated, and its age judged, on the
    database's clock."""
    from lab.orders import imaging
    from lab.orders.photos import asset_store
    from tests.support.images import jpeg_bytes

    # given an upload in progress: its key and encrypted photo stored, its row not yet written
    uploading = Asset(owner=UserFactory.create())
    data = jpeg_bytes(640, 480)
    asset_store(asset=uploading, facts=imaging.inspect_image(data=data, max_bytes=10**8, max_pixels=10**8))
    assert uploading.data_key is not None

    # when the retention sweep runs on a worker whose clock is two hours ahead
    with host_clock_off(2 * retention.ORPHAN_KEY_GRACE, monkeypatch):
        result = sweep(timezone.now(), django_capture_on_commit_callbacks)

    # then it destroys nothing of the upload: its row, written now, names a readable photo
    assert result["orphan_keys_destroyed"] == 0
    uploading.save()
    uploading.data_key.refresh_from_db()
    assert not uploading.data_key.is_destroyed
    assert vault_read(data_key=uploading.data_key, name=uploading.blob_name, purpose="original")


def test_a_sweep_purges_every_photo_due_a_batch_at_a_time_not_one_batch_a_run(
    django_capture_on_commit_callbacks, settings
):
    """RETENTION_BATCH is how many a batch takes, not how many a run purges. Before, a run purged one batch
    per rule and stopped: 12,000 photos a rule a day at the hourly interval, against ~500,000 rasters a day
    in bench/scale, so photos outlived their promised retention for good and the disk filled."""
    settings.RETENTION_BATCH = 2
    customer = UserFactory.create()
    photos = [asset_for(customer) for _ in range(3)]
    young = asset_for(customer)
    Asset.objects.filter(pk=young.pk).update(created_at=timezone.now() + DAY)

    result = sweep(timezone.now() + 7 * DAY, django_capture_on_commit_callbacks)

    assert result == {**COUNTS_ZERO, retention_rules.RULE_NEVER_ORDERED: 3}
    assert [Asset.objects.get(pk=photo.pk).status for photo in [*photos, young]] == [
        "purged",
        "purged",
        "purged",
        "ready",
    ]


def test_every_stale_unpaid_order_and_every_raster_due_goes_in_one_sweep(
    django_capture_on_commit_callbacks, settings
):
    settings.RETENTION_BATCH = 1
    customer = UserFactory.create()
    unpaid = [unpaid_order(customer, asset_for(customer)) for _ in range(2)]
    minilab()
    printed = print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 1)]))
    jobs = list(PrintJob.objects.filter(order=printed))
    assert len(jobs) == 2

    result = sweep(timezone.now() + 7 * DAY, django_capture_on_commit_callbacks)

    assert (
        result["orders_expired"],
        result[retention_rules.RULE_UNPAID],
        result[retention_rules.RULE_PRINTED_RASTER],
    ) == (
        2,
        2,
        2,
    )
    assert "work_left" not in result
    assert set(Order.objects.filter(pk__in=[o.pk for o in unpaid]).values_list("status", flat=True)) == {
        "cancelled"
    }
    assert set(PrintJob.objects.filter(order=printed).values_list("raster_blob", flat=True)) == {""}


def test_a_sweep_out_of_time_stops_after_a_batch_of_each_rule_and_reports_what_is_left(
    django_capture_on_commit_callbacks, settings, monkeypatch, caplog
):
    """The budget keeps a sweep inside its task's time limit; what it leaves is logged (a warning, with how
    many are left of each rule) and counted in its result, and the next sweep goes on."""
    settings.RETENTION_BATCH = 2
    monkeypatch.setattr(retention, "SWEEP_TIME_BUDGET_SECONDS", 0.0)  # spent once the first batch ran
    customer = UserFactory.create()
    photos = [asset_for(customer) for _ in range(3)]
    when = timezone.now() + 7 * DAY

    with caplog.at_level("WARNING", logger=retention.logger.name):
        first = sweep(when, django_capture_on_commit_callbacks)
    second = sweep(when, django_capture_on_commit_callbacks)

    assert first == {**COUNTS_ZERO, retention_rules.RULE_NEVER_ORDERED: 2, "work_left": 1}
    (warning,) = [record.getMessage() for record in caplog.records if "out of time" in record.getMessage()]
    assert "left for the next sweep: never_ordered=1 " in warning
    assert second == {**COUNTS_ZERO, retention_rules.RULE_NEVER_ORDERED: 1}
    assert {Asset.objects.get(pk=photo.pk).status for photo in photos} == {"purged"}


@pytest.mark.django_db(transaction=True)
def test_a_purged_photo_whose_file_cannot_be_deleted_is_counted_and_the_sweep_goes_on():
    # given two stale unpaid orders, and the first one's photo file cannot be deleted (a folder in its place)
    customer = UserFactory.create()
    stuck, other = (unpaid_order(customer, asset_for(customer)) for _ in range(2))
    Order.objects.filter(pk=other.pk).update(created_at=stuck.created_at + timedelta(seconds=1))
    path = blob_path(stuck.items.get().asset.blob_name)
    other_path = blob_path(other.items.get().asset.blob_name)
    path.unlink()
    path.mkdir()
    (path / "kept").write_bytes(b"x")
    failures = purged_files.PURGE_FILE_DELETE_FAILURES.labels(kind="photo")
    before = failures._value.get()

    # when the sweep runs, each purge committed for real (its file deletes on_commit(robust=True))
    result = retention.retention_sweep(now=stuck.created_at + 8 * DAY)

    # then the sweep completes and the failure is counted (before: the robust hook's log of a
    # functools.partial raised AttributeError after the commit, the confirm and its count were dropped, and
    # the sweep crashed at that photo)
    assert (result["orders_expired"], result[retention_rules.RULE_UNPAID]) == (2, 2)
    assert failures._value.get() == before + 1
    assert path.is_dir()
    assert not other_path.exists()
    assert set(Asset.objects.filter(items__order__in=[stuck, other]).values_list("status", flat=True)) == {
        "purged"
    }


def killed_after_commit(django_capture_on_commit_callbacks, purge) -> None:
    """Run a purge whose transaction commits and whose process is killed before its after-commit hooks run (a
    deploy's restart mid-sweep; or a COMMIT applied whose answer was lost, when Django runs no hook)."""
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        assert purge()
    assert hooks  # the file deletes, never run


def test_a_raster_purge_killed_before_its_file_delete_has_the_file_deleted_by_a_later_sweep(
    django_capture_on_commit_callbacks,
):
    # given a printed job's raster purge that committed, and its process killed before deleting the file
    minilab()
    job = PrintJob.objects.get(order=print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])))
    raster, asset = job.raster_blob, job.item.asset
    killed_after_commit(
        django_capture_on_commit_callbacks,
        lambda: raster_purge.raster_purge(job_id=job.pk, cutoff=timezone.now() + DAY),
    )
    assert PrintJob.objects.get(pk=job.pk).raster_blob == ""
    assert blob_path(raster).exists()

    # when a sweep runs within the grace (the purge's own hooks may be running), then one after it
    within = sweep(timezone.now(), django_capture_on_commit_callbacks)
    assert blob_path(raster).exists()
    later = sweep(timezone.now() + purged_files.BLOB_DELETION_GRACE, django_capture_on_commit_callbacks)

    # then the later one deletes the file (before: no row named it, it decrypted under the photo's live key
    # until the photo's purge, and stayed on disk for good) and its row; the photo's original stays
    assert (within, later) == (COUNTS_ZERO, {**COUNTS_ZERO, "purged_files_deleted": 1})
    assert not blob_path(raster).exists()
    assert not BlobDeletion.objects.exists()
    asset.refresh_from_db()
    assert (asset.status, blob_path(asset.blob_name).exists()) == ("ready", True)


def test_a_deletion_row_naming_a_file_still_in_use_deletes_nothing(
    django_capture_on_commit_callbacks, caplog
):
    """A BlobDeletion row is written by a purge in the transaction that blanks the column naming its file: one
    naming a live photo's original or a live job's raster was written outside the lab (the app's database
    role, a DBA), to have the sweep delete a customer's photo. Before, it did."""
    # given a paid order's job with its raster, and rows naming its original and its raster, inserted by hand
    minilab()
    job = PrintJob.objects.get(order=print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])))
    original, raster = job.item.asset.blob_name, job.raster_blob
    BlobDeletion.objects.create(name=original, kind="photo", of=f"asset={job.item.asset_id}")
    BlobDeletion.objects.create(name=raster, kind="raster", of=f"job={job.pk}")

    # when a sweep runs past the grace
    counts = sweep(timezone.now() + purged_files.BLOB_DELETION_GRACE, django_capture_on_commit_callbacks)

    # then both files stay, with their rows, and each row is logged by ids
    assert counts == COUNTS_ZERO
    assert (blob_path(original).exists(), blob_path(raster).exists()) == (True, True)
    assert BlobDeletion.objects.count() == 2
    left = [r.getMessage() for r in caplog.records if "names a file still in use" in r.getMessage()]
    assert len(left) == 2 and not any(original in line or raster in line for line in left)


def test_a_photo_purge_killed_before_its_file_deletes_has_the_files_deleted_by_the_next_sweep(
    django_capture_on_commit_callbacks,
):
    # given a shipped order's photo purged (its original and its raster), its process killed after the commit
    order = shipped_order()
    assert order.shipped_at is not None
    asset = order.items.get().asset
    names = files_of(order)
    when = order.shipped_at + 31 * DAY
    cutoffs = retention_rules.Cutoffs.at(policy=retention_rules.RetentionPolicy.from_settings(), now=when)
    killed_after_commit(
        django_capture_on_commit_callbacks,
        lambda: photo_purge.asset_purge(
            asset_id=asset.pk, rule=retention_rules.RULE_SHIPPED, cutoffs=cutoffs
        ),
    )
    assert [blob_path(name).exists() for name in names] == [True, True]
    assert sorted(BlobDeletion.objects.values_list("name", "kind", "of")) == sorted(
        (name, "photo", f"asset={asset.pk}") for name in names
    )

    # when the next sweep runs
    result = sweep(when, django_capture_on_commit_callbacks)

    # then both files are gone, and their rows
    assert result == {**COUNTS_ZERO, "purged_files_deleted": 2}
    assert [blob_path(name).exists() for name in names] == [False, False]
    assert not BlobDeletion.objects.exists()


def test_a_killed_purge_s_file_the_sweep_cannot_delete_is_counted_and_tried_again(
    django_capture_on_commit_callbacks, caplog
):
    # given a raster purge killed after its commit, and its file cannot be deleted (a folder in its place)
    minilab()
    job = PrintJob.objects.get(order=print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])))
    path = blob_path(job.raster_blob)
    killed_after_commit(
        django_capture_on_commit_callbacks,
        lambda: raster_purge.raster_purge(job_id=job.pk, cutoff=timezone.now() + DAY),
    )
    path.unlink()
    path.mkdir()
    (path / "kept").write_bytes(b"x")
    failures = purged_files.PURGE_FILE_DELETE_FAILURES.labels(kind="raster")
    before = failures._value.get()
    when = timezone.now() + purged_files.BLOB_DELETION_GRACE

    # when a sweep runs
    with caplog.at_level("ERROR", logger=purged_files.logger.name):
        result = sweep(when, django_capture_on_commit_callbacks)

    # then the failure is counted and logged by ids and error type only, and the row is kept for the next
    assert result == COUNTS_ZERO
    assert failures._value.get() == before + 1
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == [
        f"purged file not deleted kind=raster job={job.pk} error=IsADirectoryError"
    ]
    assert BlobDeletion.objects.count() == 1

    # and once the file can go, the next sweep deletes it
    shutil.rmtree(path)
    path.write_bytes(b"x")
    assert sweep(when, django_capture_on_commit_callbacks) == {**COUNTS_ZERO, "purged_files_deleted": 1}
    assert (path.exists(), BlobDeletion.objects.exists()) == (False, False)


def stale_unpaid_orders_with_intents(count: int) -> list[Order]:
    customer = UserFactory.create()
    orders = [unpaid_order(customer, asset_for(customer)) for _ in range(count)]
    for number, order in enumerate(orders):
        Order.objects.filter(pk=order.pk).update(payment_intent_id=f"pi_stale_{number}")
    return orders


def a_photo_never_ordered() -> Asset:
    photo = asset_for(UserFactory.create())
    Asset.objects.filter(pk=photo.pk).update(created_at=timezone.now() - 2 * DAY)
    return photo


def fake_clock(monkeypatch) -> list[float]:
    """The sweep's clock (time.monotonic), moved on only by the test; the task's soft time limit (840 s,
    workers/privacy_tasks.py) raised at a Stripe read once the clock passed it, as the worker would."""
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the module retention reads it from
    return clock


def intent_reads(monkeypatch, clock: list[float], *, answer: dict[str, object] | None) -> list[str]:
    """Each read of a PaymentIntent (its order's ref) costs STRIPE_TIMEOUT_SECONDS (10 s) of the clock."""
    asked: list[str] = []

    def intent_read(order: Order) -> dict[str, object] | None:
        if clock[0] >= 840:
            raise SoftTimeLimitExceeded()
        asked.append(order.ref)
        clock[0] += 10.0
        return answer

    monkeypatch.setattr(unpaid_expiry, "_intent_read", intent_read)
    return asked


def test_a_stripe_that_does_not_answer_is_asked_once_a_sweep_and_the_purges_still_run(monkeypatch):
    # given 90 stale unpaid orders with a PaymentIntent each, a photo never ordered, and Stripe stalled
    orders = stale_unpaid_orders_with_intents(90)
    photo = a_photo_never_ordered()
    clock = fake_clock(monkeypatch)
    asked = intent_reads(monkeypatch, clock, answer=None)

    # when the sweep runs
    result = retention.retention_sweep(now=timezone.now() + 9 * DAY)

    # then Stripe is asked once, the orders are left to the next sweep, and the photo is purged (before: each
    # order was read in turn, 10 s each, and the task's time limit ended the sweep before any purge)
    assert asked == [orders[0].ref]
    assert clock[0] == 10.0
    assert result == {**COUNTS_ZERO, retention_rules.RULE_NEVER_ORDERED: 1, "orders_left_stripe_silent": 89}
    assert set(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True)) == {
        "awaiting_payment"
    }
    assert Asset.objects.get(pk=photo.pk).status == "purged"


def test_a_slow_stripe_stops_the_unpaid_order_expiry_at_its_share_of_the_budget(monkeypatch):
    # given 90 stale unpaid orders whose intents Stripe answers (none exists) in 10 s each, and a photo never
    # ordered
    orders = stale_unpaid_orders_with_intents(90)
    photo = a_photo_never_ordered()
    clock = fake_clock(monkeypatch)
    asked = intent_reads(monkeypatch, clock, answer={})

    # when the sweep runs
    result = retention.retention_sweep(now=timezone.now() + 9 * DAY)

    # then the expiry stops between its orders once its share of the budget (600 s among six rules) is spent,
    # and the photo rules run (before: the whole first batch was read, past the task's time limit)
    assert asked == [order.ref for order in orders[:10]]
    assert result == {
        **COUNTS_ZERO,
        "orders_expired": 10,
        retention_rules.RULE_UNPAID: 10,
        retention_rules.RULE_NEVER_ORDERED: 1,
        "work_left": 80,
    }
    assert Asset.objects.get(pk=photo.pk).status == "purged"


def test_a_raster_cut_short_after_its_magic_ends_no_sweep_and_is_logged_by_ids(
    django_capture_on_commit_callbacks, caplog
):
    """A blob cut short right after its magic made the cipher raise ValueError (a nonce under 8 bytes), which
    escaped the purge and ended the sweep; rows go oldest first, so every hourly sweep after it ended at the
    same photo, and nothing behind it (the other rules, the chores) ever ran."""
    # given an order shipped 31 days ago whose raster file was cut short after the blob's magic, and a photo
    # never ordered, due under a rule after it
    order = shipped_order()
    job = PrintJob.objects.get(order=order)
    blob_path(job.raster_blob).write_bytes(b"PLB1abc")
    asset = order.items.get().asset
    never = a_photo_never_ordered()

    # when the sweep runs
    with caplog.at_level("ERROR"):
        result = sweep(timezone.now() + 31 * DAY, django_capture_on_commit_callbacks)

    # then it returns, both photos are purged, and the raster that does not decrypt is left and logged by ids
    assert result == {**COUNTS_ZERO, retention_rules.RULE_SHIPPED: 1, retention_rules.RULE_NEVER_ORDERED: 1}
    assert [Asset.objects.get(pk=photo.pk).status for photo in (asset, never)] == ["purged", "purged"]
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == [
        f"raster file kept: not this photo's raster asset={asset.pk} job={job.pk}"
    ]


def test_a_row_that_raises_is_counted_logged_and_left_and_the_rest_of_the_sweep_runs(
    django_capture_on_commit_callbacks, caplog, monkeypatch
):
    """One row whose purge raises something no rule foresees no longer ends the sweep: it is logged at ERROR
    by rule, id and error type, counted (`rows_failed`, and in `work_left`: the sweep is behind on the board
    and in printlab_sweeps_behind until a run gets through it), and the rest of its batch, the later rules and
    the chores run."""
    # given two photos never ordered, the older one's purge raising, a printed raster due, and a failed
    # sign-in of no account past its 7 days
    customer = UserFactory.create()
    bad, good = asset_for(customer), asset_for(customer)
    Asset.objects.filter(pk=good.pk).update(created_at=bad.created_at + timedelta(seconds=1))
    minilab()
    job = PrintJob.objects.get(order=print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])))
    when = timezone.now() + 8 * DAY
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.SIGN_IN_FAILED, channel=SecurityEvent.Channel.API, created_at=when - 8 * DAY
    )
    real_purge = photo_purge.asset_purge

    def purge(*, asset_id, **arguments):
        if asset_id == bad.pk:
            raise RuntimeError(f"unforeseen, its text naming {customer.email}")
        return real_purge(asset_id=asset_id, **arguments)

    monkeypatch.setattr(retention, "asset_purge", purge)

    # when the sweep runs
    with caplog.at_level("ERROR", logger=retention.logger.name):
        result = sweep(when, django_capture_on_commit_callbacks)

    # then the row is counted and left for the next sweep, and everything else is done
    assert result == {
        **COUNTS_ZERO,
        retention_rules.RULE_NEVER_ORDERED: 1,
        retention_rules.RULE_PRINTED_RASTER: 1,
        "unknown_account_events_deleted": 1,
        "rows_failed": 1,
        "work_left": 1,
    }
    assert [Asset.objects.get(pk=photo.pk).status for photo in (bad, good)] == ["ready", "purged"]
    assert PrintJob.objects.get(pk=job.pk).raster_blob == ""
    [line] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert line.startswith(
        f"retention row failed, left for the next sweep rule=never_ordered id={bad.pk} error=RuntimeError at="
    )
    assert customer.email not in line


def test_the_task_s_soft_time_limit_at_a_row_still_ends_the_sweep(monkeypatch):
    # given a photo never ordered whose purge is under way when the task's soft time limit (840 s) is raised
    a_photo_never_ordered()

    def purge(**_):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(retention, "asset_purge", purge)

    # then the sweep ends there, as the worker ends it: it is out of time, not the row at fault
    with pytest.raises(SoftTimeLimitExceeded):
        retention.retention_sweep(now=timezone.now() + 9 * DAY)


def test_the_files_of_more_killed_purges_than_a_batch_are_all_deleted_in_one_sweep(
    django_capture_on_commit_callbacks, settings
):
    # given three printed jobs' raster purges that committed, each process killed before deleting its file,
    # and batches of two
    settings.RETENTION_BATCH = 2
    minilab()
    order = print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1)] * 3))
    jobs = list(PrintJob.objects.filter(order=order))
    rasters = [job.raster_blob for job in jobs]
    assert len(set(rasters)) == 3
    for job in jobs:
        killed_after_commit(
            django_capture_on_commit_callbacks,
            lambda job=job: raster_purge.raster_purge(job_id=job.pk, cutoff=timezone.now() + DAY),
        )

    # when one sweep runs after the grace
    result = sweep(timezone.now() + purged_files.BLOB_DELETION_GRACE, django_capture_on_commit_callbacks)

    # then it deletes all three, a batch after another (not one batch a run)
    assert result == {**COUNTS_ZERO, "purged_files_deleted": 3}
    assert not BlobDeletion.objects.exists()
    assert [blob_path(name).exists() for name in rasters] == [False, False, False]


@pytest.mark.usefixtures("stripe_api")
def test_unpaid_orders_whose_intent_stripe_does_not_know_expire_in_one_run():
    """Stripe's 404 for an intent is an answer (no money can have moved through it), not Stripe being silent:
    were it taken for silence, the first order would be left and Stripe not asked about the others."""
    # given two stale unpaid orders whose PaymentIntents Stripe (localstripe) has never heard of
    customer = UserFactory.create()
    orders = [unpaid_order(customer, asset_for(customer)) for _ in range(2)]
    for order, intent in zip(orders, ("pi_does_not_exist", "pi_never_made_either"), strict=True):
        Order.objects.filter(pk=order.pk).update(payment_intent_id=intent)

    # when the unpaid orders expire
    expired = unpaid_expiry.orders_expire_unpaid(before=timezone.now() + 8 * DAY, limit=10)

    # then both are cancelled in this run
    assert expired == 2
    assert list(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True)) == [
        "cancelled",
        "cancelled",
    ]


def test_a_job_cancelled_while_its_order_goes_on_has_its_raster_purged_7_days_after_its_cancel(
    django_capture_on_commit_callbacks,
):
    # given a reprint rasterized, then cancelled as not needed, while its order goes on (ready to pack)
    from lab.production import actions, rasterizing, reprints
    from tests.builders import person, ready_to_pack_order

    minilab()
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    technician = person("technician")
    reprint = reprints.job_reprint(
        job_id=PrintJob.objects.get(order=order).pk, actor=technician, reason="damaged", copies=1
    )
    assert rasterizing.print_job_rasterize(job_id=reprint.pk, worker="retention-test") == "ready"
    reprint = actions.job_cancel(job_id=reprint.pk, actor=technician, note="not needed after all")
    raster = reprint.raster_blob
    assert (reprint.status, blob_path(raster).exists()) == ("cancelled", True)

    # when sweeps run just before and 7 days after the cancel
    early = sweep(reprint.updated_at + 7 * DAY - timedelta(seconds=1), django_capture_on_commit_callbacks)
    result = sweep(reprint.updated_at + 7 * DAY, django_capture_on_commit_callbacks)

    # then its raster goes under the printed-raster rule, and the order's photo stays
    assert (early, result) == (COUNTS_ZERO, {**COUNTS_ZERO, retention_rules.RULE_PRINTED_RASTER: 1})
    assert (PrintJob.objects.get(pk=reprint.pk).raster_blob, blob_path(raster).exists()) == ("", False)
    assert order.items.get().asset.status == "ready"


def test_a_failed_url_photo_never_ordered_is_purged_with_its_url():
    # given a URL photo whose fetch failed 8 days ago, never ordered: nothing of it but its row and its URL
    photo = Asset.objects.create(
        owner=UserFactory.create(),
        status=Asset.Status.FAILED,
        source_url="https://photos.example.org/wilhelmina/beach.jpg",
        failure_code="url_fetch_failed",
        failure_message="The photo could not be fetched from its URL.",
        created_at=timezone.now() - 8 * DAY,
    )

    # when the sweep runs
    result = retention.retention_sweep(now=timezone.now())

    # then the never-ordered rule purges it, its URL (which can name the customer) with it
    assert result == {**COUNTS_ZERO, retention_rules.RULE_NEVER_ORDERED: 1}
    photo.refresh_from_db()
    assert (photo.status, photo.source_url, photo.failure_message) == ("purged", "", "")
