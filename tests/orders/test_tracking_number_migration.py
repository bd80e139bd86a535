"""Upgrading to one-parcel-one-order (migration orders/0009): a database holding two orders shipped under
one tracking number (the packing station allowed it before) stops the upgrade with their refs, not with a
bare unique violation; once a person corrected them, it goes through."""

from __future__ import annotations

import pytest

from lab.orders.models import Order
from tests.builders.orders import order_for, order_move
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("orders", "0008_order_address_sealed")]
LABEL = "1Z999AA10000000042"


def test_orders_sharing_a_tracking_number_stop_the_upgrade_with_their_refs() -> None:
    latest = leaf_migrations("orders")
    # Made with today's model, before the schema goes back: the model writes columns added after 0008.
    shipped = [order_move(order_for(None), "paid", "in_production", "ready_to_pack") for _ in range(2)]
    migrate_to(BEFORE)
    try:
        # one parcel, the second time typed as it is printed, grouped
        Order.objects.filter(pk=shipped[0].pk).update(tracking_number=LABEL)
        Order.objects.filter(pk=shipped[1].pk).update(tracking_number="1Z 999AA1 0000000042")

        with pytest.raises(RuntimeError, match="share a tracking number") as refused:
            migrate_to(latest)
        assert all(order.ref in str(refused.value) for order in shipped)

        Order.objects.filter(pk=shipped[1].pk).update(tracking_number="1Z999AA10000000043")
    finally:
        migrate_to(latest)  # the corrected database upgrades; a failed test leaves the schema current too
    assert Order.objects.filter(tracking_number=LABEL).count() == 1
