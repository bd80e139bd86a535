"""The vault builds a path only from a blob name it makes itself: a name written into a row by hand (an
absolute path, a `..`) is neither deleted by a purge nor read."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from lab.customer_data import photo_purge, purged_files, raster_purge, retention_rules
from lab.orders.models import Asset, Order
from lab.orders.states import OrderStatus
from lab.privacy.vault import InvalidBlobName, vault_delete, vault_read
from lab.production.models import PrintJob
from tests.builders import (
    asset_for,
    blob_path,
    minilab,
    new_customer,
    paid_order,
    print_order,
    released_order,
)
from tests.support.dba import dba

pytestmark = pytest.mark.django_db


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[list[Path]]:
    """Files beside the photo store, as an audit witness would be: the one `../outside.txt` reaches from the
    store's blobs/ (MEDIA_ROOT is tmp_path/storage: blobs/../../outside.txt), and one with an absolute path
    short enough for a blob name's column."""
    with tempfile.TemporaryDirectory(prefix="w") as short:
        files = [tmp_path / "outside.txt", Path(short) / "outside.txt"]
        for file in files:
            file.write_text("checkpoint")
        yield files


@pytest.mark.parametrize("relative", [True, False], ids=["dot-dot", "absolute"])
def test_a_purge_leaves_a_file_outside_the_store_that_a_hand_edited_blob_name_points_at(
    outside, django_capture_on_commit_callbacks, relative
):
    # Given a photo whose row was pointed, in the database alone, at a file outside the store
    photo = asset_for(None)
    stored = blob_path(photo.blob_name)
    name = "../outside.txt" if relative else str(outside[1])
    Asset.objects.filter(pk=photo.pk).update(blob_name=name)

    # When it is purged (as an erasure purges it), with its file deletions run after the commit
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        purged = photo_purge.asset_purge(
            asset_id=photo.pk, rule=retention_rules.RULE_NEVER_ORDERED, cutoffs=None
        )

    # Then the purge is done, and no file outside the store is gone
    assert purged is True
    # (the row's seal no longer holds, so the purge deletes no file; the vault refuses the name all the same)
    assert callbacks == []
    vault_delete(name=name)
    assert [file.read_text() for file in outside] == ["checkpoint", "checkpoint"]
    photo.refresh_from_db()
    assert photo.status == Asset.Status.PURGED
    assert photo.blob_name == ""
    assert photo.data_key is not None and photo.data_key.is_destroyed
    # (the original the row named before is left: nothing names it now, and its key is destroyed)
    assert stored.exists()


def test_a_raster_blob_name_outside_the_store_is_not_deleted_by_the_purge(
    outside, django_capture_on_commit_callbacks, monkeypatch
):
    # Given a shipped order's job whose raster name was pointed, in the database alone, outside the store
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SHIPPED)
    job = PrintJob.objects.get(order=order)
    PrintJob.objects.filter(pk=job.pk).update(raster_blob=str(outside[1]))
    photo_name = job.item.asset.blob_name

    # When its photo is purged (the names its file deletions are given, recorded)
    deleted: list[str] = []

    def vault_delete_recorded(*, name: str) -> None:
        deleted.append(name)
        vault_delete(name=name)

    monkeypatch.setattr(purged_files, "vault_delete", vault_delete_recorded)
    with django_capture_on_commit_callbacks(execute=True):
        purged = photo_purge.asset_purge(
            asset_id=job.item.asset_id, rule=retention_rules.RULE_NEVER_ORDERED, cutoffs=None
        )

    # Then the file stays, and the job names no raster any more
    assert purged is True
    # (the original's deletion ran; the raster's name is not one of the photo's rasters, so it is not deleted,
    # and the vault refuses it all the same)
    assert set(deleted) == {photo_name}  # (its delete, and the confirm that tries again if it is still there)
    vault_delete(name=str(outside[1]))
    assert outside[1].read_text() == "checkpoint"
    job.refresh_from_db()
    assert job.raster_blob == ""


def test_a_purge_leaves_another_customers_photo_that_a_photos_row_was_pointed_at(
    django_capture_on_commit_callbacks,
):
    # Given a customer's photo, and a photo due for purge whose row a DBA pointed at the customer's file
    victim = asset_for(new_customer())
    decoy = asset_for(None)
    decoy_file = blob_path(decoy.blob_name)
    untouched = asset_for(None)
    dba("UPDATE orders_asset SET blob_name = %s WHERE id = %s", victim.blob_name, str(decoy.pk))

    # When both due photos are purged (their file deletions run after the commit)
    with django_capture_on_commit_callbacks(execute=True):
        for photo in (decoy, untouched):
            assert photo_purge.asset_purge(
                asset_id=photo.pk, rule=retention_rules.RULE_NEVER_ORDERED, cutoffs=None
            )

    # Then the customer's photo is still there and still reads (before, the purge deleted it)
    assert vault_read(data_key=victim.data_key, name=victim.blob_name, purpose="original")[:2] == b"\xff\xd8"
    # and the re-pointed photo is purged all the same: its key destroyed, so its own file reads no more
    decoy.refresh_from_db()
    assert (decoy.status, decoy.blob_name) == (Asset.Status.PURGED, "")
    assert decoy.data_key is not None and decoy.data_key.is_destroyed
    assert decoy_file.exists()  # (left: its row named another file; nothing names it now)
    # and a photo nobody touched has its file deleted, as ever
    assert not blob_path(untouched.blob_name).exists()


