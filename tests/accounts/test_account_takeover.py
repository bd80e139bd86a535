"""A database administrator cannot take over a customer's account to download their photos: a password hash
they set gets no token, and a token row they make up or move to another account authenticates nobody
(lab/accounts/seal.py, lab/accounts/tokens.py). The tampering is SQL, as the administrator writes it."""

from __future__ import annotations

import hashlib
import importlib
import secrets
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from rest_framework.test import APIClient

from lab.accounts.models import ApiToken, SecurityEvent, User
from lab.accounts.seal import account_seal_holds, account_seal_of, seal_value
from lab.accounts.services import policy_current
from lab.audit.models import AuditRecord
from lab.audit.records import Entry, audit_append
from tests.builders import PASSWORD, UserFactory
from tests.builders.orders import asset_for
from tests.support.dba import dba
from tests.support.migrations import leaf_migrations

pytestmark = pytest.mark.django_db
DBA_PASSWORD = "the dba chose this one"
# The upgrade that made the seal name its row (its primary key); the migration before it.
KEYED = importlib.import_module("lab.accounts.migrations.0009_account_seal_names_its_row")
BEFORE_KEYED = [("accounts", "0008_security_event_email_changed")]


def token_for(email: str, password: str) -> tuple[int, dict[str, object]]:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": password, "name": "dba"}, format="json"
    )
    return response.status_code, response.json()


def as_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_password_hash_set_in_the_database_gets_no_token():
    customer = UserFactory.create()
    dba("UPDATE accounts_user SET password = %s WHERE id = %s", make_password(DBA_PASSWORD), customer.pk)

    status, body = token_for(customer.email, DBA_PASSWORD)

    assert (status, body["code"]) == (403, "account_changed_outside_the_lab")
    assert not ApiToken.objects.filter(user=customer).exists()
    assert SecurityEvent.objects.filter(user=customer, kind="account_seal_broken").count() == 1


def test_a_token_row_made_up_in_the_database_reads_nothing_of_the_account():
    customer = UserFactory.create()
    photo = asset_for(customer)
    key = secrets.token_hex(20)
    dba(
        "INSERT INTO accounts_apitoken"
        " (public_id, user_id, name, key_sha256, key_prefix, binding, created_at)"
        " VALUES (gen_random_uuid(), %s, 'dba', %s, %s, %s, now())",
        customer.pk,
        hashlib.sha256(key.encode()).hexdigest(),
        key[:8],
        hashlib.sha256(b"a binding made up").hexdigest(),
    )

    assert as_token(key).get("/api/v1/me").status_code == 401
    assert as_token(key).get(f"/api/v1/assets/{photo.pk}/content").status_code == 401


def test_a_token_moved_to_another_account_authenticates_nobody():
    dba_account = UserFactory.create()
    victim = UserFactory.create()
    status, body = token_for(dba_account.email, PASSWORD)
    assert status == 200 and as_token(str(body["token"])).get("/api/v1/me").status_code == 200

    dba("UPDATE accounts_apitoken SET user_id = %s WHERE user_id = %s", victim.pk, dba_account.pk)

    assert as_token(str(body["token"])).get("/api/v1/me").status_code == 401


def test_a_token_moved_to_another_account_with_its_public_id_reads_nothing_of_that_account():
    # given the DBA's own customer account with a token, and another customer's photo
    dba_account = UserFactory.create()
    victim = UserFactory.create()
    photo = asset_for(victim)
    status, body = token_for(dba_account.email, PASSWORD)
    key = str(body["token"])
    assert status == 200 and as_token(key).get("/api/v1/me").status_code == 200

    # when the DBA moves the token and its owner's public id (which its binding covers) to the victim's row
    dba("UPDATE accounts_user SET public_id = gen_random_uuid() WHERE id = %s", dba_account.pk)
    dba("UPDATE accounts_user SET public_id = %s WHERE id = %s", str(dba_account.public_id), victim.pk)
    dba("UPDATE accounts_apitoken SET user_id = %s WHERE user_id = %s", victim.pk, dba_account.pk)

    # then the token authenticates nobody (the victim's account seal no longer holds), on the record
    assert as_token(key).get("/api/v1/me").status_code == 401
    assert as_token(key).get(f"/api/v1/assets/{photo.pk}/content").status_code == 401
    assert SecurityEvent.objects.filter(user=victim, kind="account_seal_broken").count() == 2


