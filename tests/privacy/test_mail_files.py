"""Demo mode's mail files: the file mail backend writes every e-mail in plaintext under EMAIL_FILE_PATH
(var/mail/), the shipping e-mail with the address's carrier and tracking number, a receipt's mail with its
bearer link. An erasure deletes the messages addressed to the erased customer, and the retention sweep deletes
files a week old. Before, nothing ever deleted them: an erased customer's tracking numbers stayed on disk.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.mail import EmailMessage, get_connection
from django.utils import timezone

from lab.accounts.models import User
from lab.accounts.signin import EmailPeriod, email_digest
from lab.customer_data import mail_files, retention
from lab.notify.services import notify_order_created, notify_order_status_changed
from lab.orders.models import Order
from tests.builders import PASSWORD, TO_PACKED, email_change_confirmed, new_customer, order_for, order_move
from tests.builders.guest_tokens import guest_token_grant

pytestmark = pytest.mark.django_db
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"


@pytest.fixture
def mail_dir(settings, tmp_path: Path) -> Path:
    settings.EMAIL_BACKEND = FILE_BACKEND
    settings.EMAIL_FILE_PATH = tmp_path / "mail"
    return tmp_path / "mail"


def _shipped_and_mailed(order: Order, tracking_number: str) -> Order:
    """The order shipped, and its "received" and "shipped" e-mails written by the file backend."""
    order_move(order, *TO_PACKED)
    order = order_move(
        order, "shipped", carrier="ups", tracking_number=tracking_number, shipped_at=timezone.now()
    )
    notify_order_created(order_id=order.pk)
    notify_order_status_changed(order_id=order.pk, status="shipped")
    return order


def _mail_text(mail_dir: Path) -> str:
    return "\n".join(path.read_bytes().decode().lower() for path in sorted(mail_dir.iterdir()))


def test_an_account_erasure_deletes_the_customer_s_messages_from_the_mail_files(
    api, mail_dir, django_capture_on_commit_callbacks
):
    # given a customer's shipped order and another customer's, each mailed (a file of its own per message)
    customer = new_customer(email="Erased.Person@Example.org")
    other = new_customer(email="kept.person@example.org")
    _shipped_and_mailed(order_for(customer), "1Z999AA10123456784")
    _shipped_and_mailed(order_for(other), "1Z999AA10123456785")
    # and one file holding a message to each of them (one connection sends both: the backend's separator line
    # between them), the customer's address written in another case
    with get_connection() as connection:
        connection.send_messages(
            [
                EmailMessage(
                    "to the customer", "tracking 1Z999AA10123456784", to=["erased.person@example.org"]
                ),
                EmailMessage("to the other", "a line\n" + "-" * 79 + "\nin a body", to=[other.email]),
            ]
        )
    assert "1z999aa10123456784" in _mail_text(mail_dir)
    api.force_authenticate(customer)

    # when the customer's account is erased
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then no mail file holds their address or their tracking number (the erasure's receipt mail included)
    assert response.status_code == 200, response.json()
    text = _mail_text(mail_dir)
    assert "erased.person@example.org" not in text
    assert "1z999aa10123456784" not in text
    # and the other customer's messages are all kept, whole, the one that shared a file too
    assert text.count(f"to: {other.email}") == 3
    assert "1z999aa10123456785" in text
    assert "a line\n" + "-" * 79 + "\nin a body" in text


def test_an_account_erasure_deletes_the_messages_to_the_addresses_the_account_had_before(
    api, mail_dir, django_capture_on_commit_callbacks
):
    # given a customer whose shipped order was mailed to their first address, a message to each spelling of
    # it (the backend writes the domain in IDNA), and another customer's shipped order
    customer = new_customer(email="first.address@example.org")
    other = new_customer(email="kept.person@example.org")
    _shipped_and_mailed(order_for(customer), "1Z999AA10123456784")
    _shipped_and_mailed(order_for(other), "1Z999AA10123456785")
    EmailMessage("to the first", "Ship to: 1 Lens Lane", to=["First.Address@Example.ORG"]).send()
    api.force_authenticate(customer)
    # and who then changed their e-mail address (My Account), and changed it again
    for address in ("second.address@example.org", "third.address@example.org"):
        email_change_confirmed(api, address, password=PASSWORD)
        customer.refresh_from_db()
    EmailMessage("to the second", "Ship to: 1 Lens Lane", to=["second.address@example.org"]).send()
    assert "first.address@example.org" in _mail_text(mail_dir)

    # when the customer's account is erased
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then no mail file holds any address the account had, its tracking number or its shipping address:
    # before, the messages to the earlier addresses were kept (only the current one was looked for)
    assert response.status_code == 200, response.json()
    text = _mail_text(mail_dir)
    left = ("first.address", "second.address", "third.address", "1z999aa10123456784", "1 lens lane")
    assert [needle for needle in left if needle in text] == []
    # and the other customer's messages are all kept
    assert text.count(f"to: {other.email}") == 2
    assert "1z999aa10123456785" in text


def _email_change(api, user: User, address: str) -> None:
    """My Account's e-mail change, as the customer."""
    api.force_authenticate(user)
    email_change_confirmed(api, address, password=PASSWORD)
    user.refresh_from_db()


