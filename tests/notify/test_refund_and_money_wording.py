"""What the customer's e-mails say of money: a refund is "refunded" only once Stripe made it, and amounts are
written with their currency's own minor-unit digits (ISO 4217)."""

from __future__ import annotations

import pytest
from django.core import mail

from lab.lib.currency import minor_unit_digits
from lab.notify import emails
from lab.notify.services import notify_order_status_changed
from lab.orders.models import Order, OrderEvent
from tests.builders import new_customer, order_for, order_move


@pytest.mark.django_db
def test_the_cancellation_mail_of_a_refund_not_yet_made_says_it_is_being_made():
    # given a paid order cancelled whose refund Stripe has not made (pending, or refused and left to a person)
    order = order_for(new_customer(email="ada@example.net"), copies=1)
    order_move(order, "paid")
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    order_move(order, "cancelled", payment_status=Order.PaymentStatus.REFUND_PENDING)

    # when its cancellation e-mail goes out
    notify_order_status_changed(order_id=order.pk, status="cancelled")

    # then it tells of a refund under way, and that another e-mail follows (before: "We refunded 5.34 USD")
    body = " ".join(mail.outbox[0].body.split())
    assert (
        "We are refunding 5.34 USD to your card, and we write to you again when the refund is made." in body
    )
    assert "We refunded" not in body
    assert "We have not received a payment" not in body


@pytest.mark.django_db
def test_the_cancellation_mail_of_a_refund_made_says_it_was_made():
    order = order_for(new_customer(email="ada@example.net"), copies=1)
    order_move(order, "paid")
    order_move(order, "cancelled", payment_status=Order.PaymentStatus.REFUNDED)

    notify_order_status_changed(order_id=order.pk, status="cancelled")

    body = " ".join(mail.outbox[0].body.split())
    assert "We refunded 5.34 USD to your card." in body
    assert "We are refunding" not in body


@pytest.mark.django_db
def test_the_refund_mail_of_a_refund_announced_with_the_cancel_says_it_is_now_made():
    # given a paid order cancelled with its refund pending (told "we are refunding"), then made at Stripe
    order = order_for(new_customer(email="ada@example.net"), copies=1)
    order_move(order, "paid")
    OrderEvent.objects.create(order=order, kind="refund_decided", actor_kind="system")
    order_move(order, "cancelled", payment_status=Order.PaymentStatus.REFUNDED)

    # when its refund e-mail is written, then it does not say the payment came after the cancel
    body = " ".join(emails.order_email(order=order, kind=emails.REFUNDED).body.split())
    assert (
        f"we have refunded 5.34 USD, your payment for the cancelled order {order.ref}, to your card." in body
    )
    assert "after the cancellation" not in body


@pytest.mark.parametrize(
    ("amount_minor", "currency", "written"),
    [
        (10000, "kwd", "10.000 KWD"),  # before: "100.00 KWD", a tenfold overstatement
        (1234, "bhd", "1.234 BHD"),
        (1500, "jpy", "1500 JPY"),
        (1500, "pyg", "1500 PYG"),  # before: "15.00 PYG", missing from the hand-made zero-decimal list
        (1500, "rwf", "1500 RWF"),
        (1500, "xpf", "1500 XPF"),
        (534, "usd", "5.34 USD"),
        (5, "eur", "0.05 EUR"),
        (17500, "HUF", "175.00 HUF"),
    ],
)
def test_amounts_are_written_with_their_currency_s_minor_unit_digits(amount_minor, currency, written):
    assert emails.money_format(amount_minor=amount_minor, currency=currency) == written


def test_the_minor_unit_table_follows_iso_4217():
    assert [minor_unit_digits(code) for code in ("usd", "jpy", "kwd", "clf", "Krw ")] == [2, 0, 3, 4, 0]
