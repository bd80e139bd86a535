"""Erasures survive a database restore. A restore from a backup taken before a customer's erasure brought the
customer back in full (e-mail, name, address, sign-in, their old token, photo rows `ready` with live keys)
while they held a signed receipt saying they were erased: the erasure was recorded in the database alone.
Every erasure is now also appended, after its commit, to the erasure log outside the database
(LAB_ERASURE_LOG), and `manage.py erasures_reapply` erases again whom the restore brought back.

The restore is simulated by writing the customer's rows back as a snapshot taken before the erasure held them
(tests/builders/customers.py: rows_restore), inside the test's transaction; the drill
(tests/deploy/test_restore_drill.py) restores a real pg_dump once."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from datetime import UTC
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from lab.accounts.models import ApiToken, Consent, SecurityEvent, User
from lab.audit.keys import load_record_key
from lab.customer_data.erasure import account_erase
from lab.customer_data.models import ErasureLogPending, PrivacyReceipt
from lab.orders.models import Asset, IdempotencyKey, Order, OrderItem
from lab.privacy.models import DataKey
from tests.builders.customers import (
    PERSON,
    PERSON_PASSWORD,
    Person,
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
    assert set(entry) == {"kind", "subject", "erased_at", "seal"}
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

    # still unwritable
    assert erasure_log_sweep() == {"written": 0, "failed": 1, "refused": 0, "work_left": 1}
    settings.LAB_ERASURE_LOG = str(erasure_log)
    assert erasure_log_sweep() == {"written": 1, "failed": 0, "refused": 0, "work_left": 0}
    assert erasure_log_sweep() == {"written": 0, "failed": 0, "refused": 0, "work_left": 0}

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


# --- faults and forgeries (review of the erasure log) -------------------------------------------------------

OTHER = Person(
    full_name="Bartholomew Vandyke",
    email="bartholomew.vandyke@example.org",
    line1="12 Platinotype Lane",
    line2="",
    city="Gumbichromate",
    postal_code="97998",
)


def _seal_independently(kind: str, subject: str, erased_at: str) -> str:
    """The seal as the README states it, computed here on its own: HMAC-SHA256 of the entry's canonical JSON
    (kind, subject, erased_at) under HMAC-SHA256(AUDIT_RECORD_KEY, "printlab erasure log v1")."""
    key = hmac.new(load_record_key(settings.AUDIT_RECORD_KEY), b"printlab erasure log v1", hashlib.sha256)
    body = json.dumps(
        {"erased_at": erased_at, "kind": kind, "subject": subject}, sort_keys=True, separators=(",", ":")
    )
    return hmac.new(key.digest(), body.encode("utf-8"), hashlib.sha256).hexdigest()


def test_an_erasure_whose_database_fails_right_after_its_commit_is_logged_all_the_same(
    api, erasure_log, django_capture_on_commit_callbacks, caplog
):
    """The after-commit hook appends the entry it holds in memory: it does not read its pending row back
    first. Before, it did (SELECT … FOR UPDATE), and a database that went away right after the commit (the
    very failure a restore follows) left nothing outside the database; the pending row went with the restored
    database and the customer, answered 200 and holding a receipt, came back for good. The database failure
    is simulated (the pending row's manager raising OperationalError): a real connection dropped between the
    commit and its hooks cannot be made reliably in a test."""
    user, token, _ = _registered_with_a_photo(api)
    backup = _customer_rows(user)
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        response = api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json")
    assert response.status_code == 200, response.json()
    down = OperationalError("server closed the connection unexpectedly")
    with (
        caplog.at_level(logging.WARNING),
        mock.patch.object(ErasureLogPending.objects, "select_for_update", side_effect=down),
        mock.patch.object(ErasureLogPending.objects, "filter", side_effect=down),
    ):
        for hook in hooks:
            hook()

    # On the log's disk; the pending row's delete failed with the database, which only means a second line
    # if the sweep ever sees it (harmless: the command skips a subject erased already).
    assert [json.loads(line)["subject"] for line in erasure_log.read_text().splitlines()] == [
        str(user.public_id)
    ]
    assert ErasureLogPending.objects.filter(subject=str(user.public_id)).exists()
    # The database is restored from the backup taken before the erasure: the pending row goes with it.
    _restore(backup)
    ErasureLogPending.objects.all().delete()
    assert (_sign_in(), _me(token)) == (200, 200)

    out, _ = _reapply(django_capture_on_commit_callbacks)

    assert f"erased again: account {user.public_id}" in out
    assert _needles_in_database() == []
    assert _me(token) == 401


def test_a_line_written_twice_by_the_hook_and_the_sweep_is_applied_once(
    api, erasure_log, django_capture_on_commit_callbacks
):
    user, _, _ = _registered_with_a_photo(api)
    backup = _customer_rows(user)
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        account_erase(user=user, password=PERSON_PASSWORD)
    with mock.patch.object(ErasureLogPending.objects, "filter", side_effect=OperationalError("gone")):
        for hook in hooks:
            hook()
    assert erasure_log_sweep()["written"] == 1  # the row the hook could not delete: its line again
    assert len(erasure_log.read_text().splitlines()) == 2
    _restore(backup)

    out, _ = _reapply(django_capture_on_commit_callbacks)

    assert "erased again: 1 accounts" in out
    assert _needles_in_database() == []


def test_a_pending_row_a_database_insider_writes_erases_no_one(
    api, erasure_log, django_capture_on_commit_callbacks, caplog
):
    """Anyone who can INSERT into the database (the app's role, a DBA) wrote one row, and the sweep copied it
    to the log outside the database, where it outlived any restore; `erasures_reapply` then erased the
    customer without their password (genuine audit records, a receipt, their files deleted). A row is now
    appended only with a seal the database cannot make (a key it never holds), and only for a subject it
    shows erased: here the insider marks the account erased too, so the seal is what stops it."""
    victim, token, _ = _registered_with_a_photo(api)
    backup = _customer_rows(victim)
    now = timezone.now()
    User.objects.filter(pk=victim.pk).update(erased_at=now)  # the insider's own tampering
    ErasureLogPending.objects.create(kind="account", subject=str(victim.public_id), erased_at=now)
    with caplog.at_level(logging.ERROR):
        assert erasure_log_sweep()["written"] == 0  # no seal
        ErasureLogPending.objects.create(
            kind="account", subject=str(victim.public_id), erased_at=now, seal="0" * 64
        )
        swept = erasure_log_sweep()  # a made-up one

    assert (swept["written"], swept["refused"]) == (0, 2)
    assert not erasure_log.exists()
    assert "seal" in caplog.text
    assert ErasureLogPending.objects.count() == 2  # left for a person to look at
    _restore(backup)  # a restore undoes the direct tampering; nothing outlives it

    out, err = _reapply(django_capture_on_commit_callbacks)

    assert "does not exist: no erasure to apply again" in out
    assert "2 pending erasure log row(s) not appended" in err
    victim.refresh_from_db()
    assert (victim.erased_at, victim.is_active) == (None, True)
    assert _me(token) == 200


def test_a_sealed_pending_row_for_a_subject_the_database_does_not_show_erased_is_not_appended(
    api, erasure_log
):
    """A valid seal alone is not enough: a row for an account the database holds un-erased was not written by
    an erasure (whose row commits with it); the sweep leaves it and says so."""
    victim, token, _ = _registered_with_a_photo(api)
    now = timezone.now()
    subject = str(victim.public_id)
    at = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ErasureLogPending.objects.create(
        kind="account", subject=subject, erased_at=now, seal=_seal_independently("account", subject, at)
    )

    swept = erasure_log_sweep()

    assert (swept["written"], swept["refused"]) == (0, 1)
    assert not erasure_log.exists()
    assert _me(token) == 200


def test_erasures_reapply_refuses_a_line_without_a_valid_seal_by_its_number_and_applies_the_rest(
    api, erasure_log, django_capture_on_commit_callbacks
):
    """A line written to the log by hand (whoever can write its file) or copied there from a forged row: it
    must carry a seal only the app's key makes, for exactly its kind, subject and time."""
    victim_token = register(APIClient(), OTHER)
    victim = User.objects.get(email=OTHER.email)
    user, token, _ = _registered_with_a_photo(api)
    backup = _customer_rows(user)
    _erase(api, django_capture_on_commit_callbacks)  # line 1: genuine
    genuine = json.loads(erasure_log.read_text())
    forged_unsealed = {
        "kind": genuine["kind"],
        "erased_at": genuine["erased_at"],
        "subject": str(victim.public_id),
    }
    forged_copied_seal = forged_unsealed | {"seal": genuine.get("seal", "0" * 64)}
    with erasure_log.open("a") as log_file:
        log_file.write(json.dumps(forged_unsealed) + "\n")  # line 2
        log_file.write(json.dumps(forged_copied_seal) + "\n")  # line 3
    _restore(backup)

    out, err = io.StringIO(), io.StringIO()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(CommandError):
        call_command("erasures_reapply", stdout=out, stderr=err)

    assert "line 2: no seal" in err.getvalue()
    assert "line 3: its seal does not verify" in err.getvalue()
    assert f"erased again: account {user.public_id}" in out.getvalue()
    assert _me(token) == 401
    victim.refresh_from_db()
    assert (victim.erased_at, victim.is_active) == (None, True)
    assert _me(victim_token) == 200


def test_the_entry_a_real_erasure_writes_carries_a_seal_that_verifies(
    api, erasure_log, django_capture_on_commit_callbacks
):
    user, _, _ = _registered_with_a_photo(api)
    _erase(api, django_capture_on_commit_callbacks)

    line = json.loads(erasure_log.read_text())

    assert set(line) == {"kind", "subject", "erased_at", "seal"}
    assert line["subject"] == str(user.public_id)
    assert line["seal"] == _seal_independently(line["kind"], line["subject"], line["erased_at"])