def test_the_customers_own_password_change_and_registration_keep_the_account_usable():
    registered = APIClient().post(
        "/api/v1/accounts",
        {
            "email": "new.customer@example.org",
            "password": "a long first secret 19",
            "full_name": "New Customer",
            "address": {
                "name": "New Customer",
                "line1": "1 Harbour Road",
                "city": "Portville",
                "postal_code": "97035",
                "country": "US",
            },
            "birth_date": "1990-01-01",
            "privacy_policy_version": policy_current().version,
        },
        format="json",
    )
    assert registered.status_code == 201, registered.json()
    changed = as_token(registered.json()["token"]).patch(
        "/api/v1/me",
        {"current_password": "a long first secret 19", "new_password": "a long second secret 23"},
        format="json",
    )
    assert changed.status_code == 200, changed.json()

    status, body = token_for("new.customer@example.org", "a long second secret 23")

    assert status == 200 and as_token(str(body["token"])).get("/api/v1/me").status_code == 200
    assert User.objects.get(email="new.customer@example.org").account_seal


def test_an_accounts_public_id_password_and_seal_moved_onto_another_row_open_nothing_of_that_account():
    # given the DBA's own customer account with a token, and another customer's photo
    dba_account = UserFactory.create()
    victim = UserFactory.create()
    photo = asset_for(victim)
    status, body = token_for(dba_account.email, PASSWORD)
    keys = [str(body["token"])]
    assert status == 200 and as_token(keys[0]).get("/api/v1/me").status_code == 200
    own = User.objects.values_list("public_id", "password", "account_seal").get(pk=dba_account.pk)

    # when the DBA gives their own row another public id, moves their public id, password hash and seal onto
    # the victim's row, and their token with them (its binding names the public id the victim's row now has)
    dba("UPDATE accounts_user SET public_id = %s WHERE id = %s", str(uuid.uuid4()), dba_account.pk)
    dba(
        "UPDATE accounts_user SET public_id = %s, password = %s, account_seal = %s WHERE id = %s",
        str(own[0]),
        own[1],
        own[2],
        victim.pk,
    )
    status, body = token_for(victim.email, PASSWORD)  # the victim's e-mail, the DBA's own password
    keys += [str(body["token"])] if "token" in body else []
    dba("UPDATE accounts_apitoken SET user_id = %s WHERE user_id = %s", victim.pk, dba_account.pk)

    # then the seal, which names its row, does not hold on the victim's: no token is issued (before, one was,
    # and it read the victim's photo), and no token of the DBA's reads the photo, the one moved with them too
    assert (status, body.get("code")) == (403, "account_changed_outside_the_lab")
    assert ApiToken.objects.filter(user=victim).count() == 1  # the DBA's, moved there
    for key in keys:
        assert as_token(key).get(f"/api/v1/assets/{photo.pk}/content").status_code == 401
        assert as_token(key).get("/api/v1/me").status_code == 401
    assert SecurityEvent.objects.filter(user=victim, kind="account_seal_broken").count() == 3


def seal_as_before_the_upgrade(user: User) -> None:
    """The account's seal as the lab made it before the seal named its row (no primary key)."""
    # The columns the seal reads only: also run on the schema before later columns (accounts/0011).
    user.refresh_from_db(fields=["public_id", "is_active", "password"])
    roles = list(user.groups.values_list("name", flat=True))
    seal = seal_value(public_id=user.public_id, roles=roles, is_active=user.is_active, password=user.password)
    dba("UPDATE accounts_user SET account_seal = %s WHERE id = %s", seal, user.pk)


def staff_sign_in(email: str, password: str) -> int:
    return Client().post("/lab/login/", {"email": email, "password": password}).status_code


