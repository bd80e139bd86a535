"""Erasures survive a database restore. A restore from a backup taken before a customer's erasure brought the
customer back in full (e-mail, name, address, sign-in, their old token, photo rows `ready` with live keys)
while they held a signed receipt saying they were erased: the erasure was recorded in the database alone.
Every erasure is now also appended, after its commit, to the erasure log outside the database
(LAB_ERASURE_LOG), and `manage.py erasures_reapply` erases again whom the restore brought back.

The restore is simulated by writing the customer's rows back as a snapshot taken before the erasure held them
(tests/builders/customers.py: rows_restore): pg_dump/pg_restore of the test database is too heavy here."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from rest_framework.test import APIClient

from lab.accounts.models import ApiToken, Consent, SecurityEvent, User
from lab.customer_data.erasure import account_erase
from lab.customer_data.models import ErasureLogPending, PrivacyReceipt
from lab.orders.models import Asset, IdempotencyKey, Order, OrderItem
from lab.privacy.models import DataKey
from tests.builders.customers import (
    PERSON,
    PERSON_PASSWORD,
    RowsSnapshot,
    database_text,
    guest_order_placed,
    register,
    rows_restore,
    rows_snapshot,
    upload,
)
from workers.privacy_tasks import erasure_log_sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def erasure_log(settings, tmp_path: Path) -> Path:
    """This test's own erasure log."""
    path = tmp_path / "erasure-log" / "erasures.log"
    settings.LAB_ERASURE_LOG = str(path)
    return path


def _customer_rows(user: User) -> RowsSnapshot:
    """What a backup taken now holds of the customer: the account, its tokens, sign-in events and consents,
    its photos and their data keys."""
    assets = Asset.objects.filter(owner=user)
    return rows_snapshot(
        [
            User.objects.filter(pk=user.pk),
            ApiToken.objects.filter(user=user),
            SecurityEvent.objects.filter(user=user),
            Consent.objects.filter(user=user),
            assets,
            DataKey.objects.filter(pk__in=assets.values("data_key_id")),
        ]
    )


def _erase(api: APIClient, capture) -> None:
    with capture(execute=True):
        response = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")
    assert response.status_code == 200, response.json()


def _restore(snapshot: RowsSnapshot) -> None:
    """The backup written back: the customer's rows as they were; the receipts issued since are not in it."""
    rows_restore(snapshot)
    PrivacyReceipt.objects.all().delete()


def _sign_in(password: str = PERSON_PASSWORD) -> int:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": PERSON.email, "password": password, "name": "laptop"}, format="json"
    )
    return response.status_code


