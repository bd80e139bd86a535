"""My Account's e-mail change (PATCH me `email`) asks for the current password, as the password change does.

Before, a token alone changed the e-mail: with a stolen token that took the account over (the owner's e-mail
no longer signed in, so they could not get a token to change the password), nothing was recorded, and the
account's count of failed passwords, kept under its e-mail, started again. And every change answered whether
another account had an address (409 `email_taken`), as often as asked: PATCH me is throttled per customer."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import timedelta

import pytest
import time_machine
from django.core.mail import EmailMessage
from django.utils import timezone
from rest_framework.test import APIClient

import workers.notify_tasks  # noqa: F401  (registers the account mail task run here by name)
from lab.accounts.email_change import email_change_tokens
from lab.accounts.models import ApiToken, SecurityEvent, User
from lab.celery import app
from tests.builders import PASSWORD, UserFactory, token_client
from tests.support.broker import emptied_queues, queued_tasks

pytestmark = pytest.mark.django_db
ADDRESS = "198.51.100.47"
OLD = "ada@example.org"
NEW = "ada.new@example.org"
THIEFS = "mallory@example.org"
OWNER_ADDRESS = "192.0.2.10"


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    settings.SIGNIN_ACCOUNT_FAILURES = 3
    settings.SIGNIN_ADDRESS_FAILURES = 20
    settings.SIGNIN_WINDOW_SECONDS = 900


def holder_of_a_token(user: User) -> APIClient:
    """A client with one of the account's tokens: its owner's script, or a thief who took the key."""
    return token_client(APIClient(REMOTE_ADDR=ADDRESS), user)


def change(client: APIClient, body: dict[str, str]) -> tuple[int, str]:
    response = client.patch("/api/v1/me", body, format="json")
    return response.status_code, response.json().get("code", "")


def confirm(client: APIClient, token: str) -> tuple[int, str]:
    response = client.post("/api/v1/me/email/confirm", {"token": token}, format="json")
    return response.status_code, response.json().get("code", "")


def token_of(user: User) -> str:
    """The token the new address's mail carries, as made for the account as it is now."""
    return email_change_tokens.make_token(User.objects.get(pk=user.pk))


def signs_in(email: str) -> int:
    return (
        APIClient()
        .post("/api/v1/auth/token", {"email": email, "password": PASSWORD}, format="json")
        .status_code
    )


def test_an_email_change_without_the_current_password_is_refused_and_changes_nothing():
    customer = UserFactory.create(email=OLD, full_name="Ada")
    thief = holder_of_a_token(customer)

    answer = change(thief, {"email": NEW, "full_name": "Mallory"})

    assert answer == (403, "wrong_password")
    customer.refresh_from_db()
    assert (customer.email, customer.full_name) == (OLD, "Ada")
    assert not SecurityEvent.objects.filter(kind="email_changed").exists()
    assert (signs_in(OLD), signs_in(NEW)) == (200, 401)


