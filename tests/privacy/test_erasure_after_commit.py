"""What an erasure does after its commit (deleting its photos' files, its mail files' messages) cannot undo
it nor change its answer: a file that cannot be deleted is logged by ids and error type, and the customer
still gets their receipts. Before, such a failure answered 500 after the erasure was committed."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import pytest

from lab.customer_data import erasure
from lab.customer_data.models import PrivacyReceipt
from lab.orders.models import Asset
from lab.privacy.vault import _blob_path
from tests.builders import PERSON, PERSON_PASSWORD, register, upload

pytestmark = pytest.mark.django_db(transaction=True)  # the hooks run at a real COMMIT


def _receipts_of_the_answer(answer: dict[str, object]) -> list[tuple[str, str, str]]:
    receipts = answer["receipts"]
    assert isinstance(receipts, list)
    return [(receipt["id"], receipt["order_ref"], receipt["reason"]) for receipt in receipts]


def _receipts_issued() -> list[tuple[str, str, str]]:
    return [
        (str(receipt.pk), receipt.order_ref, receipt.reason)
        for receipt in PrivacyReceipt.objects.order_by("created_at", "pk")
    ]


def test_an_erasure_whose_photo_file_cannot_be_deleted_still_answers_with_its_receipts(api, caplog):
    # given a customer's photo whose file became a directory holding a file (a restore gone wrong)
    register(api)
    asset = Asset.objects.get(pk=upload(api))
    blob = _blob_path(asset.blob_name)
    blob.unlink()
    blob.mkdir()
    (blob / "left-behind").write_bytes(b"x")
    caplog.set_level(logging.INFO)

    # when the customer erases their account
    response = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")

    # then the erasure answers with its receipt (the photos in no order), the directory left as it was
    assert response.status_code == 200, response.content
    assert _receipts_of_the_answer(response.json()) == _receipts_issued()
    assert [reason for _, _, reason in _receipts_issued()] == ["erased"]
    assert (Asset.objects.get(pk=asset.pk).status, (blob / "left-behind").exists()) == ("purged", True)
    # and no log line names the file
    assert str(blob.parent) not in caplog.text


def test_an_erasure_whose_mail_files_cannot_be_rewritten_still_answers_with_its_receipts(
    api, caplog, mailoutbox, monkeypatch, tmp_path: Path
):
    # given a customer with a photo, and a mail folder the lab cannot write any more (a full or read-only
    # disk: the tests run as root, who writes anywhere, so the failure is the function's)
    register(api)
    upload(api)
    unwritable = tmp_path / "mail" / PERSON.email

    def mail_files_erase(*, email: str, earlier_email_digests: Collection[str] = ()) -> int:
        raise PermissionError(13, "Permission denied", str(unwritable))

    monkeypatch.setattr(erasure, "mail_files_erase", mail_files_erase)
    caplog.set_level(logging.INFO)

    # when the customer erases their account
    response = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")

    # then the erasure answers with its receipt, mailed to the address it had
    assert response.status_code == 200, response.content
    assert _receipts_of_the_answer(response.json()) == _receipts_issued()
    assert [message.to for message in mailoutbox] == [[PERSON.email]]
    # and the failure is logged by its error type, never the path (nor the address it holds)
    failures = [record for record in caplog.records if "mail files" in record.getMessage()]
    assert [(record.levelname, record.getMessage()) for record in failures] == [
        ("ERROR", "mail files not erased after an erasure error=PermissionError")
    ]
    logged = caplog.text.lower()
    assert [text for text in (str(unwritable).lower(), PERSON.email.lower()) if text in logged] == []
