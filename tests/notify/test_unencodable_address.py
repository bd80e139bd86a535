"""An order e-mail to an address stored before the API refused what no e-mail can be sent to: refused for
good, naming no address, and the notifications sweep goes on past it.

"x@" + 60 * "ä" + ".com" (an IDNA label over 63 characters) makes Django's sanitize_address raise
UnicodeError, a ValueError, in every send. Before, it escaped `except OSError`: the notification stayed
`pending` under its claim, and the sweep stopped at it, every round, leaving the mails after it unsent.
"""

from __future__ import annotations

import traceback
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from lab.lib.mail import MailRefused
from lab.notify import services
from lab.notify.models import Notification
from lab.orders.models import Order, OrderEvent
from tests.builders import new_customer, order_for

pytestmark = pytest.mark.django_db

UNENCODABLE = "x@" + 60 * "ä" + ".com"


def _old_enough(order: Order) -> None:
    """The sweep leaves events younger than NOTIFY_SWEEP_SECONDS to their own task."""
    OrderEvent.objects.filter(order=order).update(created_at=timezone.now() - timedelta(minutes=5))


def test_a_mail_to_such_an_address_is_refused_naming_no_address():
    order = order_for(new_customer(email=UNENCODABLE))

    with pytest.raises(MailRefused) as refused:  # an OSError: the task's retries and the sweep apply
        services.notify_order_created(order_id=order.pk)

    logged = "".join(traceback.format_exception(refused.value)) + repr(refused.value)
    assert "message not encodable UnicodeError" in logged
    assert "ä" not in logged and refused.value.__context__ is None
    notification = Notification.objects.get(order=order)
    assert (notification.status, notification.send_attempts) == ("failed", 1)
    assert mail.outbox == []


def test_the_sweep_marks_it_failed_and_still_sends_the_next_one():
    # given two "order received" mails whose task messages were lost, the first to a customer stored with
    # that address
    stored = order_for(new_customer(email=UNENCODABLE))
    later = order_for(new_customer(email="ada@example.net"))
    for order in (stored, later):
        _old_enough(order)

    # when the sweep runs
    sent = services.notifications_sweep()

    # then the first is failed (tried again each sweep, as a refused mail is) and the second is sent
    assert sent == 1
    assert [message.to for message in mail.outbox] == [["ada@example.net"]]
    statuses = {
        order_id: (status, attempts)
        for order_id, status, attempts in Notification.objects.values_list(
            "order_id", "status", "send_attempts"
        )
    }
    assert statuses == {stored.pk: ("failed", 1), later.pk: ("sent", 1)}
