"""Order e-mails: one per transition, to the right person, with what they need; marketing needs an opt-in."""

from __future__ import annotations

import json
import logging
import time
import traceback
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.db.models import F
from django.utils import timezone

from lab.lib.errors import DomainError, NotFound
from lab.lib.mail import MailNotSent, MailRefused
from lab.notify import emails, services
from lab.notify.emails import tracking_url
from lab.notify.models import Notification, WebhookEndpoint, WebhookEvent
from lab.notify.selectors import marketing_recipients
from lab.notify.services import notify_order_created, notify_order_status_changed
from lab.orders.models import Order, OrderEvent
from lab.orders.stripe_events import webhook_event_handle
from lab.production.holds import order_hold, order_release_hold
from tests.builders import TO_PACKED, new_customer, order_for, order_move, person
from tests.support.http import stalled
from tests.support.mail import REFUSED_DOMAIN
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


def test_order_received_mail_goes_to_the_customer_with_items_and_total():
    customer = new_customer(email="ada@example.net")
    order = order_for(customer, copies=3)

    notify_order_created(order_id=order.pk)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.net"]
    assert message.from_email == "orders@printlab.example"
    assert message.subject == f"We received your order {order.ref}"
    assert '  3 x 4x6" Lustre print\n' in message.body
    assert "Total: 6.04 USD\n" in message.body
    assert "help@harbour.example" in message.body
    notification = Notification.objects.get(order=order)
    assert (notification.kind, notification.status, notification.send_attempts) == (
        "order_received",
        "sent",
        1,
    )


def test_guest_order_mail_goes_to_the_guest_address():
    order = order_for(None, guest_email="guest@example.org")

    notify_order_created(order_id=order.pk)

    assert [message.to for message in mail.outbox] == [["guest@example.org"]]


def test_paid_mail_confirms_the_amount_and_the_promised_day():
    order = order_for(new_customer(email="ada@example.net"), copies=2)
    order_move(order, "paid")

    notify_order_status_changed(order_id=order.pk, status="paid")

    message = mail.outbox[0]
    assert (message.to, message.subject) == (["ada@example.net"], f"Payment confirmed for order {order.ref}")
    assert f"your payment of 5.69 USD for order {order.ref} is confirmed" in message.body
    assert order.promised_by is not None
    assert f"by {order.promised_by:%A}, {order.promised_by.day} {order.promised_by:%B %Y}." in message.body


def test_on_hold_mail_says_what_is_needed():
    order = order_for(new_customer(email="ada@example.net"))
    order_move(order, "paid")
    order_hold(
        order_ref=order.ref,
        actor=person("technician"),
        message="Photo 1 is 240x160 px; please upload a larger original.",
    )

    notify_order_status_changed(order_id=order.pk, status="on_hold")

    message = mail.outbox[0]
    assert message.subject == f"Order {order.ref} is on hold: we need something from you"
    assert "\n\nPhoto 1 is 240x160 px; please upload a larger original.\n\n" in message.body


@pytest.mark.parametrize(
    ("carrier", "number", "link"),
    [
        ("ups", "1Z999AA10123456784", "https://www.ups.com/track?tracknum=1Z999AA10123456784"),
        (
            "usps",
            "9400100000000000000000",
            "https://tools.usps.com/go/TrackConfirmAction?tLabels=9400100000000000000000",
        ),
        ("fedex", "123456789012", "https://www.fedex.com/fedextrack/?trknbr=123456789012"),
        (
            "dhl",
            "1234567890",
            "https://www.dhl.com/global-en/home/tracking/tracking-express.html?submit=1&tracking-id=1234567890",
        ),
    ],
)
def test_shipped_mail_links_to_the_carriers_tracking_page(carrier, number, link):
    order = order_for(new_customer(email="ada@example.net"))
    order_move(order, *TO_PACKED)
    order_move(order, "shipped", carrier=carrier, tracking_number=number, shipped_at=timezone.now())

    notify_order_status_changed(order_id=order.pk, status="shipped")

    message = mail.outbox[0]
    assert message.subject == f"Order {order.ref} has shipped"
    assert f"Carrier: {carrier.upper()}\nTracking number: {number}\n" in message.body
    assert f"Track your parcel: {link}\n" in message.body


def test_tracking_links_escape_the_number_and_skip_unknown_carriers():
    assert (
        tracking_url(carrier=" UPS ", tracking_number="1Z 99&x")
        == "https://www.ups.com/track?tracknum=1Z%2099%26x"
    )
    assert tracking_url(carrier="pigeon", tracking_number="42") == ""
    assert tracking_url(carrier="ups", tracking_number=" ") == ""