def test_wrong_current_passwords_stay_counted_against_the_token_and_address_across_an_email_change(settings):
    # given a thief holding two of the account's tokens, the owner another, elsewhere; three failures lock a
    # token's confirmations, four the address's
    settings.SIGNIN_ADDRESS_FAILURES = 4
    customer = UserFactory.create(email=OLD)
    thief = holder_of_a_token(customer)
    first = str(ApiToken.objects.get(user=customer).public_id)
    owner = token_client(APIClient(REMOTE_ADDR=OWNER_ADDRESS), customer)

    # when the thief guesses twice, the owner moves the account to a new e-mail, and the thief guesses again
    guesses = [change(thief, {"email": THIEFS, "current_password": f"guess {n}"}) for n in range(2)]
    moved = change(owner, {"email": NEW, "current_password": PASSWORD})
    confirmed = confirm(owner, token_of(customer))
    third = change(thief, {"email": THIEFS, "current_password": "guess 2"})
    right = change(thief, {"email": THIEFS, "current_password": PASSWORD})
    # and then with the other token, from the same address
    other_token = holder_of_a_token(customer)
    second = str(ApiToken.objects.latest("pk").public_id)  # the token made last
    fourth = change(other_token, {"email": THIEFS, "current_password": "guess 3"})
    right_with_the_other = change(other_token, {"email": THIEFS, "current_password": PASSWORD})

    # then the third guess is the token's third failure and locks it, even for the right password; the
    # other token's first is the address's fourth and locks that. Before, the count was the account's, kept
    # under its e-mail, and the change started it again; the token and the address are the same after it
    assert guesses == [(403, "wrong_password")] * 2
    assert (moved, confirmed) == ((200, ""), (200, ""))
    assert (third, right) == ((403, "wrong_password"), (429, "sign_in_locked"))
    assert (fourth, right_with_the_other) == ((403, "wrong_password"), (429, "sign_in_locked"))
    assert User.objects.get(pk=customer.pk).email == NEW
    # each event names the account and the token, neither e-mail nor its hash (the account has them)
    events = SecurityEvent.objects.filter(kind__startswith="sign_in").order_by("pk")

    def confirmation(token: str) -> dict[str, object]:
        return {"confirms": "email_change", "token": token}

    def lock(scope: str, failures: int, token: str) -> dict[str, object]:
        return {"scope": scope, "failures": failures, "seconds": 900, **confirmation(token)}

    assert list(events.values_list("kind", "user", "email_sha256", "client_ip", "detail")) == [
        *[("sign_in_failed", customer.pk, "", ADDRESS, confirmation(first))] * 3,
        ("sign_in_locked", customer.pk, "", ADDRESS, lock("token", 3, first)),
        ("sign_in_failed", customer.pk, "", ADDRESS, confirmation(second)),
        ("sign_in_locked", customer.pk, "", ADDRESS, lock("address", 4, second)),
    ]


def test_an_email_taken_by_another_account_is_told_only_after_the_password():
    UserFactory.create(email="taken@example.org")
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)

    without = change(client, {"email": "taken@example.org"})
    wrong = change(client, {"email": "taken@example.org", "current_password": "guess"})
    right = change(client, {"email": "taken@example.org", "current_password": PASSWORD})

    assert (without, wrong, right) == ((403, "wrong_password"), (403, "wrong_password"), (409, "email_taken"))
    assert User.objects.get(pk=customer.pk).email == OLD


def test_with_the_current_password_the_email_changes_and_the_log_says_so_without_an_address():
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)

    response = client.patch("/api/v1/me", {"email": NEW, "current_password": PASSWORD}, format="json")
    confirmed = client.post("/api/v1/me/email/confirm", {"token": token_of(customer)}, format="json")
    # the same address again (any case) is no change: no password asked, nothing recorded
    same = change(client, {"email": NEW.upper(), "full_name": "Ada Q."})

    assert (response.status_code, response.json()["email"], response.json()["pending_email"]) == (
        200,
        OLD,
        NEW,
    )
    assert (confirmed.status_code, confirmed.json()["email"], confirmed.json()["pending_email"]) == (
        200,
        NEW,
        "",
    )
    assert same == (200, "")
    assert (signs_in(OLD), signs_in(NEW)) == (401, 200)
    event = SecurityEvent.objects.get(kind="email_changed")
    # the earlier address by its digest only (its failed sign-ins stay the account's to export and erase)
    old_digest = hashlib.sha256(OLD.encode()).hexdigest()
    assert (event.user_id, event.channel, event.email_sha256, event.detail) == (
        customer.pk,
        "api",
        "",
        {"previous_email_sha256": old_digest},
    )
    assert event.client_ip == ADDRESS  # where the change came from, as the account's other events say
    written = json.dumps(
        [event.email_sha256, event.client_ip, event.detail, event.kind, event.channel], default=str
    ).lower()
    assert [
        needle for needle in (OLD, NEW, hashlib.sha256(NEW.encode()).hexdigest()) if needle in written
    ] == []


