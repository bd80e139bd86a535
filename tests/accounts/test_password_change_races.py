"""A password change ends every way in that the old password opened, even against requests already on their
way: a sign-in that checked the old password before the change committed gets no token after it, and of two
changes sent at once with the same current password only the first takes effect (the second is refused, never
told it succeeded while the first one's password stays). The interleavings are forced: the racing request's
user row is the one it read before the other committed, as a web process that checked first holds it."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import hashers
from django.db import DatabaseError, connections, transaction
from rest_framework.test import APIClient

from lab.accounts import services, signin
from lab.accounts.models import ApiToken, User
from lab.customer_data.erasure import account_erase
from lab.lib.errors import PermissionDenied
from tests.builders import PASSWORD, UserFactory
from tests.support.database_locks import until_sessions_wait_for_locks

pytestmark = pytest.mark.django_db
NEW, OTHER = "a new passphrase of the owner", "the attacker's own passphrase"


def _token_request(email: str, password: str) -> tuple[int, dict[str, object]]:
    response = APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": password, "name": "script"}, format="json"
    )
    return response.status_code, response.json()


def test_a_sign_in_that_checked_the_old_password_before_a_change_committed_gets_no_token(monkeypatch):
    customer = UserFactory.create()
    checked = signin.sign_in

    def owner_changes_the_password_meanwhile(**kwargs: object) -> User | None:
        user = checked(**kwargs)  # type: ignore[arg-type]
        # the owner's change commits between this sign-in's password check and its token's issue
        services.customer_update(
            user=User.objects.get(pk=customer.pk), current_password=PASSWORD, new_password=NEW
        )
        return user

    monkeypatch.setattr(signin, "sign_in", owner_changes_the_password_meanwhile)
    status, body = _token_request(customer.email, PASSWORD)

    assert (status, body["code"]) == (409, "password_changed_meanwhile")
    assert not ApiToken.objects.filter(user=customer).exists()
    monkeypatch.setattr(signin, "sign_in", checked)
    assert _token_request(customer.email, PASSWORD)[0] == 401
    assert _token_request(customer.email, NEW)[0] == 200


def test_of_two_password_changes_sent_at_once_with_the_old_password_only_the_first_takes_effect():
    customer = UserFactory.create()
    # both requests authenticated, and read the account, before either committed
    owners, attackers = User.objects.get(pk=customer.pk), User.objects.get(pk=customer.pk)
    services.customer_update(user=owners, current_password=PASSWORD, new_password=NEW)

    with pytest.raises(PermissionDenied) as refused:
        services.customer_update(user=attackers, current_password=PASSWORD, new_password=OTHER)

    assert refused.value.code == "wrong_password"
    customer.refresh_from_db()
    assert customer.check_password(NEW) and not customer.check_password(OTHER)


@pytest.mark.django_db(transaction=True)
def test_two_password_changes_that_wait_on_one_lock_end_one_changed_one_refused_no_deadlock():
    # given two changes with the old password, both read, both waiting for the account's row (another
    # session holds it), as two web processes would after a double click
    customer = UserFactory.create()
    outcomes: dict[str, str] = {}

    def change(name: str, new_password: str) -> None:
        try:
            services.customer_update(
                user=User.objects.get(pk=customer.pk), current_password=PASSWORD, new_password=new_password
            )
            outcomes[name] = "changed"
        except PermissionDenied as refused:
            outcomes[name] = str(refused.code)
        except DatabaseError as error:  # a deadlock: PostgreSQL kills one of them
            outcomes[name] = type(error).__name__
        finally:
            connections.close_all()

    with transaction.atomic():
        User.objects.select_for_update().get(pk=customer.pk)
        threads = [threading.Thread(target=change, args=args) for args in (("owner", NEW), ("other", OTHER))]
        for thread in threads:
            thread.start()
        until_sessions_wait_for_locks(2)  # the two changes wait for the row
    for thread in threads:
        thread.join(timeout=60)

    # then one took effect and the other was refused: before (a weak lock taken first, then upgraded), both
    # held the weak one and PostgreSQL killed one of them as a deadlock
    assert sorted(outcomes.values()) == ["changed", "wrong_password"], outcomes


def test_an_erasure_that_checked_the_old_password_before_a_change_committed_erases_nothing():
    # given an erasure whose request read the account, and checked the old password, before the owner's
    # password change committed (a stolen token, and the password it was stolen with)
    customer = UserFactory.create()
    stale = User.objects.get(pk=customer.pk)
    services.customer_update(
        user=User.objects.get(pk=customer.pk), current_password=PASSWORD, new_password=NEW
    )

    with pytest.raises(PermissionDenied) as refused:
        account_erase(user=stale, password=PASSWORD)

    # then it is refused as a wrong password: before, only erased_at was checked under the row's lock, and
    # the old password erased the account after the change that was to end it
    assert refused.value.code == "wrong_password"
    customer.refresh_from_db()
    assert customer.erased_at is None and customer.check_password(NEW)


def _hash_upgraded_at_sign_in(settings) -> None:
    # the suite's hasher (MD5) made the customer's hash; a Django whose first hasher is another upgrades it
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]


def test_a_sign_in_that_upgrades_the_hash_does_not_undo_a_password_change_committed_meanwhile(
    settings, monkeypatch
):
    customer = UserFactory.create()
    _hash_upgraded_at_sign_in(settings)
    checked = hashers.check_password
    changed: list[bool] = []

    def owner_changes_the_password_first(*args: object, **kwargs: object) -> bool:
        if not changed:
            changed.append(True)
            # the owner's change commits while this sign-in checks the old password (read before it)
            services.customer_update(
                user=User.objects.get(pk=customer.pk), current_password=PASSWORD, new_password=NEW
            )
        return checked(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("lab.accounts.models.check_password", owner_changes_the_password_first)
    status, body = _token_request(customer.email, PASSWORD)

    # then no token, and the new password stays: before, the upgrade wrote a hash of the old password over
    # the new one, unlocked and unchecked, and the old password signed in (200) from then on
    assert (status, body["code"]) == (409, "password_changed_meanwhile")
    customer.refresh_from_db()
    assert customer.check_password(NEW) and not customer.check_password(PASSWORD)
    assert not ApiToken.objects.filter(user=customer).exists()


def test_a_sign_in_with_nothing_changed_meanwhile_upgrades_the_hash_and_gets_a_token(settings):
    customer = UserFactory.create()
    _hash_upgraded_at_sign_in(settings)

    assert _token_request(customer.email, PASSWORD)[0] == 200

    customer.refresh_from_db()
    assert customer.password.startswith("pbkdf2_sha256$")
    assert _token_request(customer.email, PASSWORD)[0] == 200  # still sealed with the upgraded hash