def test_shipped_mail_with_an_unknown_carrier_has_no_link():
    order = order_for(new_customer())
    order_move(order, *TO_PACKED)
    order_move(order, "shipped", carrier="Local courier", tracking_number="LC-77")

    notify_order_status_changed(order_id=order.pk, status="shipped")

    assert "Tracking number: LC-77\n" in mail.outbox[0].body
    assert "Track your parcel" not in mail.outbox[0].body


def test_cancelled_mail_of_a_refunded_order_mentions_the_refund():
    order = order_for(new_customer(email="ada@example.net"), copies=1)
    order_move(order, "paid")
    order_move(order, "cancelled", payment_status="refunded")

    notify_order_status_changed(order_id=order.pk, status="cancelled")

    message = mail.outbox[0]
    assert message.subject == f"Order {order.ref} is cancelled"
    assert "We refunded 5.34 USD to your card." in message.body
    assert "No payment was taken" not in message.body


def test_cancelled_mail_of_an_unpaid_order_does_not_deny_a_payment_it_may_not_know_of():
    order = order_for(new_customer())
    order_move(order, "cancelled")

    notify_order_status_changed(order_id=order.pk, status="cancelled")

    # A payment whose Stripe event is late or lost is found and refunded after the cancel
    # (lab/orders/payments.py payment_intent_cancel): before, this said "No payment was taken for this order."
    # to a charged customer.
    body = " ".join(mail.outbox[0].body.split())
    assert "We have not received a payment for this order." in body
    assert "payment is refunded automatically, and we write to you when it is." in body
    assert "No payment was taken" not in body
    assert "We refunded" not in body


def _refund_recorded(order: Order, kind: str = "refunded") -> None:
    """Stripe confirmed the decided refund (lab/orders/payment_refunds.py `_refunded`)."""
    Order.objects.filter(pk=order.pk).update(payment_status=Order.PaymentStatus.REFUNDED)
    OrderEvent.objects.create(order=order, kind=kind, actor_kind="system")


def test_a_refund_decided_after_the_cancellation_mail_is_mailed_once():
    # given an unpaid order cancelled and its customer told so; then its payment is found (its Stripe event
    # was lost), its refund decided and made
    order = order_for(new_customer(email="ada@example.net"))
    order_move(order, "cancelled")
    notify_order_status_changed(order_id=order.pk, status="cancelled")
    Order.objects.filter(pk=order.pk).update(payment_status=Order.PaymentStatus.REFUND_PENDING)
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    _refund_recorded(order)
    _old_enough(order)
    mail.outbox.clear()

    # when the notifications sweep runs, twice (before, a refund was no status change and mailed nothing)
    services.notifications_sweep()
    services.notifications_sweep()

    # then the customer is told of the refund once, besides the "received" mail whose message was lost
    subjects = [message.subject for message in mail.outbox]
    assert subjects == [
        f"We received your order {order.ref}",
        f"Your payment for order {order.ref} is refunded",
    ]
    assert mail.outbox[1].to == ["ada@example.net"]
    assert "We have\nrefunded it to your card." in mail.outbox[1].body
    refund = Notification.objects.get(order=order, kind="order_refunded")
    assert (refund.status, refund.order_status) == ("sent", "")

    # when the refund failed at Stripe and was made again (a second `refunded` event), then no second mail
    _refund_recorded(order)
    _old_enough(order)
    services.notifications_sweep()
    assert len(mail.outbox) == 2
    assert list(
        Notification.objects.filter(order=order, kind="order_refunded").values_list("status", "skip_reason")
    ) == [("sent", ""), ("skipped", "refund_told")]


def test_a_refund_made_before_the_cancellation_mail_is_told_by_that_mail_only():
    # given a paid order cancelled: its refund decided in the cancel's transaction, and made by Stripe before
    # the cancellation e-mail went out
    order = order_for(new_customer(email="ada@example.net"))
    order_move(order, "paid")
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    order_move(order, "cancelled", payment_status=Order.PaymentStatus.REFUND_PENDING)
    _refund_recorded(order)
    _old_enough(order)
    notify_order_status_changed(order_id=order.pk, status="cancelled")
    assert "We refunded 6.04 USD to your card." in mail.outbox[0].body

    # when the sweep runs
    services.notifications_sweep()

    # then no second mail tells of it
    assert not any("refunded" in message.subject for message in mail.outbox)
    refund = Notification.objects.get(order=order, kind="order_refunded")
    assert (refund.status, refund.skip_reason) == ("skipped", "refund_told_with_cancel")