def _me(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/v1/me").status_code


def _reapply(capture) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with capture(execute=True):
        call_command("erasures_reapply", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _registered_with_a_photo(api: APIClient) -> tuple[User, str, Asset]:
    token = register(api)
    asset_id = upload(api)
    return User.objects.get(email=PERSON.email), token, Asset.objects.get(pk=asset_id)


def _needles_in_database() -> list[str]:
    text = database_text()
    return [needle for needle in PERSON.needles if needle in text]


def test_an_account_a_restore_brought_back_is_erased_again_by_erasures_reapply(
    api, erasure_log, django_capture_on_commit_callbacks
):
    user, token, asset = _registered_with_a_photo(api)
    backup = _customer_rows(user)
    _erase(api, django_capture_on_commit_callbacks)
    _restore(backup)
    # The restore brought them back in full: the simulation is a restore.
    assert _needles_in_database() != []
    assert (_sign_in(), _me(token)) == (200, 200)
    assert asset.data_key_id is not None
    assert DataKey.objects.get(pk=asset.data_key_id).wrapped_key is not None

    out, _ = _reapply(django_capture_on_commit_callbacks)

    assert f"erased again: account {user.public_id}" in out
    assert "erased again: 1 accounts" in out
    assert _needles_in_database() == []
    assert _sign_in() in (400, 401)
    assert _me(token) == 401
    key = DataKey.objects.get(pk=asset.data_key_id)
    assert (key.wrapped_key, key.destroyed_at is not None) == (None, True)
    assert Asset.objects.get(pk=asset.pk).status == Asset.Status.PURGED
    refreshed = User.objects.get(pk=user.pk)
    assert (refreshed.is_active, refreshed.erased_at is not None) == (False, True)
    assert not ApiToken.objects.filter(user=user).exists()


@pytest.mark.usefixtures("stripe_api")  # the guest's order is placed through the API: a PaymentIntent
def test_a_guest_order_a_restore_brought_back_is_erased_again_by_erasures_reapply(
    api, erasure_log, django_capture_on_commit_callbacks
):
    order, token = guest_order_placed(api, key="restore-guest-1")
    assets = Asset.objects.filter(guest_order=order)
    backup = rows_snapshot(
        [
            Order.objects.filter(pk=order.pk),
            OrderItem.objects.filter(order=order),
            IdempotencyKey.objects.filter(order=order),
            assets,
            DataKey.objects.filter(pk__in=assets.values("data_key_id")),
        ]
    )
    with django_capture_on_commit_callbacks(execute=True):
        erased = APIClient().delete(f"/api/v1/orders/{order.ref}/personal-data", HTTP_X_ORDER_TOKEN=token)
    assert erased.status_code == 200, erased.json()
    _restore(backup)
    assert _needles_in_database() != []

    out, _ = _reapply(django_capture_on_commit_callbacks)

    assert f"erased again: guest order {order.ref}" in out
    assert _needles_in_database() == []
    order.refresh_from_db()
    assert order.is_anonymized
    assert all(key.wrapped_key is None for key in DataKey.objects.filter(pk__in=assets.values("data_key_id")))


def test_the_erasure_log_holds_the_account_s_id_and_no_personal_value(
    api, erasure_log, django_capture_on_commit_callbacks
):
    user, _, _ = _registered_with_a_photo(api)
    _erase(api, django_capture_on_commit_callbacks)

    raw = erasure_log.read_bytes()
    entry = json.loads(raw)
    assert (entry["kind"], entry["subject"]) == ("account", str(user.public_id))
    assert set(entry) == {"kind", "subject", "erased_at"}
    text = raw.decode("utf-8").lower()
    assert [needle for needle in [*PERSON.needles, PERSON.postal_code, "1984-02-29"] if needle in text] == []


def test_the_log_entry_is_written_only_after_the_erasure_commits_and_never_for_one_rolled_back(
    api, erasure_log, django_capture_on_commit_callbacks
):
    user, _, _ = _registered_with_a_photo(api)

    class RolledBack(Exception):
        pass

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RolledBack), transaction.atomic():
        account_erase(user=user, password=PERSON_PASSWORD)
        raise RolledBack

    assert not erasure_log.exists()
    assert not ErasureLogPending.objects.exists()
    user.refresh_from_db()
    assert user.erased_at is None

    with django_capture_on_commit_callbacks(execute=False) as hooks:
        account_erase(user=user, password=PERSON_PASSWORD)
        assert not erasure_log.exists()  # not before the commit
    for hook in hooks:
        hook()

    assert [json.loads(line)["subject"] for line in erasure_log.read_text().splitlines()] == [
        str(user.public_id)
    ]


def test_a_failing_log_write_keeps_the_entry_owed_until_the_sweep_writes_it(
    api, settings, tmp_path, erasure_log, django_capture_on_commit_callbacks, caplog
):
    user, _, _ = _registered_with_a_photo(api)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the log's folder is a file: nothing can be written under it, root or not
    settings.LAB_ERASURE_LOG = str(blocked / "erasures.log")

    with caplog.at_level(logging.ERROR):
        _erase(api, django_capture_on_commit_callbacks)  # the erasure is done all the same

    owed = ErasureLogPending.objects.get()
    assert (owed.kind, owed.subject, owed.attempts) == ("account", str(user.public_id), 1)
    assert all(needle not in caplog.text.lower() for needle in PERSON.needles)

    assert erasure_log_sweep() == {"written": 0, "failed": 1, "work_left": 1}  # still unwritable
    settings.LAB_ERASURE_LOG = str(erasure_log)
    assert erasure_log_sweep() == {"written": 1, "failed": 0, "work_left": 0}
    assert erasure_log_sweep() == {"written": 0, "failed": 0, "work_left": 0}

    assert not ErasureLogPending.objects.exists()
    assert [json.loads(line)["subject"] for line in erasure_log.read_text().splitlines()] == [
        str(user.public_id)
    ]


def test_erasures_reapply_run_twice_erases_nothing_the_second_time(
    api, erasure_log, django_capture_on_commit_callbacks
):
    user, _, _ = _registered_with_a_photo(api)
    backup = _customer_rows(user)
    _erase(api, django_capture_on_commit_callbacks)
    _restore(backup)
    first, _ = _reapply(django_capture_on_commit_callbacks)
    assert "erased again: 1 accounts" in first
    receipts = PrivacyReceipt.objects.count()

    second, _ = _reapply(django_capture_on_commit_callbacks)

    assert "erased again: 0 accounts" in second
    assert "erased already: 1" in second
    assert f"erased again: account {user.public_id}" not in second
    assert PrivacyReceipt.objects.count() == receipts


def test_a_malformed_log_line_is_reported_by_its_number_and_every_other_entry_is_applied(
    api, erasure_log, django_capture_on_commit_callbacks
):
    erasure_log.parent.mkdir(parents=True)
    erasure_log.write_bytes(b'{"kind": "account", "subject": \n')
    user, token, _ = _registered_with_a_photo(api)
    backup = _customer_rows(user)
    _erase(api, django_capture_on_commit_callbacks)
    with erasure_log.open("ab") as log_file:
        log_file.write(b"\xff torn")  # and a torn, undecodable last line
    _restore(backup)

    out, err = io.StringIO(), io.StringIO()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(CommandError):
        call_command("erasures_reapply", stdout=out, stderr=err)

    assert "line 1:" in err.getvalue()
    assert "line 3:" in err.getvalue()
    assert f"erased again: account {user.public_id}" in out.getvalue()
    assert _needles_in_database() == []
    assert _me(token) == 401
