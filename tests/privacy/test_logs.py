"""No personal data in any log line: a whole order, from registration to shipment, then export and erasure,
logged at DEBUG — the customer's name, e-mail, address lines and photo file name never appear."""

from __future__ import annotations

import logging

import pytest

from lab.notify.services import notify_order_created, notify_order_status_changed
from lab.orders.models import Order
from tests.builders import (
    PERSON,
    PERSON_PASSWORD,
    minilab,
    pack_and_ship,
    pay,
    place_order,
    print_order,
    register,
    upload,
)

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("stripe_api")  # orders are placed through the API: PaymentIntents
def test_a_full_order_run_logs_no_personal_data(api, caplog, django_capture_on_commit_callbacks, mailoutbox):
    caplog.set_level(logging.DEBUG)
    # Also the third-party loggers settings keep at WARNING: what they would say at DEBUG must be clean too.
    for name in ("django.db.backends", "stripe", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)

    register(api)
    asset_id = upload(api)
    order = place_order(api, asset_id=asset_id, key="logs-1")
    notify_order_created(order_id=order.pk)
    pay(order, event_id="evt_logs_1")
    minilab()
    print_order(order)
    pack_and_ship(order)
    for status in ("paid", "in_production", "ready_to_pack", "packed", "shipped"):
        notify_order_status_changed(order_id=order.pk, status=status)
    assert api.get("/api/v1/me/export").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete("/api/v1/me", {"password": PERSON_PASSWORD}, format="json").status_code == 200

    assert Order.objects.get(pk=order.pk).status == "shipped"
    # received, paid, shipped, and the erasure's privacy receipt (sent to the address read before the wipe)
    assert [message.to for message in mailoutbox] == [[PERSON.email]] * 4
    logged = "\n".join(
        [caplog.text]
        + [f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in caplog.records]
    ).lower()
    assert len(caplog.records) > 40
    assert [needle for needle in PERSON.needles if needle in logged] == []
    assert order.ref.lower() in logged  # ids are what log lines carry