def test_the_upgrade_seals_again_with_its_key_each_account_whose_seal_held_as_the_lab_makes_it():
    # given a customer and a supervisor sealed as before the upgrade, and a customer and a technician whose
    # old seals no longer held (a password hash, a role written in the database)
    customer, supervisor = UserFactory.create(), UserFactory.create(roles=["supervisor", "technician"])
    changed_customer, changed_technician = UserFactory.create(), UserFactory.create(roles=["technician"])
    for user in (customer, supervisor, changed_customer, changed_technician):
        seal_as_before_the_upgrade(user)
    dba(
        "UPDATE accounts_user SET password = %s WHERE id = %s",
        make_password(DBA_PASSWORD),
        changed_customer.pk,
    )
    dba(
        "INSERT INTO accounts_user_groups (user_id, group_id) SELECT %s, id FROM auth_group WHERE name = %s",
        changed_technician.pk,
        "supervisor",
    )
    assert token_for(customer.email, PASSWORD)[0] == 403  # an old seal: refused until the upgrade
    changed = dict(
        User.objects.filter(pk__in=[changed_customer.pk, changed_technician.pk]).values_list(
            "pk", "account_seal"
        )
    )

    KEYED.seal_with_the_key(django_apps, None)

    # then the accounts whose seals held carry the seal the lab makes (its format and the migration's agree)
    # and sign in; the others are as they were, and refused
    for user in (customer, supervisor):
        stored = User.objects.get(pk=user.pk)
        assert stored.account_seal == account_seal_of(stored) and account_seal_holds(stored)
    assert token_for(customer.email, PASSWORD)[0] == 200
    assert staff_sign_in(supervisor.email, PASSWORD) == 302
    assert dict(User.objects.filter(pk__in=changed).values_list("pk", "account_seal")) == changed
    assert token_for(changed_customer.email, DBA_PASSWORD)[0] == 403
    assert staff_sign_in(changed_technician.email, PASSWORD) == 403
    KEYED.seal_with_the_key(django_apps, None)  # run again, it changes nothing
    assert User.objects.get(pk=customer.pk).account_seal == account_seal_of(User.objects.get(pk=customer.pk))


def seal_upgrade() -> str:
    out = StringIO()
    call_command("account_seals_upgrade", stdout=out)
    return out.getvalue()


def test_accounts_a_previous_version_sealed_after_the_upgrade_are_sealed_again_by_the_command():
    # given, after 0009 ran, a customer with a token that a previous-version web process registered and a
    # supervisor its lab admin saved (on the record), both sealed as it did (no primary key), and a customer
    # so sealed whose password was then set in the database
    customer, supervisor = UserFactory.create(), UserFactory.create(roles=["supervisor"])
    changed = UserFactory.create()
    status, body = token_for(customer.email, PASSWORD)
    key = str(body["token"])
    assert status == 200
    for user in (customer, supervisor, changed):
        seal_as_before_the_upgrade(user)
    audit_append(
        Entry(
            action="staff.account_changed",
            actor_id=None,
            actor_role="admin",
            outcome="done",
            rule="lab_admin",
            context_type="user",
            context_id=str(supervisor.public_id),
        )
    )
    dba("UPDATE accounts_user SET password = %s WHERE id = %s", make_password(DBA_PASSWORD), changed.pk)
    changed_seal = User.objects.get(pk=changed.pk).account_seal

    # then this version refuses them all: the check accepts no seal without the row
    assert as_token(key).get("/api/v1/me").status_code == 401
    assert token_for(customer.email, PASSWORD)[0] == 403
    assert staff_sign_in(supervisor.email, PASSWORD) == 403

    # when the operator runs the command once no previous-version process is left
    out = seal_upgrade()

    # then the supervisor, whom the audit log shows the lab's tools sealed, is sealed with its row; the
    # customer is left, printed with its e-mail for the operator to check (when it joined is a column the
    # database writes: no evidence)
    assert "1 account(s) sealed again" in out
    assert f"sealed again with its row {supervisor.public_id} (sealed_since_upgrade)" in out
    assert f"left refused {customer.public_id} {customer.email}" in out
    assert str(changed.public_id) not in out
    assert token_for(customer.email, PASSWORD)[0] == 403
    assert staff_sign_in(supervisor.email, PASSWORD) == 302

    # when the operator names the customer (and the changed account), then the customer is sealed with its
    # row and usable again, token included
    named = StringIO()
    call_command("account_seals_upgrade", customer.email, changed.email, stdout=named)
    assert "1 account(s) sealed again" in named.getvalue()
    for user in (customer, supervisor):
        stored = User.objects.get(pk=user.pk)
        assert stored.account_seal == account_seal_of(stored) and account_seal_holds(stored)
    assert as_token(key).get("/api/v1/me").status_code == 200
    assert token_for(customer.email, PASSWORD)[0] == 200

    # and the account changed in the database stays refused, its seal as it was, named or not
    assert User.objects.get(pk=changed.pk).account_seal == changed_seal
    assert token_for(changed.email, DBA_PASSWORD)[0] == 403

    # when it runs again, then it changes nothing
    seals = dict(User.objects.values_list("pk", "account_seal"))
    assert "0 account(s) sealed again" in seal_upgrade()
    assert dict(User.objects.values_list("pk", "account_seal")) == seals


def migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_and_its_reverse_keep_sealed_accounts_usable_and_changed_ones_refused():
    latest = leaf_migrations("accounts")
    customer, technician = UserFactory.create(), UserFactory.create(roles=["technician"])
    changed = UserFactory.create(roles=["technician"])

    migrate(BEFORE_KEYED)  # going back seals the accounts as before (no primary key)
    try:
        for user in (customer, technician, changed):
            stored = User.objects.only("public_id", "is_active", "password").get(pk=user.pk)
            roles = list(stored.groups.values_list("name", flat=True))
            assert stored.account_seal == seal_value(
                public_id=stored.public_id, roles=roles, is_active=stored.is_active, password=stored.password
            )
        dba("UPDATE accounts_user SET is_active = false WHERE id = %s", changed.pk)
        seal_as_before_the_upgrade(changed)  # sealed inactive; then re-activated in the database
        dba("UPDATE accounts_user SET is_active = true WHERE id = %s", changed.pk)
    finally:
        migrate(latest)  # the upgrade; a failed test leaves the schema current too

    assert token_for(customer.email, PASSWORD)[0] == 200
    assert staff_sign_in(technician.email, PASSWORD) == 302
    assert staff_sign_in(changed.email, PASSWORD) == 403


def test_an_old_seal_moved_onto_another_row_is_not_sealed_by_the_upgrade_command():
    # given two customers registered before the upgrade: the DBA's own account, whose seal as it was before
    # the upgrade (no primary key) the DBA kept, and a victim with a photo
    applied = MigrationRecorder.Migration.objects.get(app="accounts", name="0009_account_seal_names_its_row")
    dba_account, victim = UserFactory.create(), UserFactory.create()
    photo = asset_for(victim)
    before_the_upgrade = (applied.applied - timedelta(days=30)).isoformat()
    dba(
        "UPDATE accounts_user SET date_joined = %s WHERE id IN (%s, %s)",
        before_the_upgrade,
        dba_account.pk,
        victim.pk,
    )
    seal_as_before_the_upgrade(dba_account)
    own = User.objects.values_list("public_id", "password", "account_seal").get(pk=dba_account.pk)

    # when the DBA moves their public id, password hash and old seal onto the victim's row (refused: 403)
    dba("UPDATE accounts_user SET public_id = %s WHERE id = %s", str(uuid.uuid4()), dba_account.pk)
    dba(
        "UPDATE accounts_user SET public_id = %s, password = %s, account_seal = %s WHERE id = %s",
        str(own[0]),
        own[1],
        own[2],
        victim.pk,
    )
    assert token_for(victim.email, PASSWORD)[0] == 403
    moved = User.objects.get(pk=victim.pk).account_seal

    # and the operator runs the upgrade command as deploy/README.md says
    out = seal_upgrade()

    # then the victim's account is not sealed for the DBA (before, the command sealed every old seal that
    # held, wherever it was, and the DBA signed in with the victim's e-mail and their own password)
    assert "0 account(s) sealed again" in out
    assert f"left refused {own[0]} {victim.email}" in out
    assert User.objects.get(pk=victim.pk).account_seal == moved
    status, body = token_for(victim.email, PASSWORD)
    assert (status, body["code"]) == (403, "account_changed_outside_the_lab")
    assert not ApiToken.objects.filter(user=victim).exists()
    assert as_token("0" * 40).get(f"/api/v1/assets/{photo.pk}/content").status_code == 401
    assert not AuditRecord.objects.filter(action="staff.account_sealed").exists()


