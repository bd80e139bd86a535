"""A photo's row re-pointed in the database alone hands out nothing (lab/orders/models.py: the asset seal).

As a database administrator with a customer account of their own would try it, in SQL: put another
customer's key and file under their own photo and download it as its owner; make themselves the owner of
another customer's photo; point their own paid order's item at another customer's photo and wait for the
print, with their job lent to the other customer's order while it prints and given back to pack. None of it
reads the other photo's bytes or counts its prints.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from lab.accounts.models import User
from lab.lib.errors import DomainError
from lab.orders.models import Asset
from lab.packing import station
from lab.production import rasterizing, routing, submission
from lab.production.models import PrintJob
from tests.builders import (
    WORKER,
    UserFactory,
    hotfolder_printer,
    order_for,
    paid_order,
    person,
    ready_to_pack_order,
)
from tests.builders.orders import asset_for
from tests.builders.packing_station import station_token
from tests.support.dba import dba

pytestmark = pytest.mark.django_db


def owner_download(user: User, asset: Asset) -> tuple[int, str]:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(f"/api/v1/assets/{asset.pk}/content")
    code = response.json()["code"] if response["Content-Type"].startswith("application/") else "image"
    return response.status_code, code


def test_another_photos_key_and_file_under_ones_own_photo_are_not_read():
    dba_account, victim = UserFactory.create(), UserFactory.create()
    own, theirs = asset_for(dba_account), asset_for(victim, width=64, height=48)
    assert owner_download(dba_account, own) == (200, "image")

    dba(
        "UPDATE orders_asset SET data_key_id = t.data_key_id, blob_name = t.blob_name"
        " FROM orders_asset t WHERE t.id = %s AND orders_asset.id = %s",
        str(theirs.pk),
        str(own.pk),
    )

    assert owner_download(dba_account, own) == (410, "image_unavailable")


def test_another_customers_photo_made_ones_own_is_not_read():
    dba_account, victim = UserFactory.create(), UserFactory.create()
    theirs = asset_for(victim)

    dba("UPDATE orders_asset SET owner_id = %s WHERE id = %s", dba_account.pk, str(theirs.pk))

    assert owner_download(dba_account, theirs) == (410, "image_unavailable")


def test_an_order_pointed_at_another_customers_photo_prints_nothing_of_it():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = paid_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    theirs = asset_for(UserFactory.create())
    routing.order_release(order_id=order.pk)

    dba("UPDATE orders_orderitem SET asset_id = %s WHERE order_id = %s", str(theirs.pk), order.pk)

    job = PrintJob.objects.get()
    assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "failed"
    job.refresh_from_db()
    assert (job.status, job.failure_code, job.raster_blob) == ("failed", "photo_changed_outside_the_lab", "")


def test_storing_a_url_photo_whose_owner_was_changed_in_the_database_does_not_seal_the_change():
    dba_account, victim = UserFactory.create(), UserFactory.create()
    pending = Asset.objects.create(owner=victim, source_url="https://photos.example/p.jpg", status="pending")
    dba("UPDATE orders_asset SET owner_id = %s WHERE id = %s", dba_account.pk, str(pending.pk))

    stored = Asset.objects.get(pk=pending.pk)
    stored.blob_name, stored.status = "b" * 32, "ready"
    stored.save()  # as the fetch stores the photo it read

    assert not Asset.objects.get(pk=pending.pk).is_sealed


def test_an_order_pointed_at_another_customers_photo_and_its_raster_sends_nothing_of_it():
    # The rasterizer's check alone left the send open: the victim's raster, named on the job, decrypts under
    # the victim's photo key once the item points at that photo.
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    victim_order, own_order = (paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]) for _ in range(2))
    for order in (victim_order, own_order):
        routing.order_release(order_id=order.pk)
    victim_job, own_job = (PrintJob.objects.get(order=order) for order in (victim_order, own_order))
    assert rasterizing.print_job_rasterize(job_id=victim_job.pk, worker=WORKER) == "ready"
    assert rasterizing.print_job_rasterize(job_id=own_job.pk, worker=WORKER) == "ready"
    victim_job.refresh_from_db()

    dba(
        "UPDATE orders_orderitem SET asset_id = %s WHERE order_id = %s",
        str(victim_job.item.asset_id),
        own_order.pk,
    )
    dba("UPDATE production_printjob SET raster_blob = %s WHERE id = %s", victim_job.raster_blob, own_job.pk)

    assert submission.print_job_submit(job_id=own_job.pk, worker=WORKER) == "failed"
    own_job.refresh_from_db()
    assert (own_job.status, own_job.failure_code) == ("failed", "photo_changed_outside_the_lab")
    assert not list((Path(settings.HOTFOLDER_ROOT) / printer.target).rglob("*.jpg"))


def released_pair() -> tuple[PrintJob, PrintJob]:
    """A victim's and a database administrator's paid orders of one 4x6 print each, released: their jobs."""
    victim_order, own_order = (paid_order(lines=[("PRINT-4X6-LUSTRE", 1)]) for _ in range(2))
    for order in (victim_order, own_order):
        routing.order_release(order_id=order.pk)
    victim_job, own_job = (PrintJob.objects.get(order=order) for order in (victim_order, own_order))
    return victim_job, own_job


def lend_to_the_victims_order(own_job: PrintJob, victim_job: PrintJob) -> None:
    """The item of one's own job pointed at the victim's photo, and the job itself at the victim's order, so
    that the photo is the job's order's; the job goes back to its own order once printed."""
    dba(
        "UPDATE orders_orderitem SET asset_id = %s WHERE id = %s",
        str(victim_job.item.asset_id),
        own_job.item_id,
    )
    dba("UPDATE production_printjob SET order_id = %s WHERE id = %s", victim_job.order_id, own_job.pk)


def test_a_job_lent_to_the_victims_order_with_its_item_on_the_victims_photo_is_not_rasterized():
    hotfolder_printer("minilab", sizes=["4x6"])
    victim_job, own_job = released_pair()

    lend_to_the_victims_order(own_job, victim_job)

    assert rasterizing.print_job_rasterize(job_id=own_job.pk, worker=WORKER) == "failed"
    own_job.refresh_from_db()
    assert (own_job.status, own_job.failure_code, own_job.raster_blob) == (
        "failed",
        "photo_changed_outside_the_lab",
        "",
    )


def test_a_job_lent_to_the_victims_order_with_the_victims_raster_sends_nothing():
    printer = hotfolder_printer("minilab", sizes=["4x6"])
    victim_job, own_job = released_pair()
    for job in (victim_job, own_job):
        assert rasterizing.print_job_rasterize(job_id=job.pk, worker=WORKER) == "ready"
    victim_job.refresh_from_db()

    lend_to_the_victims_order(own_job, victim_job)
    dba("UPDATE production_printjob SET raster_blob = %s WHERE id = %s", victim_job.raster_blob, own_job.pk)

    assert submission.print_job_submit(job_id=own_job.pk, worker=WORKER) == "failed"
    own_job.refresh_from_db()
    assert (own_job.status, own_job.failure_code) == ("failed", "photo_changed_outside_the_lab")
    assert not list((Path(settings.HOTFOLDER_ROOT) / printer.target).rglob("*.jpg"))


def test_a_printed_job_moved_to_another_order_is_not_counted_for_its_item():
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 2)])
    job = PrintJob.objects.get(order=order)
    dba(
        "UPDATE production_printjob SET order_id = %s WHERE id = %s",
        order_for(UserFactory.create()).pk,
        job.pk,
    )

    packer = person("packer")
    seen = station_token(order, packer=packer, position=1)

    with pytest.raises(DomainError) as refused:
        station.item_confirm(code=order.ref, position=1, copies_counted=2, actor=packer, seen=seen)

    assert refused.value.code == "copies_not_printed"
    job.refresh_from_db()
    assert job.copies_verified == 0