def test_a_refund_pending_at_the_cancellation_mail_is_mailed_once_it_is_made():
    # given a paid order cancelled while Stripe's refund was pending: the customer told "we are refunding"
    order = order_for(new_customer(email="ada@example.net"))
    order_move(order, "paid")
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    order_move(order, "cancelled", payment_status=Order.PaymentStatus.REFUND_PENDING)
    notify_order_status_changed(order_id=order.pk, status="cancelled")
    assert "We are refunding 6.04 USD to your card" in mail.outbox[0].body

    # when Stripe confirms the refund, and the sweep runs, twice
    _refund_recorded(order)
    Notification.objects.filter(order=order).update(claimed_at=timezone.now() - timedelta(minutes=10))
    OrderEvent.objects.filter(order=order, kind="refunded").update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    services.notifications_sweep()
    services.notifications_sweep()

    # then the customer is told once that it is made (before, the refund e-mail was skipped as told with the
    # cancel, whose e-mail had said "We refunded" before any refund was made)
    told = [message for message in mail.outbox if "refunded" in message.subject]
    assert [message.subject for message in told] == [f"Your payment for order {order.ref} is refunded"]
    assert "we have refunded 6.04 USD, your payment for the cancelled order" in " ".join(told[0].body.split())


def _refund_stamped(order: Order, *, off_the_claim: timedelta) -> None:
    """The refund's event as a web host whose clock is off the database's stamps it: `off_the_claim` from
    the cancellation mail's claim (written on the database's clock)."""
    claim = Notification.objects.get(order=order, kind="status_changed", order_status="cancelled")
    OrderEvent.objects.filter(order=order, kind="refunded").update(
        created_at=claim.claimed_at + off_the_claim
    )


def _all_aged(order: Order, by: timedelta = timedelta(minutes=5)) -> None:
    """`by` passes for the order's events and notifications alike: their times move back together, so what
    was stamped before what stays so."""
    OrderEvent.objects.filter(order=order).update(created_at=F("created_at") - by)
    Notification.objects.filter(order=order).update(claimed_at=F("claimed_at") - by)


def test_a_refund_stamped_by_a_host_behind_after_a_we_are_refunding_mail_is_mailed_once():
    # given a paid order cancelled while Stripe's refund was pending: the worker claims the cancellation mail
    # (on the database's clock) and tells the customer "we are refunding"; Stripe confirms the refund on a
    # web host whose clock runs 2 s behind, so its event is stamped before that claim
    order = order_for(new_customer(email="ada@example.net"))
    order_move(order, "paid")
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    order_move(order, "cancelled", payment_status=Order.PaymentStatus.REFUND_PENDING)
    notify_order_status_changed(order_id=order.pk, status="cancelled")
    assert "We are refunding 6.04 USD to your card" in mail.outbox[0].body
    _refund_recorded(order)
    _refund_stamped(order, off_the_claim=-timedelta(seconds=2))
    _all_aged(order)

    # when the sweep runs, twice
    services.notifications_sweep()
    services.notifications_sweep()

    # then the refund the cancellation mail promised word of is mailed once (before, the times said the
    # refund was made before that mail was written, and it was skipped as told with the cancel)
    told = [message for message in mail.outbox if "refunded" in message.subject]
    assert [message.subject for message in told] == [f"Your payment for order {order.ref} is refunded"]
    assert Notification.objects.get(order=order, kind="order_refunded").status == "sent"


def test_a_refund_stamped_by_a_host_ahead_before_a_we_refunded_mail_is_not_mailed_again():
    # given a paid order cancelled and its refund made, on a web host whose clock runs 2 s ahead, just before
    # the worker claims the cancellation mail, which says "We refunded"
    order = order_for(new_customer(email="ada@example.net"))
    order_move(order, "paid")
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    order_move(order, "cancelled", payment_status=Order.PaymentStatus.REFUND_PENDING)
    _refund_recorded(order)
    notify_order_status_changed(order_id=order.pk, status="cancelled")
    assert "We refunded 6.04 USD to your card." in mail.outbox[0].body
    _refund_stamped(order, off_the_claim=timedelta(seconds=2))
    _all_aged(order)

    # when the sweep runs
    services.notifications_sweep()

    # then no second mail tells of it (before, the refund's time after the claim read as "we are refunding")
    assert not any("refunded" in message.subject for message in mail.outbox)
    refund = Notification.objects.get(order=order, kind="order_refunded")
    assert (refund.status, refund.skip_reason) == ("skipped", "refund_told_with_cancel")