def test_changes_to_an_account_are_throttled_per_customer(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "account_changes": "2/hour",
        },
    }
    prober = holder_of_a_token(UserFactory.create(email=OLD))
    other = holder_of_a_token(UserFactory.create(email="bo@example.org"))

    statuses = [change(prober, {"full_name": f"Name {n}"})[0] for n in range(2)]
    throttled = prober.patch(
        "/api/v1/me", {"email": "bo@example.org", "current_password": PASSWORD}, format="json"
    )

    assert statuses == [200, 200]
    assert throttled.status_code == 429
    assert throttled.headers["Content-Type"] == "application/problem+json"
    assert throttled.json()["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) > 0
    # reading one's account is not a change, and another customer has a count of their own
    assert prober.get("/api/v1/me").status_code == 200
    assert change(other, {"full_name": "Bo"}) == (200, "")


def test_a_new_password_like_the_new_email_of_the_same_change_is_refused_and_nothing_changes():
    # given an account; the new password is the local part of the new e-mail sent with it
    customer = UserFactory.create(email=OLD, full_name="Ada")
    client = holder_of_a_token(customer)

    answer = change(
        client,
        {"email": "zebracorn1977@example.org", "new_password": "zebracorn1977", "current_password": PASSWORD},
    )

    # then it is checked against the account as it would be, as registration does, and nothing changed
    assert answer == (400, "weak_password")
    customer.refresh_from_db()
    assert (customer.email, customer.check_password(PASSWORD)) == (OLD, True)
    assert not SecurityEvent.objects.filter(kind__in=["email_changed", "password_changed"]).exists()


# The new address waits for the token mailed to it; the address the account had hears of every change.


def mailed_token(message: EmailMessage) -> str:
    found = re.search(r'\{"token": "([^"]+)"\}', str(message.body))
    assert found is not None, message.body
    return found.group(1)


def mails_run(broker) -> None:
    """A worker's run of the account mails queued (lab/notify/account_mails.py), oldest first: after commit
    the change only queues them."""
    for name, kwargs in reversed(queued_tasks(broker, "default")):
        if name == "notify.account_mail_send":
            app.tasks[name](**kwargs)


def test_a_new_email_waits_for_its_mailed_token_and_the_old_address_is_told_once_it_changes(
    mailoutbox, django_capture_on_commit_callbacks, caplog
):
    caplog.set_level(logging.DEBUG)
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)

    # when the owner asks for a new address
    with emptied_queues("default") as broker:
        with django_capture_on_commit_callbacks(execute=True):
            asked = client.patch("/api/v1/me", {"email": NEW, "current_password": PASSWORD}, format="json")
        mails_run(broker)

    # then only the new address is mailed, its token; the account keeps its e-mail, and signs in with it
    assert (asked.status_code, asked.json()["email"], asked.json()["pending_email"]) == (200, OLD, NEW)
    assert [(m.to, m.subject) for m in mailoutbox] == [
        ([NEW], "Confirm the new e-mail address of your account")
    ]
    token = mailed_token(mailoutbox[0])
    assert (User.objects.get(pk=customer.pk).email, signs_in(OLD), signs_in(NEW)) == (OLD, 200, 401)
    assert not SecurityEvent.objects.filter(kind="email_changed").exists()

    # when the token comes back
    with emptied_queues("default") as broker:
        with django_capture_on_commit_callbacks(execute=True):
            confirmed = client.post("/api/v1/me/email/confirm", {"token": token}, format="json")
        mails_run(broker)

    # then the e-mail is the new one, and the old address is told, without the new one or the token
    assert (confirmed.status_code, confirmed.json()["email"], confirmed.json()["pending_email"]) == (
        200,
        NEW,
        "",
    )
    assert (signs_in(OLD), signs_in(NEW)) == (401, 200)
    notice = mailoutbox[1]
    assert (notice.to, notice.subject) == ([OLD], "The e-mail address of your account was changed")
    assert NEW not in str(notice.body) and token not in str(notice.body)
    assert "did not" in str(notice.body)
    assert SecurityEvent.objects.filter(kind="email_changed", user=customer).count() == 1
    # the mails are logged by the account's id only
    logged = " ".join(record.getMessage() for record in caplog.records).lower()
    assert [needle for needle in (OLD, NEW, token) if needle in logged] == []
    assert f"user={customer.pk} mail=email_changed_notice" in logged


def test_a_password_change_is_told_to_the_account_s_address(mailoutbox, django_capture_on_commit_callbacks):
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)

    with emptied_queues("default") as broker:
        with django_capture_on_commit_callbacks(execute=True):
            answer = change(client, {"current_password": PASSWORD, "new_password": "another long secret 9"})
        mails_run(broker)

    assert answer == (200, "")
    assert [(m.to, m.subject) for m in mailoutbox] == [([OLD], "The password of your account was changed")]
    assert "another long secret 9" not in str(mailoutbox[0].body)


