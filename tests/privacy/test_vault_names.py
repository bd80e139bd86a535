"""The vault builds a path only from a blob name it makes itself: a name written into a row by hand (an
absolute path, a `..`) is neither deleted by a purge nor read."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.customer_data import retention
from lab.orders.models import Asset, Order
from lab.orders.states import OrderStatus
from lab.privacy.vault import InvalidBlobName, vault_delete, vault_read
from lab.production.models import PrintJob
from tests.builders import asset_for, blob_path, released_order

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
        purged = retention.asset_purge(asset_id=photo.pk, rule=retention.RULE_NEVER_ORDERED, cutoffs=None)

    # Then the purge is done, and no file outside the store is gone
    assert purged is True
    assert [callback.func for callback in callbacks] == [vault_delete]
    assert [file.read_text() for file in outside] == ["checkpoint", "checkpoint"]
    photo.refresh_from_db()
    assert photo.status == Asset.Status.PURGED
    assert photo.blob_name == ""
    assert photo.data_key is not None and photo.data_key.is_destroyed
    # (the original the row named before is left: nothing names it now, and its key is destroyed)
    assert stored.exists()


def test_a_raster_blob_name_outside_the_store_is_not_deleted_by_the_purge(
    outside, django_capture_on_commit_callbacks
):
    # Given a shipped order's job whose raster name was pointed, in the database alone, outside the store
    order = released_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SHIPPED)
    job = PrintJob.objects.get(order=order)
    PrintJob.objects.filter(pk=job.pk).update(raster_blob=str(outside[1]))
    photo_name = job.item.asset.blob_name

    # When its photo is purged
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        purged = retention.asset_purge(
            asset_id=job.item.asset_id, rule=retention.RULE_NEVER_ORDERED, cutoffs=None
        )

    # Then the file stays, and the job names no raster any more
    assert purged is True
    # (the original's deletion and the raster's ran)
    assert [callback.keywords.get("name") for callback in callbacks if callback.func is vault_delete] == [
        photo_name,
        str(outside[1]),
    ]
    assert outside[1].read_text() == "checkpoint"
    job.refresh_from_db()
    assert job.raster_blob == ""


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