def test_an_account_erasure_keeps_the_messages_of_the_customer_who_took_its_earlier_address_since(
    api, mail_dir, django_capture_on_commit_callbacks
):
    # given a customer mailed at their first address, who then changed it and was mailed at the new one
    customer = new_customer(email="first.address@example.org")
    _shipped_and_mailed(order_for(customer), "1Z999AA10123456784")
    _email_change(api, customer, "second.address@example.org")
    EmailMessage("to the second", "Ship to: 1 Lens Lane", to=["second.address@example.org"]).send()
    # and, a minute later, another customer who registered the first address and was mailed their shipping
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        other = new_customer(email="first.address@example.org")
        _shipped_and_mailed(order_for(other), "1Z999AA10123456785")

        # when the first customer's account is erased
        api.force_authenticate(customer)
        with django_capture_on_commit_callbacks(execute=True):
            response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then the other customer's messages to the address are all kept, their tracking number in them: before,
    # every message to an address the erased account ever had went, those written after it gave it up too
    assert response.status_code == 200, response.json()
    text = _mail_text(mail_dir)
    assert text.count(f"to: {other.email}") == 2
    assert "1z999aa10123456785" in text
    # and the erased customer's messages, to both of their addresses, are gone
    left = ("second.address", "1z999aa10123456784", "1 lens lane")
    assert [needle for needle in left if needle in text] == []


def test_an_account_erasure_deletes_the_messages_of_each_period_it_had_an_address_and_no_other(
    api, mail_dir, django_capture_on_commit_callbacks
):
    # given a customer mailed at their first address, who then changed it
    customer = new_customer(email="first.address@example.org")
    EmailMessage("first period", "tracking 1Z999AA10123456781", to=[customer.email]).send()
    _email_change(api, customer, "second.address@example.org")
    # and another customer who had that address for a while, and was mailed at it
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        other = new_customer(email="first.address@example.org")
        EmailMessage("the other's", "tracking 1Z999AA10123456785", to=[other.email]).send()
        _email_change(api, other, "kept.person@example.org")
    # and the customer who took the address back, was mailed at it, and changed it once more
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        _email_change(api, customer, "first.address@example.org")
        EmailMessage("second period", "tracking 1Z999AA10123456782", to=[customer.email]).send()
        _email_change(api, customer, "third.address@example.org")
    assert "1z999aa10123456785" in _mail_text(mail_dir)

    # when the customer's account is erased
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        api.force_authenticate(customer)
        with django_capture_on_commit_callbacks(execute=True):
            response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then the messages of both periods the customer had the address are gone, and the other customer's,
    # written between them, is kept: the latest change away from it alone would have taken it too
    assert response.status_code == 200, response.json()
    text = _mail_text(mail_dir)
    assert [number for number in ("1z999aa10123456781", "1z999aa10123456782") if number in text] == []
    assert "1z999aa10123456785" in text
    assert text.count("to: first.address@example.org") == 1


