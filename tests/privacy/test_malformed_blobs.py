"""Bytes that are not a whole sealed blob or wrapped key (a file cut short right after its magic, a column
overwritten) are DecryptionFailed, as bytes that do not authenticate are. Before, a nonce under 8 bytes made
the cipher raise ValueError, which no caller handled: the retention sweep ended at that photo every hour, and
the photo gate answered 500."""

from __future__ import annotations

import pytest

from lab.privacy import crypto
from lab.privacy.models import DataKey
from lab.privacy.vault import vault_read
from tests.builders import UserFactory, asset_for, blob_path

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    "blob",
    [
        b"PLB1",
        b"PLB1abc",  # a nonce of 3 bytes: the cipher's ValueError
        b"PLB1" + bytes(7),  # the longest the cipher refused (it takes nonces of 8 bytes and more)
    ],
)
def test_a_blob_cut_short_after_its_magic_does_not_decrypt(blob):
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt_blob(data_key=crypto.new_data_key(), blob=blob, aad=b"name:original")


@pytest.mark.parametrize("length", [0, 5])
def test_a_wrapped_key_too_short_to_be_one_does_not_unwrap(length):
    master = crypto.current_master_key()

    with pytest.raises(crypto.DecryptionFailed):
        crypto.unwrap_data_key(wrapped=bytes(range(length)), master=master, binding=b"datakey:1")


def test_a_wrapped_key_that_authenticates_but_is_no_data_key_does_not_unwrap():
    # a 5-byte "key" wrapped under the master key: its tag holds, and AESGCM refused it with ValueError
    master = crypto.current_master_key()
    wrapped = crypto.wrap_data_key(data_key=b"short", master=master, binding=b"datakey:1")

    with pytest.raises(crypto.DecryptionFailed):
        crypto.unwrap_data_key(wrapped=wrapped, master=master, binding=b"datakey:1")


def test_no_blob_decrypts_under_a_data_key_of_the_wrong_length():
    data_key = crypto.new_data_key()
    blob = crypto.encrypt_blob(data_key=data_key, plaintext=b"photo", aad=b"name:original")

    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt_blob(data_key=data_key[:5], blob=blob, aad=b"name:original")


@pytest.mark.django_db
def test_a_data_key_row_cut_short_does_not_unwrap():
    # given a photo whose wrapped key was cut to 5 bytes in the database
    photo = asset_for(UserFactory.create())
    assert photo.data_key is not None
    DataKey.objects.filter(pk=photo.data_key.pk).update(wrapped_key=b"\x00" * 5)

    with pytest.raises(crypto.DecryptionFailed):
        vault_read(
            data_key=DataKey.objects.get(pk=photo.data_key.pk), name=photo.blob_name, purpose="original"
        )


@pytest.mark.django_db
def test_the_owner_s_download_of_a_photo_cut_short_is_410_image_unavailable(api):
    # given a customer's photo whose file was cut short right after the blob's magic
    customer = UserFactory.create()
    api.force_authenticate(customer)
    photo = asset_for(customer)
    blob_path(photo.blob_name).write_bytes(b"PLB1abc")

    # when the customer downloads it
    response = api.get(f"/api/v1/assets/{photo.pk}/content")

    # then the answer is the one for a photo that cannot be read (before: the cipher's ValueError, a 500)
    assert (response.status_code, response["Content-Type"], response.json()["code"]) == (
        410,
        PROBLEM,
        "image_unavailable",
    )