def test_the_upgrade_command_seals_an_account_the_operator_names_on_the_record():
    # given a customer registered before the upgrade whose seal a previous-version process made the old way
    applied = MigrationRecorder.Migration.objects.get(app="accounts", name="0009_account_seal_names_its_row")
    customer = UserFactory.create()
    before_the_upgrade = (applied.applied - timedelta(days=30)).isoformat()
    dba("UPDATE accounts_user SET date_joined = %s WHERE id = %s", before_the_upgrade, customer.pk)
    seal_as_before_the_upgrade(customer)
    assert "0 account(s) sealed again" in seal_upgrade()  # nothing shows the upgrade window sealed it

    out = StringIO()
    call_command("account_seals_upgrade", customer.email, stdout=out)

    assert "1 account(s) sealed again" in out.getvalue()
    assert token_for(customer.email, PASSWORD)[0] == 200
    record = AuditRecord.objects.get(action="staff.account_sealed")
    assert (record.context_id, record.rule, record.justification) == (
        str(customer.public_id),
        "account_seals_upgrade",
        "sealed again with its row (named_by_operator); roles (customer); active",
    )


@pytest.mark.parametrize("rewrite_applied", [False, True], ids=["joined_now", "migration_time_rewritten"])
def test_an_old_seal_moved_onto_a_row_made_to_look_registered_since_the_upgrade_is_not_sealed(
    rewrite_applied,
):
    # given the DBA's own account, registered and sealed before the upgrade (its old seal, no primary key,
    # kept), and a victim registered before the upgrade too, with a photo
    applied = MigrationRecorder.Migration.objects.get(app="accounts", name="0009_account_seal_names_its_row")
    dba_account, victim = UserFactory.create(), UserFactory.create()
    photo = asset_for(victim)
    before_the_upgrade = (applied.applied - timedelta(days=30)).isoformat()
    dba(
        "UPDATE accounts_user SET date_joined = %s WHERE id IN (%s, %s)",
        before_the_upgrade,
        dba_account.pk,
        victim.pk,
    )
    seal_as_before_the_upgrade(dba_account)
    own = User.objects.values_list("public_id", "password", "account_seal").get(pk=dba_account.pk)

    # when the DBA moves their public id, password hash and old seal onto the victim's row, deletes the
    # victim's tokens (none bound to another public id is left), and makes the row look registered during the
    # upgrade window: joined now, or 0009 recorded as run after it joined
    dba("UPDATE accounts_user SET public_id = %s WHERE id = %s", str(uuid.uuid4()), dba_account.pk)
    dba(
        "UPDATE accounts_user SET public_id = %s, password = %s, account_seal = %s, date_joined = now()"
        " WHERE id = %s",
        str(own[0]),
        own[1],
        own[2],
        victim.pk,
    )
    dba("DELETE FROM accounts_apitoken WHERE user_id = %s", victim.pk)
    if rewrite_applied:
        dba("UPDATE accounts_user SET date_joined = %s WHERE id = %s", before_the_upgrade, victim.pk)
        dba(
            "UPDATE django_migrations SET applied = %s WHERE app = 'accounts' AND name = %s",
            (applied.applied - timedelta(days=60)).isoformat(),
            applied.name,
        )
    moved = User.objects.get(pk=victim.pk).account_seal
    assert token_for(victim.email, PASSWORD)[0] == 403

    # and the operator runs the upgrade command as deploy/README.md says
    out = seal_upgrade()

    # then the victim's row is left refused, printed with its e-mail for the operator to check (before, it
    # was sealed as "registered_since_upgrade", and the DBA signed in with the victim's e-mail and their own
    # password)
    assert "0 account(s) sealed again" in out
    assert f"left refused {own[0]} {victim.email}" in out
    assert User.objects.get(pk=victim.pk).account_seal == moved
    status, body = token_for(victim.email, PASSWORD)
    assert (status, body["code"]) == (403, "account_changed_outside_the_lab")
    assert not ApiToken.objects.filter(user=victim).exists()
    assert as_token("0" * 40).get(f"/api/v1/assets/{photo.pk}/content").status_code == 401
    assert not AuditRecord.objects.filter(action="staff.account_sealed").exists()
