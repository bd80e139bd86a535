"""Master key rotation: `manage.py rotate_master_key` re-wraps data keys only; photos and rasters keep their
bytes and files, and decrypt afterwards with nothing but the new master key configured."""

from __future__ import annotations

import base64
import hashlib
import io
import secrets

import pytest
from django.core.management import CommandError, call_command

from lab.customer_data.photo_purge import asset_purge
from lab.customer_data.retention_rules import RULE_NEVER_ORDERED
from lab.orders.models import Asset
from lab.privacy.crypto import DecryptionFailed
from lab.privacy.management.commands import rotate_master_key
from lab.privacy.models import DataKey
from lab.privacy.vault import master_key_rotate, vault_read, vault_write
from tests.builders import UserFactory, asset_for, blob_path

pytestmark = pytest.mark.django_db


def master(key_id: str) -> str:
    return f"{key_id}:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def snapshot(names: list[str]) -> list[tuple[bytes, int, int]]:
    return [
        (blob_path(name).read_bytes(), blob_path(name).stat().st_mtime_ns, blob_path(name).stat().st_ino)
        for name in names
    ]


def test_rotation_rewraps_keys_and_photos_decrypt_with_only_the_new_key(settings):
    old, new = master("old"), master("new")
    settings.LAB_MASTER_KEYS = [old]
    customer = UserFactory.create()
    photos = [asset_for(customer, width=1200, height=800), asset_for(customer, width=900, height=1200)]
    raster = vault_write(data_key=photos[0].data_key, plaintext=b"raster bytes", purpose="raster")
    purged = asset_for(customer)
    asset_purge(asset_id=purged.pk, rule=RULE_NEVER_ORDERED, cutoffs=None)
    names = [photo.blob_name for photo in photos] + [raster]
    before = snapshot(names)

    settings.LAB_MASTER_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_master_key", stdout=out)

    assert out.getvalue() == (
        "re-wrapped 2 data keys under master key 'new'. Keep the old master keys in LAB_MASTER_KEY: a"
        " process still holding one wraps new photos' keys under it; restart every web and worker process on"
        " every host that was started before the new key was put first, then run this again; the old keys may"
        " go only after a run that re-wraps none\n"
    )
    assert sorted((key.master_key_id, key.is_destroyed) for key in DataKey.objects.all()) == [
        ("new", False),
        ("new", False),
        ("old", True),  # the purged photo's key stays destroyed: there is nothing to re-wrap
    ]
    settings.LAB_MASTER_KEYS = [new]
    rotated = [Asset.objects.select_related("data_key").get(pk=photo.pk) for photo in photos]
    for photo in rotated:
        data = vault_read(data_key=photo.data_key, name=photo.blob_name, purpose="original")
        assert hashlib.sha256(data).hexdigest() == photo.sha256
    assert vault_read(data_key=rotated[0].data_key, name=raster, purpose="raster") == b"raster bytes"
    assert snapshot(names) == before  # same bytes, same mtime, same inode: the files were not touched


def test_rotation_again_has_nothing_to_do(settings):
    settings.LAB_MASTER_KEYS = [master("k1")]
    asset_for(UserFactory.create())
    settings.LAB_MASTER_KEYS = [master("k2"), *settings.LAB_MASTER_KEYS]
    call_command("rotate_master_key", stdout=io.StringIO())

    out = io.StringIO()
    call_command("rotate_master_key", stdout=out)

    assert out.getvalue().startswith("re-wrapped 0 data keys under master key 'k2';")


def test_without_the_old_key_the_photos_cannot_be_read_and_rotation_stops(settings):
    old, new = master("old"), master("new")
    settings.LAB_MASTER_KEYS = [old]
    photo = asset_for(UserFactory.create())
    settings.LAB_MASTER_KEYS = [new]  # the operator dropped the old key before rotating

    with pytest.raises(DecryptionFailed):
        vault_read(data_key=photo.data_key, name=photo.blob_name, purpose="original")
    with pytest.raises(CommandError, match="Keep every old master key in LAB_MASTER_KEY"):
        call_command("rotate_master_key", stdout=io.StringIO())

    assert photo.data_key_id is not None
    assert DataKey.objects.get(pk=photo.data_key_id).master_key_id == "old"


def test_a_stale_process_photo_after_a_run_is_rewrapped_and_the_old_key_may_go_after_a_clean_run(settings):
    old, new = master("old"), master("new")
    settings.LAB_MASTER_KEYS = [old]
    asset_for(UserFactory.create())
    settings.LAB_MASTER_KEYS = [new, old]  # the new key put first; the command run with it
    first = io.StringIO()
    call_command("rotate_master_key", stdout=first)
    settings.LAB_MASTER_KEYS = [old]  # a process started before the edit, not restarted, takes an upload
    late = asset_for(UserFactory.create())
    settings.LAB_MASTER_KEYS = [new, old]

    second = io.StringIO()
    call_command("rotate_master_key", stdout=second)
    third = io.StringIO()
    call_command("rotate_master_key", stdout=third)

    for kept in (first, second):
        assert "can be removed" not in kept.getvalue()
        assert "restart every web and worker process" in kept.getvalue()
    assert second.getvalue().startswith("re-wrapped 1 data keys under master key 'new'. Keep the old master")
    assert third.getvalue() == (
        "re-wrapped 0 data keys under master key 'new'; no live data key uses another master key, so if"
        " every web and worker process on every host was restarted after the new key was put first, the old"
        " ones can be removed from LAB_MASTER_KEY\n"
    )
    settings.LAB_MASTER_KEYS = [new]  # the old key dropped only now
    late = Asset.objects.select_related("data_key").get(pk=late.pk)
    assert late.data_key is not None
    assert late.data_key.master_key_id == "new"
    data = vault_read(data_key=late.data_key, name=late.blob_name, purpose="original")
    assert hashlib.sha256(data).hexdigest() == late.sha256


def test_a_run_during_which_a_stale_process_wrapped_a_key_under_the_old_one_does_not_let_it_go(
    settings, monkeypatch
):
    # given every data key under the new master key already (an earlier run re-wrapped them all)
    old, new = master("old"), master("new")
    settings.LAB_MASTER_KEYS = [new, old]
    asset_for(UserFactory.create())

    def rotate_while_a_stale_process_uploads() -> int:
        rewrapped = master_key_rotate()
        # ... and during the run, a process started before the new key was put first takes an upload
        settings.LAB_MASTER_KEYS = [old]
        asset_for(UserFactory.create())
        settings.LAB_MASTER_KEYS = [new, old]
        return rewrapped

    monkeypatch.setattr(rotate_master_key, "master_key_rotate", rotate_while_a_stale_process_uploads)

    # when the command runs, then it re-wrapped none but does not say the old key may go: a key still uses it
    with pytest.raises(CommandError, match="re-wrapped 0 data keys, but 1 still use an old master key"):
        call_command("rotate_master_key", stdout=io.StringIO())
    assert sorted(DataKey.objects.values_list("master_key_id", flat=True)) == ["new", "old"]