def test_a_refund_of_an_order_that_goes_on_mails_nothing():
    # given a paid order whose payment was refunded in Stripe's dashboard: it is held for a supervisor
    order = order_for(new_customer())
    order_move(order, "paid")
    _refund_recorded(order)
    _old_enough(order)

    # when the sweep runs, then no refund mail goes out
    services.notifications_sweep()
    assert not any("refunded" in message.subject for message in mail.outbox)
    refund = Notification.objects.get(order=order, kind="order_refunded")
    assert (refund.status, refund.skip_reason) == ("skipped", "refund_not_cancelled")


def test_order_mails_take_replies_at_the_lab_s_contact_address(settings):
    # given an order mailed on hold (which asks the customer to reply), received, and cancelled
    order = order_for(new_customer(email="ada@example.net"))
    notify_order_created(order_id=order.pk)
    order_move(order, "paid")
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which photo goes first?")
    notify_order_status_changed(order_id=order.pk, status="on_hold")
    order_move(order, "cancelled", payment_status=Order.PaymentStatus.REFUNDED)
    notify_order_status_changed(order_id=order.pk, status="cancelled")

    # then every reply goes to LAB_CONTACT, not to the no-reply sender (before: no Reply-To at all)
    assert len(mail.outbox) == 3
    assert "Please reply to this e-mail" in mail.outbox[1].body
    for message in mail.outbox:
        assert message.reply_to == [settings.LAB_CONTACT] == ["help@harbour.example"]
        assert message.message()["Reply-To"] == "help@harbour.example"


@pytest.mark.parametrize(
    ("contact", "reply_to"),
    [
        ("Harbour Print Lab <help@harbour.example>", ["Harbour Print Lab <help@harbour.example>"]),
        ("+1 555 0100", []),
        ("https://harbour.example/contact", []),
    ],
)
def test_a_lab_contact_that_is_no_address_sets_no_reply_to(settings, contact, reply_to):
    settings.LAB_CONTACT = contact
    order = order_for(new_customer())

    notify_order_created(order_id=order.pk)

    assert mail.outbox[0].reply_to == reply_to
    receipt = emails.receipt_email(
        recipient="ada@example.net",
        order_ref=order.ref,
        reason="shipped",
        url="https://x.example/r",
        key_id="k",
    )
    assert receipt.reply_to == reply_to


def test_statuses_without_mail_send_nothing_but_are_recorded():
    order = order_for(new_customer())
    order_move(order, "paid", "in_production")

    notify_order_status_changed(order_id=order.pk, status="in_production")

    assert mail.outbox == []
    notification = Notification.objects.get(order=order)
    assert (notification.status, notification.skip_reason) == ("skipped", "no_email_for_status")


def test_a_redelivered_task_sends_once():
    order = order_for(new_customer())
    order_move(order, "paid")

    notify_order_status_changed(order_id=order.pk, status="paid")
    notify_order_status_changed(order_id=order.pk, status="paid")
    notify_order_created(order_id=order.pk)
    notify_order_created(order_id=order.pk)

    assert [message.subject for message in mail.outbox] == [
        f"Payment confirmed for order {order.ref}",
        f"We received your order {order.ref}",
    ]
    assert Notification.objects.filter(order=order).count() == 2


def test_a_second_hold_with_a_new_question_sends_a_second_mail():
    order = order_for(new_customer())
    order_move(order, "paid")
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which photo goes first?")
    notify_order_status_changed(order_id=order.pk, status="on_hold")
    order_release_hold(order_ref=order.ref, actor=person("technician"))
    order_hold(order_ref=order.ref, actor=person("technician"), message="Photo 2 is blurred; keep it?")

    notify_order_status_changed(order_id=order.pk, status="on_hold")
    notify_order_status_changed(order_id=order.pk, status="on_hold")

    assert len(mail.outbox) == 2
    assert "Which photo goes first?" in mail.outbox[0].body
    assert "Photo 2 is blurred; keep it?" in mail.outbox[1].body


def test_an_erased_customer_gets_no_mail():
    customer = new_customer()
    order = order_for(customer)
    customer.erased_at = timezone.now()
    customer.save(update_fields=["erased_at"])

    notify_order_created(order_id=order.pk)

    assert mail.outbox == []
    notification = Notification.objects.get(order=order)
    assert (notification.status, notification.skip_reason) == ("skipped", "no_recipient")


