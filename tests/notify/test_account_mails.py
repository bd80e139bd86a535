"""The mails a change of an account owes its holder (the token for a new address, the notice of a password or
e-mail change) are rows written with the change and sent by a task, and by the sweep when the task could not:
before, they were sent inside the web request once it committed, and a mail server down lost them for good."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db.models import F
from django.utils import timezone
from rest_framework.test import APIClient

import workers.notify_tasks  # noqa: F401  (registers the tasks run here by name)
from lab.accounts import services
from lab.accounts.models import AccountMail, SecurityEvent, User
from lab.celery import app
from lab.notify.account_mails import account_mail_send
from tests.builders import PASSWORD, UserFactory, token_client
from tests.support.broker import emptied_queues, queued_tasks
from tests.support.mail import REFUSED_DOMAIN
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db
SEND_TASK, SWEEP_TASK = "notify.account_mail_send", "notify.account_mails_sweep"
OLD, NEW, OTHER = "ada@example.org", "ada.new@example.org", "grace@example.org"
THIEF = "thief@example.net"


def deliver_queued(broker) -> None:
    """What a worker does with the account-mail messages waiting on `default`: run each, oldest first."""
    for name, kwargs in reversed(queued_tasks(broker, "default")):
        if name == SEND_TASK:
            with contextlib.suppress(OSError):  # the mail server was down: the task's retry would run later
                app.tasks[name](**kwargs)


def sweep() -> int:
    return int(app.tasks[SWEEP_TASK]())


def mailed_token(message) -> str:
    found = re.search(r'\{"token": "([^"]+)"\}', str(message.body))
    assert found is not None, message.body
    return found.group(1)


def mail_server_down(settings) -> None:
    # As tests/notify/test_emails.py: the SMTP backend pointed at a port nothing listens on (refused).
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()


def mail_server_back(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_an_email_change_answers_before_any_mail_and_its_task_sends_the_token_once(
    django_capture_on_commit_callbacks, caplog
):
    caplog.set_level(logging.DEBUG)
    customer = UserFactory.create(email=OLD)
    client = token_client(APIClient(), customer)

    with emptied_queues("default") as broker:
        # when the customer asks for a new address and the request commits
        with django_capture_on_commit_callbacks(execute=True):
            asked = client.patch("/api/v1/me", {"email": NEW, "current_password": PASSWORD}, format="json")

        # then the answer comes with no mail sent: its task is queued, the mail owed on the record
        assert asked.status_code == 200
        assert mail.outbox == []
        owed = AccountMail.objects.get(user=customer)
        assert queued_tasks(broker, "default") == [(SEND_TASK, {"account_mail_id": owed.pk})]
        assert (owed.kind, owed.status, owed.recipient) == ("email_confirmation", "pending", "")

        # when a worker runs the task, and the message is delivered a second time
        deliver_queued(broker)
        deliver_queued(broker)

    # then the new address has its token once, and it confirms the address
    assert [(m.to, m.subject) for m in mail.outbox] == [
        ([NEW], "Confirm the new e-mail address of your account")
    ]
    owed.refresh_from_db()
    assert (owed.status, owed.send_attempts) == ("sent", 1)
    confirmed = client.post(
        "/api/v1/me/email/confirm", {"token": mailed_token(mail.outbox[0])}, format="json"
    )
    assert (confirmed.status_code, confirmed.json()["email"]) == (200, NEW)
    logged = " ".join(record.getMessage() for record in caplog.records).lower()
    assert [needle for needle in (OLD, NEW) if needle in logged] == []
    assert f"account mail sent account_mail={owed.pk} user={customer.pk} mail=email_confirmation" in logged


def test_with_the_mail_server_down_the_sweep_sends_the_confirmation_and_the_password_notice_once_back(
    settings, django_capture_on_commit_callbacks
):
    # given a mail server that is down while one customer asks for a new address and another changes their
    # password, a few minutes ago (the sweep leaves a fresh mail to its task)
    mail_server_down(settings)
    asker, changer = UserFactory.create(email=OLD), UserFactory.create(email=OTHER)
    with emptied_queues("default") as broker:
        with (
            time_machine.travel(timezone.now() - timedelta(minutes=5)),
            django_capture_on_commit_callbacks(execute=True),
        ):
            asked = token_client(APIClient(), asker).patch(
                "/api/v1/me", {"email": NEW, "current_password": PASSWORD}, format="json"
            )
            changed = token_client(APIClient(), changer).patch(
                "/api/v1/me",
                {"current_password": PASSWORD, "new_password": "another long secret 9"},
                format="json",
            )
        assert (asked.status_code, changed.status_code) == (200, 200)
        # and whose tasks failed on it, and a sweep too
        deliver_queued(broker)
        assert sweep() == 0
        assert set(AccountMail.objects.values_list("status", "send_attempts")) == {("failed", 2)}

        # when the mail server is back and the sweep runs (twice), and the tasks' messages come again
        mail_server_back(settings)
        sent = sweep()
        again = sweep()
        deliver_queued(broker)

    # then each mail went once: the token (valid: made when sent) and the notice to the address it had
    assert (sent, again) == (2, 0)
    assert sorted((m.to[0], m.subject) for m in mail.outbox) == [
        (NEW, "Confirm the new e-mail address of your account"),
        (OTHER, "The password of your account was changed"),
    ]
    token = mailed_token(next(m for m in mail.outbox if m.to == [NEW]))
    confirmed = token_client(APIClient(), asker).post(
        "/api/v1/me/email/confirm", {"token": token}, format="json"
    )
    assert confirmed.status_code == 200
    # and the notice's row keeps no address once sent
    assert list(AccountMail.objects.filter(user=changer).values_list("status", "recipient")) == [("sent", "")]


def test_an_email_changed_notice_lost_to_a_mail_server_down_goes_to_the_earlier_address_once_back(
    settings, django_capture_on_commit_callbacks
):
    # given a customer who confirmed a new address while the mail server was down
    customer = UserFactory.create(email=OLD)
    client = token_client(APIClient(), customer)
    with emptied_queues("default") as broker:
        with django_capture_on_commit_callbacks(execute=True):
            client.patch("/api/v1/me", {"email": NEW, "current_password": PASSWORD}, format="json")
        deliver_queued(broker)
        token = mailed_token(mail.outbox[0])
        mail.outbox.clear()
        mail_server_down(settings)
        with (
            time_machine.travel(timezone.now() - timedelta(minutes=5)),
            django_capture_on_commit_callbacks(execute=True),
        ):
            confirmed = client.post("/api/v1/me/email/confirm", {"token": token}, format="json")
        deliver_queued(broker)
        assert (confirmed.status_code, mail.outbox) == (200, [])

        # when the mail server is back: the sweep, then the task's message again
        mail_server_back(settings)
        sweep()
        deliver_queued(broker)

    # then the address the account had is told, once
    assert [(m.to, m.subject) for m in mail.outbox] == [
        ([OLD], "The e-mail address of your account was changed")
    ]


def test_a_mail_the_server_refuses_is_recorded_and_never_retried(
    settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.support.mail.RefusingEmailBackend"
    customer = UserFactory.create(email=OLD)
    refused_address = f"ada{REFUSED_DOMAIN}"
    with emptied_queues("default") as broker:
        with (
            time_machine.travel(timezone.now() - timedelta(minutes=5)),
            django_capture_on_commit_callbacks(execute=True),
        ):
            token_client(APIClient(), customer).patch(
                "/api/v1/me", {"email": refused_address, "current_password": PASSWORD}, format="json"
            )
        deliver_queued(broker)  # (it raises nothing: Celery does not retry it)
        swept = sweep()

    owed = AccountMail.objects.get(user=customer)
    assert (owed.status, owed.send_attempts, swept, mail.outbox) == ("refused", 1, 0, [])


def test_an_erased_account_is_mailed_nothing(api, django_capture_on_commit_callbacks):
    customer = UserFactory.create(email=OLD)
    with emptied_queues("default") as broker:
        with django_capture_on_commit_callbacks(execute=True):
            token_client(APIClient(), customer).patch(
                "/api/v1/me", {"email": NEW, "current_password": PASSWORD}, format="json"
            )
        # the account is erased before its mail's task runs
        api.force_authenticate(User.objects.get(pk=customer.pk))
        with django_capture_on_commit_callbacks(execute=True):
            erased = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")
        assert erased.status_code == 200, erased.json()
        deliver_queued(broker)

    assert [m for m in mail.outbox if "of your account" in str(m.subject)] == []
    assert list(AccountMail.objects.filter(user=customer).values_list("status", "skip_reason")) == [
        ("skipped", "account_erased")
    ]


def test_a_password_change_racing_a_new_address_leaves_no_token_for_it_made_from_the_new_password() -> None:
    # given the owner's password change, which read the account as its request came in (no address waiting)
    owner = UserFactory.create(email=OLD)
    as_the_owners_request_read_it = User.objects.get(pk=owner.pk)
    # and a new address asked for with the old password (a thief's) and committed before the owner's change
    services.customer_update(user=User.objects.get(pk=owner.pk), email=THIEF, current_password=PASSWORD)

    # when the owner's change commits, and the confirmation's mail goes only after it (a queue backed up)
    services.customer_update(
        user=as_the_owners_request_read_it, current_password=PASSWORD, new_password="a brand new secret 42"
    )
    confirmation = AccountMail.objects.get(user=owner, kind="email_confirmation")
    sent = account_mail_send(account_mail_id=confirmation.pk)

    # then no token went to the address (one made now would be valid), and the address waits no more.
    # Before, the change kept the address read with the request, and the token mailed later confirmed it.
    confirmation.refresh_from_db()
    assert (sent, [m.to for m in mail.outbox], User.objects.get(pk=owner.pk).pending_email) == (False, [], "")
    assert (confirmation.status, confirmation.skip_reason) == ("skipped", "password_changed_since")


def test_a_new_address_asked_for_after_a_password_change_on_a_host_running_ahead_gets_its_token() -> None:
    # given a password change made on a web host whose clock runs 5 minutes ahead (its rows dated so)
    owner = UserFactory.create(email=OLD)
    services.customer_update(
        user=User.objects.get(pk=owner.pk), current_password=PASSWORD, new_password="a brand new secret 42"
    )
    ahead = F("created_at") + timedelta(minutes=5)
    SecurityEvent.objects.filter(user=owner, kind=SecurityEvent.Kind.PASSWORD_CHANGED).update(
        created_at=ahead
    )
    AccountMail.objects.filter(user=owner).update(created_at=ahead)

    # when the owner then asks for a new address, with the new password, on another host
    services.customer_update(
        user=User.objects.get(pk=owner.pk), email=NEW, current_password="a brand new secret 42"
    )
    confirmation = AccountMail.objects.get(user=owner, kind="email_confirmation")
    sent = account_mail_send(account_mail_id=confirmation.pk)

    # then its token goes to the new address: the change came first, whatever its host's clock said
    # (before: skipped as `password_changed_since`, and no token ever arrived)
    assert (sent, [m.to for m in mail.outbox]) == (True, [[NEW]])


def test_a_notice_unsent_past_the_sweeps_window_is_finished_and_keeps_no_address(
    settings, django_capture_on_commit_callbacks
):
    # given the notice of an e-mail change owed to the earlier address while the mail server was down
    customer = UserFactory.create(email=OLD)
    client = token_client(APIClient(), customer)
    with emptied_queues("default") as broker:
        with django_capture_on_commit_callbacks(execute=True):
            client.patch("/api/v1/me", {"email": NEW, "current_password": PASSWORD}, format="json")
        deliver_queued(broker)
        token = mailed_token(mail.outbox[0])
        mail.outbox.clear()
        mail_server_down(settings)
        with django_capture_on_commit_callbacks(execute=True):
            confirmed = client.post("/api/v1/me/email/confirm", {"token": token}, format="json")
        deliver_queued(broker)
        assert confirmed.status_code == 200
        notice = AccountMail.objects.get(user=customer, kind="email_changed_notice")
        assert (notice.status, notice.recipient) == ("failed", OLD)
        # and owed since longer than the sweep's window (claims and the sweep read the database's clock)
        AccountMail.objects.filter(pk=notice.pk).update(created_at=F("created_at") - timedelta(days=8))

        # when the mail server is back, and the sweep (then a late task) runs
        mail_server_back(settings)
        swept = sweep()
        again = account_mail_send(account_mail_id=notice.pk)

    # then the week-old notice is not sent, and its row is done with: the earlier address goes from it.
    # Before, the sweep left it `failed` with the address, for good.
    notice.refresh_from_db()
    assert (swept, again, mail.outbox) == (0, False, [])
    assert (notice.status, notice.skip_reason, notice.recipient) == ("failed", "window_passed", "")
