"""An order and the retention purge of one of its photos: the order reads its photos locked, so a purge in
flight makes it wait, and once the photo is gone the order is refused with nothing stored."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from lab.catalog.demo import catalog_seed_demo
from lab.customer_data import photo_purge, retention_rules
from lab.orders.models import Asset, IdempotencyKey, Order
from tests.builders import UserFactory, asset_for, order_body
from tests.support.database_locks import until_another_session_waits

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_order_waits_for_the_purge_of_its_photo_and_is_refused_once_it_is_gone(api, monkeypatch):
    # given a customer's ready photo, and the retention purge of that photo holding its lock: paused just
    # after `asset_purge` locked the row, before it looks for orders that still need the photo
    catalog_seed_demo()
    customer = UserFactory.create()
    photo = asset_for(customer)
    locked = threading.Event()
    order_waited: list[bool] = []
    purged: list[bool] = []
    orders_using_locked: Callable[[Asset], list[Order]] = photo_purge._orders_using_locked

    def orders_using_locked_after_the_order_waits(asset: Asset) -> list[Order]:
        locked.set()
        order_waited.append(until_another_session_waits())
        return orders_using_locked(asset)

    def purge() -> None:
        try:
            purged.append(
                photo_purge.asset_purge(
                    asset_id=photo.pk, rule=retention_rules.RULE_NEVER_ORDERED, cutoffs=None
                )
            )
        finally:
            connection.close()

    monkeypatch.setattr(photo_purge, "_orders_using_locked", orders_using_locked_after_the_order_waits)
    purger = threading.Thread(target=purge)
    purger.start()
    assert locked.wait(timeout=10)
    api.force_authenticate(customer)

    # when the customer orders a print of it
    response: Any = api.post("/api/v1/orders", order_body(photo), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    purger.join()

    # then the order waited for the purge, which went through, and was refused: the photo is gone
    assert order_waited == [True]
    assert purged == [True]
    assert (response.status_code, response.json()["code"]) == (409, "asset_not_ready")
    assert Asset.objects.get(pk=photo.pk).status == Asset.Status.PURGED
    assert (Order.objects.count(), IdempotencyKey.objects.count()) == (0, 0)