def test_an_unreachable_mail_server_fails_the_task_and_its_retry_sends_once(settings):
    order = order_for(new_customer(email="ada@example.net"))
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there: connection refused

    with pytest.raises(OSError):
        notify_order_created(order_id=order.pk)
    failed = Notification.objects.get(order=order)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    notify_order_created(order_id=order.pk)
    notify_order_created(order_id=order.pk)

    assert (failed.status, failed.send_attempts) == ("failed", 1)
    assert [message.to for message in mail.outbox] == [["ada@example.net"]]
    failed.refresh_from_db()
    assert (failed.status, failed.send_attempts) == ("sent", 2)


def test_a_mail_server_that_takes_the_connection_and_never_answers_fails_the_send_in_seconds(settings):
    # A stalled mail server (its greeting never comes) held the task to its time limit, and the default queue
    # behind it; the lab's timeout (10 s by default, 1 s here) fails it like a refused connection.
    assert settings.EMAIL_TIMEOUT == 10
    settings.EMAIL_TIMEOUT = 1
    order = order_for(new_customer(email="ada@example.net"))
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    with stalled() as url:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", urlsplit(url).port
        started = time.monotonic()
        with pytest.raises(OSError):  # the task retries it with backoff, as for a refused connection
            notify_order_created(order_id=order.pk)

    assert time.monotonic() - started < 10
    assert Notification.objects.get(order=order).status == "failed"


def test_log_lines_name_ids_never_personal_data(caplog):
    order = order_for(new_customer(email="ada.quill@example.net", full_name="Ada Quill"))
    order_move(order, "paid")
    order_move(order, "on_hold", hold_message="Call Ada at 555-0100 about photo 3")
    caplog.set_level(logging.INFO, logger="lab.notify")

    notify_order_created(order_id=order.pk)
    notify_order_status_changed(order_id=order.pk, status="on_hold")

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert f"order={order.ref}" in text
    for personal in ("ada.quill@example.net", "Ada Quill", "555-0100", "Lens Lane"):
        assert personal not in text


def test_a_failed_send_raises_an_error_that_names_no_address(settings):
    """What a worker logs of a failed send is the exception and its traceback (Celery's retry and failure
    lines). smtplib's refusal names every recipient, and the server's answer quotes it again: before, a
    mistyped address was logged at each of the task's seven tries and stayed there after an erasure."""
    address = f"ada.quill{REFUSED_DOMAIN}"
    order = order_for(new_customer(email=address))
    settings.EMAIL_BACKEND = "tests.support.mail.RefusingEmailBackend"

    with pytest.raises(MailRefused) as refused:  # an OSError: the task still retries it
        notify_order_created(order_id=order.pk)

    logged = "".join(traceback.format_exception(refused.value)) + repr(refused.value)
    assert "SMTPRecipientsRefused 550" in logged
    assert address not in logged and "ada.quill" not in logged
    assert isinstance(refused.value, OSError) and refused.value.__context__ is None


def test_unknown_status_or_missing_transition_is_refused():
    order = order_for(new_customer())

    with pytest.raises(DomainError) as unknown:
        notify_order_status_changed(order_id=order.pk, status="teleported")
    with pytest.raises(NotFound) as missing:
        notify_order_status_changed(order_id=order.pk, status="shipped")

    assert (unknown.value.code, missing.value.code) == ("unknown_order_status", "order_event_not_found")
    assert mail.outbox == []
    assert Notification.objects.count() == 0


def test_marketing_recipients_are_only_opted_in_people_not_erased():
    opted_in = new_customer(marketing_opt_in=True)
    new_customer(marketing_opt_in=False)
    new_customer(marketing_opt_in=True, erased_at=timezone.now())
    new_customer(marketing_opt_in=True, is_active=False)
    order_for(new_customer(marketing_opt_in=False))  # a customer with orders is still not a news subscriber

    assert list(marketing_recipients()) == [opted_in]


def _old_enough(order: Order) -> None:
    """The sweep leaves events younger than NOTIFY_SWEEP_SECONDS to their own task."""
    OrderEvent.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=5))