def test_an_erasure_keeps_a_message_to_an_earlier_address_that_has_no_readable_date(mail_dir):
    # given a mail file holding three messages to an address the account had until 08:30 UTC: one written
    # before (09:00 in +0100), one after, and one with no readable date
    mail_dir.mkdir()
    messages = [
        ("Mon, 07 Dec 2026 09:00:00 +0100", "1Z999AA10123456781"),
        ("Mon, 07 Dec 2026 09:31:00 +0100", "1Z999AA10123456782"),
        ("someday", "1Z999AA10123456783"),
    ]
    (mail_dir / "earlier.log").write_text(
        "".join(
            f"To: first.address@example.org\nDate: {date}\n\ntracking {number}\n" + "-" * 79 + "\n"
            for date, number in messages
        )
    )
    period = EmailPeriod(since=None, until=datetime(2026, 12, 7, 8, 30, tzinfo=UTC))

    # when the account's messages are erased
    erased = mail_files.mail_files_erase(
        email="current.address@example.org",
        earlier_email_digests={email_digest("first.address@example.org"): (period,)},
    )

    # then only the one written while the account had the address goes: whose the undated one is cannot be
    # told, and the retention sweep deletes it within the week
    text = _mail_text(mail_dir)
    assert (erased, [number for _, number in messages if number.lower() in text]) == (
        1,
        ["1Z999AA10123456782", "1Z999AA10123456783"],
    )


def test_a_guest_erasure_deletes_the_guest_s_messages_from_the_mail_files(
    api, mail_dir, django_capture_on_commit_callbacks
):
    # given a guest's shipped order, mailed, and the guest's token
    order = _shipped_and_mailed(order_for(None, guest_email="guest@example.org"), "1Z999AA10123456784")
    guest_token_grant(order, "the-guest-token")
    assert "guest@example.org" in _mail_text(mail_dir)

    # when the guest erases the order's personal data
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(
            f"/api/v1/orders/{order.ref}/personal-data", HTTP_X_ORDER_TOKEN="the-guest-token"
        )

    # then nothing of it is left in the mail files (each file only held the guest's: none is left)
    assert response.status_code == 200, response.json()
    assert list(mail_dir.iterdir()) == []


def test_the_retention_sweep_deletes_mail_files_a_week_old_and_keeps_newer_ones(
    mail_dir, django_capture_on_commit_callbacks
):
    # given a mail file last written eight days ago and one written six days ago
    mail_dir.mkdir()
    now = timezone.now()
    old, recent = mail_dir / "old.log", mail_dir / "recent.log"
    for path, age in ((old, timedelta(days=8)), (recent, timedelta(days=6))):
        path.write_text("To: someone@example.org\n\ntracking 1Z999AA10123456784\n" + "-" * 79 + "\n")
        written = (now - age).timestamp()
        os.utime(path, (written, written))

    # when the retention sweep runs
    with django_capture_on_commit_callbacks(execute=True):
        counts = retention.retention_sweep(now=now)

    # then the week-old file is deleted, the newer one kept, and the sweep says so
    assert sorted(path.name for path in mail_dir.iterdir()) == ["recent.log"]
    assert counts["mail_files_deleted"] == 1


def test_the_retention_sweep_leaves_the_mail_folder_to_the_processes_of_another_backend(
    settings, mail_dir, django_capture_on_commit_callbacks
):
    """Only the file backend's own processes purge its folder: the test command's end-to-end tests run demo
    processes that write into the folder this process is configured with, and are theirs to count."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail_dir.mkdir()
    old = mail_dir / "old.log"
    old.write_text("To: someone@example.org\n\nhello\n")
    written = (timezone.now() - timedelta(days=30)).timestamp()
    os.utime(old, (written, written))

    with django_capture_on_commit_callbacks(execute=True):
        counts = retention.retention_sweep()

    assert old.exists()
    assert "mail_files_deleted" not in counts
