"""An address stored before the API refused what no e-mail can be sent to: its erasure still answers with
the receipts' links, and the receipts sweep goes on past it.

"x@" + 60 * "ä" + ".com" (an IDNA label over 63 characters) makes Django's sanitize_address raise
UnicodeError, a ValueError, in every send. Before, nothing caught it: the erasure, which mails its receipts
once it has committed, answered 500 (erased, and the customer without the links), and the receipts sweep
stopped at the first such receipt. The API now refuses such an address (tests/api/test_unencodable_emails.py);
these rows are written as the API wrote them before.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from lab.customer_data import receipts
from lab.customer_data.models import PrivacyReceipt
from lab.orders.models import Order
from tests.builders import PASSWORD, TO_PACKED, asset_for, new_customer, order_for, order_move
from tests.builders.guest_tokens import guest_token_grant

pytestmark = pytest.mark.django_db

UNENCODABLE = "x@" + 60 * "ä" + ".com"


def _shipped(order: Order) -> Order:
    order_move(order, *TO_PACKED)
    return order_move(
        order, "shipped", carrier="ups", tracking_number=f"1Z999AA1{order.pk:010d}", shipped_at=timezone.now()
    )


def _email_statuses() -> dict[str, tuple[str, int]]:
    return {
        ref: (status, attempts)
        for ref, status, attempts in PrivacyReceipt.objects.values_list(
            "order_ref", "email_status", "email_attempts"
        )
    }


def test_an_account_with_such_an_address_is_erased_and_answered_with_its_receipts(
    api, django_capture_on_commit_callbacks, mailoutbox
):
    # given a customer stored with that address, a shipped order and a photo never ordered
    customer = new_customer(email=UNENCODABLE)
    order = _shipped(order_for(customer))
    asset_for(customer, width=600, height=400)
    api.force_authenticate(customer)

    # when they erase their account (the receipts are mailed once it has committed)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("/api/v1/me", {"password": PASSWORD}, format="json")

    # then the answer carries both links; the one e-mail that lists them both is refused for good (no retry
    # can encode the address), so both receipts' e-mail failed
    assert response.status_code == 200, response.json()
    assert sorted(receipt["order_ref"] for receipt in response.json()["receipts"]) == ["", order.ref]
    assert _email_statuses() == {order.ref: ("failed", 1), "": ("failed", 1)}
    assert mailoutbox == []


def test_a_guest_order_with_such_an_address_is_erased_and_answered_with_its_receipt(
    api, django_capture_on_commit_callbacks, mailoutbox
):
    # given a shipped guest order stored with that address, and the guest's token
    order = _shipped(order_for(None, guest_email=UNENCODABLE))
    guest_token_grant(order, "the-guest-token")

    # when the guest erases it
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(
            f"/api/v1/orders/{order.ref}/personal-data", HTTP_X_ORDER_TOKEN="the-guest-token"
        )

    # then the answer carries the receipt's link, and its e-mail is marked refused
    assert response.status_code == 200, response.json()
    assert response.json()["receipt"]["order_ref"] == order.ref
    assert _email_statuses() == {order.ref: ("failed", 1)}
    assert mailoutbox == []


def test_the_receipts_sweep_goes_on_past_a_receipt_to_such_an_address(settings, mailoutbox):
    # given two shipped orders whose receipts' e-mails are owed (their messages were lost), the older one to
    # a customer stored with that address
    settings.NOTIFY_SWEEP_SECONDS = 60
    stored = _shipped(order_for(new_customer(email=UNENCODABLE)))
    later = _shipped(order_for(new_customer(email="ada@example.net")))
    for minutes, order in ((6, stored), (5, later)):
        receipt = receipts.receipt_issue(order=order, reason="shipped", mail=False)
        assert receipt is not None
        PrivacyReceipt.objects.filter(pk=receipt.pk).update(
            created_at=timezone.now() - timedelta(minutes=minutes)
        )

    # when the sweep runs
    counts = receipts.receipts_sweep()

    # then the later one is mailed, and the first is marked failed without stopping the sweep
    assert counts["emails_sent"] == 1
    assert [message.to for message in mailoutbox] == [["ada@example.net"]]
    assert _email_statuses() == {stored.ref: ("failed", 1), later.ref: ("sent", 1)}