def test_a_mail_whose_worker_died_after_claiming_it_is_sent_by_the_sweep_once_its_lease_ran_out():
    # given a "paid" notification claimed by a worker whose pool process was killed before it recorded
    # anything (Celery acknowledges such a task message: nothing will run it again)
    order = order_for(new_customer())
    order_move(order, "paid")
    event = OrderEvent.objects.get(order=order, to_status="paid")
    assert services._claim(order_event=event, kind=Notification.Kind.STATUS_CHANGED) is not None
    notify_order_created(order_id=order.pk)
    _old_enough(order)
    mail.outbox.clear()

    # when the sweep runs within the claim's lease, then it leaves the claim alone
    assert services.notifications_sweep() == 0
    assert mail.outbox == []

    # and once the lease has run out it sends the mail, once
    Notification.objects.filter(order_event=event).update(
        claimed_at=timezone.now() - services.CLAIM_LEASE - timedelta(seconds=1)
    )
    assert services.notifications_sweep() == 1
    assert services.notifications_sweep() == 0
    assert [message.subject for message in mail.outbox] == [f"Payment confirmed for order {order.ref}"]
    assert Notification.objects.get(order_event=event).status == "sent"


def test_a_mail_that_failed_past_its_retries_is_sent_by_the_sweep_and_a_refused_one_holds_up_no_other(
    settings,
):
    # given "order received" mails that failed (a mail server down longer than the task's retries), one of
    # them to an address the mail server will refuse for good
    *refused, first, second = (
        order_for(new_customer(email=address))
        for address in (
            f"gone{REFUSED_DOMAIN}",
            f"left{REFUSED_DOMAIN}",
            f"moved{REFUSED_DOMAIN}",
            "ada@example.net",
            "grace@example.net",
        )
    )
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there: connection refused
    for order in (*refused, first, second):
        with pytest.raises(OSError):
            notify_order_created(order_id=order.pk)
        _old_enough(order)
    assert set(Notification.objects.values_list("status", flat=True)) == {"failed"}

    # when the mail server is back and the sweep runs, then every mail goes out once but the refused ones,
    # which come first and stay `failed` without holding up the others
    settings.EMAIL_BACKEND = "tests.support.mail.RefusingEmailBackend"
    services.notifications_sweep()
    services.notifications_sweep()
    assert sorted(message.to[0] for message in mail.outbox) == ["ada@example.net", "grace@example.net"]
    statuses = dict(Notification.objects.values_list("order_id", "status"))
    assert statuses == {**{order.pk: "failed" for order in refused}, first.pk: "sent", second.pk: "sent"}


def test_a_sweep_sends_no_more_once_the_mail_server_failed_several_in_a_row(settings):
    orders = [order_for(new_customer()) for _ in range(5)]
    for order in orders:
        _old_enough(order)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()

    assert services.notifications_sweep() == 0

    # three tried and failed; the other two are claimed (for their webhooks) and wait for the next sweep
    notifications = Notification.objects.order_by("order_id").values_list("status", "send_attempts")
    assert list(notifications) == [("failed", 1)] * 3 + [("failed", 0)] * 2