def printed_photo_jobs() -> tuple[Asset, list[PrintJob]]:
    """A shipped order's photo printed twice (two items, a job and a raster each)."""
    minilab()
    order = print_order(paid_order(lines=[("PRINT-4X6-LUSTRE", 1), ("PRINT-4X6-LUSTRE", 2)]))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SHIPPED, shipped_at=timezone.now())
    jobs = list(PrintJob.objects.filter(order=order).order_by("pk"))
    assert len(jobs) == 2 and all(blob_path(job.raster_blob).exists() for job in jobs)
    return jobs[0].item.asset, jobs


@pytest.mark.parametrize("pointed_at", ["another customer's photo", "its own photo's original"])
def test_a_raster_purge_leaves_a_photo_that_a_jobs_raster_was_pointed_at(
    django_capture_on_commit_callbacks, pointed_at
):
    # Given two printed jobs past the rasters' retention, one whose raster a DBA pointed at an original
    photo, (job, control) = printed_photo_jobs()
    victim = asset_for(new_customer()) if pointed_at == "another customer's photo" else photo
    own_raster = job.raster_blob
    dba("UPDATE production_printjob SET raster_blob = %s WHERE id = %s", victim.blob_name, job.pk)

    # When the rasters are purged
    with django_capture_on_commit_callbacks(execute=True):
        for each in (job, control):
            assert raster_purge.raster_purge(job_id=each.pk, cutoff=timezone.now() + timedelta(days=1))

    # Then the original is still there and still reads (before, the purge deleted it)
    assert vault_read(data_key=victim.data_key, name=victim.blob_name, purpose="original")[:2] == b"\xff\xd8"
    # and both jobs name no raster any more; the untouched job's raster file is deleted, as ever
    assert list(
        PrintJob.objects.filter(pk__in=[job.pk, control.pk]).values_list("raster_blob", flat=True)
    ) == [
        "",
        "",
    ]
    assert not blob_path(control.raster_blob).exists()
    assert blob_path(own_raster).exists()  # (left: its row named another file)


def test_a_photo_purge_leaves_a_photo_that_one_of_its_jobs_raster_was_pointed_at(
    django_capture_on_commit_callbacks, caplog
):
    # Given a shipped photo printed twice, one job's raster pointed by a DBA at another customer's photo
    photo, (job, control) = printed_photo_jobs()
    victim = asset_for(new_customer())
    dba("UPDATE production_printjob SET raster_blob = %s WHERE id = %s", victim.blob_name, job.pk)

    # When the shipped photo is purged
    with caplog.at_level(logging.INFO), django_capture_on_commit_callbacks(execute=True):
        assert photo_purge.asset_purge(asset_id=photo.pk, rule=retention_rules.RULE_SHIPPED, cutoffs=None)

    # Then the other customer's photo is still there and still reads (before, the purge deleted it)
    assert vault_read(data_key=victim.data_key, name=victim.blob_name, purpose="original")[:2] == b"\xff\xd8"
    # and the file kept is an alarm (a raster file gone already, after a restore, is not: the restore drill)
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "raster file" in r.getMessage()] == [
        ("ERROR", f"raster file kept: not this photo's raster asset={photo.pk} job={job.pk}")
    ]
    # and the purged photo's own files are deleted: its original and its untouched job's raster
    assert not blob_path(photo.blob_name).exists()
    assert not blob_path(control.raster_blob).exists()


@pytest.mark.parametrize(
    "name",
    [
        "../outside.txt",
        "/etc/hostname",
        "A" * 32,  # upper case: uuid4().hex never is
        "0" * 31,
        "0" * 32 + "/",
        "0" * 32 + ".tmp",
    ],
)
def test_vault_read_refuses_a_name_the_vault_never_makes(name):
    photo = asset_for(None)

    # (a FileNotFoundError, which the readers' callers take as a missing blob)
    with pytest.raises(InvalidBlobName):
        vault_read(data_key=photo.data_key, name=name, purpose="original")


def test_vault_read_still_reads_a_name_it_made():
    photo = asset_for(None)

    assert vault_read(data_key=photo.data_key, name=photo.blob_name, purpose="original")[:2] == b"\xff\xd8"


def test_a_purge_destroys_no_key_that_another_photos_row_names(django_capture_on_commit_callbacks):
    # Given a customer's photo, and a photo due for purge whose row a DBA pointed at the customer's key
    victim = asset_for(new_customer())
    decoy = asset_for(None)
    assert victim.data_key_id is not None
    dba("UPDATE orders_asset SET data_key_id = %s WHERE id = %s", victim.data_key_id, str(decoy.pk))

    # When the due photo is purged
    with django_capture_on_commit_callbacks(execute=True):
        assert photo_purge.asset_purge(
            asset_id=decoy.pk, rule=retention_rules.RULE_NEVER_ORDERED, cutoffs=None
        )

    # Then the customer's key is whole and their photo still reads (before, the purge shredded it)
    victim.refresh_from_db()
    assert victim.data_key is not None and not victim.data_key.is_destroyed
    assert vault_read(data_key=victim.data_key, name=victim.blob_name, purpose="original")[:2] == b"\xff\xd8"