def test_a_confirmation_token_works_once():
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)
    change(client, {"email": NEW, "current_password": PASSWORD})
    token = token_of(customer)

    first, again = confirm(client, token), confirm(client, token)

    assert (first, again) == ((200, ""), (400, "email_confirmation_invalid"))
    assert User.objects.get(pk=customer.pk).email == NEW
    assert SecurityEvent.objects.filter(kind="email_changed").count() == 1


def test_an_expired_confirmation_token_is_refused_and_changes_nothing(settings):
    settings.LAB_EMAIL_CONFIRM_HOURS = 24
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)
    change(client, {"email": NEW, "current_password": PASSWORD})
    token = token_of(customer)

    with time_machine.travel(timezone.now() + timedelta(hours=24, minutes=1)):
        late = confirm(client, token)

    assert late == (400, "email_confirmation_expired")
    assert User.objects.filter(pk=customer.pk).values_list("email", "pending_email").get() == (OLD, NEW)
    assert not SecurityEvent.objects.filter(kind="email_changed").exists()


def test_a_confirmation_token_is_void_after_a_password_change_or_another_new_address():
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)
    change(client, {"email": NEW, "current_password": PASSWORD})
    before_the_password = token_of(customer)
    change(client, {"current_password": PASSWORD, "new_password": "another long secret 9"})
    client = holder_of_a_token(User.objects.get(pk=customer.pk))  # the change ended the account's tokens

    after_the_password = confirm(client, before_the_password)
    # a new address asked for again, then another: the first one's token is void
    change(client, {"email": NEW, "current_password": "another long secret 9"})
    for_new = token_of(customer)
    change(client, {"email": "ada.other@example.org", "current_password": "another long secret 9"})
    after_another = confirm(client, for_new)

    assert (after_the_password, after_another) == (
        (400, "email_confirmation_invalid"),
        (400, "email_confirmation_invalid"),
    )
    assert User.objects.get(pk=customer.pk).email == OLD


def test_a_token_for_an_address_asked_for_again_after_another_is_void():
    # given a new address asked for, its token, then another address, then the first one again
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)
    change(client, {"email": NEW, "current_password": PASSWORD})
    first = token_of(customer)
    change(client, {"email": "ada.other@example.org", "current_password": PASSWORD})
    change(client, {"email": NEW, "current_password": PASSWORD})

    # when the first request's token comes back, then the latest one's
    with_the_first, with_the_latest = confirm(client, first), confirm(client, token_of(customer))

    # then only the latest request's token confirms (before: the first one was valid again, the account's
    # password, e-mail and waiting address being what they were when it was made)
    assert (with_the_first, with_the_latest) == ((400, "email_confirmation_invalid"), (200, ""))
    assert User.objects.get(pk=customer.pk).email == NEW


def test_a_password_change_drops_the_address_waiting():
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)
    change(client, {"email": NEW, "current_password": PASSWORD})

    change(client, {"current_password": PASSWORD, "new_password": "another long secret 9"})

    assert User.objects.filter(pk=customer.pk).values_list("email", "pending_email").get() == (OLD, "")


def test_an_address_another_account_took_meanwhile_is_refused_at_confirmation():
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)
    change(client, {"email": NEW, "current_password": PASSWORD})
    token = token_of(customer)
    UserFactory.create(email=NEW)  # registered with it before the owner confirmed

    answer = confirm(client, token)

    assert answer == (409, "email_taken")
    assert User.objects.get(pk=customer.pk).email == OLD
    assert not SecurityEvent.objects.filter(kind="email_changed").exists()


def test_a_confirmation_without_an_address_waiting_or_with_a_made_up_token_is_refused():
    customer = UserFactory.create(email=OLD)
    client = holder_of_a_token(customer)

    nothing_waits = confirm(client, token_of(customer))
    change(client, {"email": NEW, "current_password": PASSWORD})
    made_up = confirm(client, "abc-0123456789abcdef")

    assert (nothing_waits, made_up) == (
        (400, "email_confirmation_invalid"),
        (400, "email_confirmation_invalid"),
    )
    assert User.objects.get(pk=customer.pk).email == OLD