def _mail_server_down(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there: connection refused


def _paid_with_a_webhook_endpoint() -> Order:
    """An order of a customer with a webhook endpoint, moved to paid; its task message was lost."""
    customer = new_customer(email="ada@example.net")
    WebhookEndpoint.objects.create(
        owner=customer,
        url="https://hooks.example.net/lab",
        secret="s" * 32,
        event_types=["order.status_changed"],
    )
    order = order_for(customer)
    order_move(order, "paid")
    _old_enough(order)
    return order


def test_a_sweep_while_the_mail_server_is_down_still_emits_the_webhooks_of_a_lost_status_change(settings):
    """While the mail server was down, the sweep retried the failed e-mails first, stopped after three
    failures, and never reached a lost status change: its webhooks, whose receivers were up, were not sent
    (and never, once past the sweep's 24 h)."""
    # given three "order received" mails that failed past their retries (the mail server is down)
    _mail_server_down(settings)
    for order in [order_for(new_customer()) for _ in range(3)]:
        with pytest.raises(OSError):
            notify_order_created(order_id=order.pk)
        _old_enough(order)
    # and an order moved to paid whose task message was lost, of a customer with a webhook endpoint
    paid = _paid_with_a_webhook_endpoint()

    # when the sweep runs with the mail server still down
    services.notifications_sweep()

    # then its order.status_changed webhook is emitted
    assert list(WebhookEvent.objects.filter(order=paid).values_list("event_type", flat=True)) == [
        "order.status_changed"
    ]

    # and once the mail server is back the next sweep sends its e-mail, and no second webhook
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    services.notifications_sweep()
    assert [m.subject for m in mail.outbox if m.to == ["ada@example.net"]].count(
        f"Payment confirmed for order {paid.ref}"
    ) == 1
    assert WebhookEvent.objects.filter(order=paid).count() == 1
    assert Notification.objects.get(order=paid, order_status="paid").status == "sent"


def test_a_sweep_that_judged_the_mail_server_down_goes_on_claiming_lost_events_for_their_webhooks(settings):
    # given four orders whose "received" messages were lost, then a lost status change with a webhook
    # endpoint, and the mail server down
    orders = [order_for(new_customer()) for _ in range(4)]
    for order in orders:
        _old_enough(order)
    paid = _paid_with_a_webhook_endpoint()
    _mail_server_down(settings)

    # when the sweep runs, then three sends fail and it sends no more, but still claims the rest
    assert services.notifications_sweep() == 0
    assert WebhookEvent.objects.filter(order=paid).count() == 1
    attempts = Notification.objects.order_by("order_event_id").values_list("status", "send_attempts")
    assert list(attempts) == [("failed", 1)] * 3 + [("failed", 0)] * 3

    # and the next sweep, with the mail server back, sends every e-mail once, and no webhook again
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert services.notifications_sweep() == 6
    assert services.notifications_sweep() == 0
    assert len(mail.outbox) == 6
    assert WebhookEvent.objects.filter(order=paid).count() == 1


def test_a_sweep_takes_the_events_never_claimed_before_the_failed_ones(settings, monkeypatch):
    """A failed e-mail owes only itself; an event never claimed also owes its webhooks: it goes first, so a
    backlog of failed e-mails (500 a sweep, 120 s) does not hold up webhooks."""
    # given an e-mail that failed, then a lost status change with a webhook endpoint, and a sweep with time
    # for one message
    _mail_server_down(settings)
    failed = order_for(new_customer())
    with pytest.raises(OSError):
        notify_order_created(order_id=failed.pk)
    _old_enough(failed)
    paid = _paid_with_a_webhook_endpoint()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    notify_order_created(order_id=paid.pk)  # its "received" went out; its "paid" message was lost
    monkeypatch.setattr(services, "SWEEP_TIME_BUDGET_SECONDS", 0.0)

    # when the sweep runs, then it takes up the lost status change first
    assert services.notifications_sweep() == 1
    assert WebhookEvent.objects.filter(order=paid).count() == 1
    assert Notification.objects.get(order=failed).status == "failed"


def test_a_hold_for_a_dispute_asks_the_customer_nothing():
    """A dispute (or a refund made at Stripe) holds the order for a supervisor, even a packed one. Before,
    its customer was e-mailed "we need something from you" with the staff's note ("a supervisor decides
    whether to cancel the order or go on"), and the order.status_changed webhook carried that note too."""
    customer = new_customer(email="ada@example.net")
    order = order_for(customer)
    order_move(order, *TO_PACKED)
    Order.objects.filter(pk=order.pk).update(payment_intent_id="pi_disputed", payment_status="succeeded")
    WebhookEndpoint.objects.create(
        owner=customer,
        url="https://hooks.example.net/lab",
        secret="s" * 32,
        event_types=["order.status_changed"],
    )
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "payment_intent": "pi_disputed",
        "amount": order.total_minor,
    }

    outcome = webhook_event_handle(
        event={"id": "evt_dispute", "type": "charge.dispute.created", "data": {"object": dispute}}
    )
    notify_order_status_changed(order_id=order.pk, status="on_hold")

    assert outcome == "held_for_payment"
    assert mail.outbox == []
    notification = Notification.objects.get(order=order, order_status="on_hold")
    assert notification.status == Notification.Status.SKIPPED
    (event,) = WebhookEvent.objects.filter(order=order)
    assert json.loads(event.body)["data"]["hold_message"] == ""


def test_a_hold_replaced_by_another_before_its_message_ran_mails_the_new_question_once():
    # given a hold the technician corrected (released and held again with a new question), whose first
    # message ran after the second hold (a backed-up queue)
    order = order_for(new_customer())
    order_move(order, "paid")
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which photo goes first?")
    order_release_hold(order_ref=order.ref, actor=person("technician"))
    order_hold(order_ref=order.ref, actor=person("technician"), message="Photo 2 is blurred; keep it?")

    # when both messages run, and the sweep after them
    notify_order_status_changed(order_id=order.pk, status="on_hold")
    notify_order_status_changed(order_id=order.pk, status="on_hold")
    _old_enough(order)
    services.notifications_sweep()

    # then the customer is asked the new question once (before: twice, the first hold's mail written with it)
    held = [message for message in mail.outbox if "is on hold" in message.subject]
    assert [message.body.count("Photo 2 is blurred; keep it?") for message in held] == [1]


def test_a_hold_over_before_its_message_ran_mails_nothing():
    # given a hold released before its message ran
    order = order_for(new_customer())
    order_move(order, "paid")
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which photo goes first?")
    order_release_hold(order_ref=order.ref, actor=person("technician"))

    # when its message runs late
    notify_order_status_changed(order_id=order.pk, status="on_hold")

    # then no "we need something from you" goes out with a blank question
    assert [m.subject for m in mail.outbox if "is on hold" in m.subject] == []
    assert Notification.objects.get(order_event__to_status="on_hold").skip_reason == "hold_over"


def test_a_hold_released_back_to_paid_does_not_confirm_the_payment_again():
    # given a paid order, its payment confirmed, held before its release and released
    order = order_for(new_customer())
    order_move(order, "paid")
    notify_order_status_changed(order_id=order.pk, status="paid")
    order_hold(order_ref=order.ref, actor=person("technician"), message="Which photo goes first?")
    order_release_hold(order_ref=order.ref, actor=person("technician"))

    # when the return to paid is notified
    notify_order_status_changed(order_id=order.pk, status="paid")

    # then "Payment confirmed" went out once
    assert [m.subject for m in mail.outbox if "Payment confirmed" in m.subject] == [
        f"Payment confirmed for order {order.ref}"
    ]


def test_a_sweep_out_of_time_leaves_the_rest_to_the_next_one(monkeypatch):
    """A backlog sent one by one to a slow mail server ran into the task's hard time limit, killed mid-send
    at every run; a sweep now takes no new message once its time is spent."""
    # given three orders whose "received" messages were lost, and a sweep with no time to spare
    orders = [order_for(new_customer()) for _ in range(3)]
    for order in orders:
        _old_enough(order)
    monkeypatch.setattr(services, "SWEEP_TIME_BUDGET_SECONDS", 0.0)

    # when the sweep runs three times, then each sends one message and the next takes up the rest
    assert [services.notifications_sweep() for _ in range(4)] == [1, 1, 1, 0]
    assert sorted(m.subject for m in mail.outbox) == sorted(f"We received your order {o.ref}" for o in orders)


def test_a_sweep_leaves_order_events_older_than_its_window_alone(settings):
    """The sweep notifies for 24 h: a failed e-mail is tried again each sweep until then, a lost status change
    is claimed until then; a days-old "payment confirmed" misleads more than it tells."""
    # given a "paid" e-mail that failed, and a lost status change of a customer with a webhook endpoint,
    # both of order events 25 h old
    failed = order_for(new_customer())
    order_move(failed, "paid")
    _mail_server_down(settings)
    with pytest.raises(OSError):
        notify_order_status_changed(order_id=failed.pk, status="paid")
    paid = _paid_with_a_webhook_endpoint()
    OrderEvent.objects.filter(order__in=[failed, paid]).update(
        created_at=timezone.now() - timedelta(hours=25)
    )

    # when the sweep runs with the mail server back
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert services.notifications_sweep() == 0

    # then it sends nothing, claims nothing and emits no webhook: the failed e-mail stays failed
    assert mail.outbox == []
    notifications = Notification.objects.values_list("order_id", "order_status", "status", "send_attempts")
    assert list(notifications) == [(failed.pk, "paid", "failed", 1)]
    assert WebhookEvent.objects.count() == 0


def test_a_send_that_goes_through_restarts_the_count_of_failed_sends_in_a_row(monkeypatch):
    """The sweep judges the mail server down after three sends failed one after another, not three in all."""
    # given six orders whose "received" messages were lost, and a mail server that fails every other send
    customers = [new_customer() for _ in range(6)]
    for customer in customers:
        _old_enough(order_for(customer))
    attempted: list[str] = []

    def every_other_send_fails(message: EmailMessage) -> None:
        attempted.append(message.to[0])
        if len(attempted) % 2:
            raise MailNotSent("connection refused")
        mail.outbox.append(message)

    monkeypatch.setattr(services, "mail_send", every_other_send_fails)

    # when the sweep runs, then every e-mail is tried (three failed, never three in a row) and three are sent
    assert services.notifications_sweep() == 3
    assert attempted == [customer.email for customer in customers]
    statuses = Notification.objects.order_by("order_id").values_list("status", "send_attempts")
    assert list(statuses) == [("failed", 1), ("sent", 1)] * 3
