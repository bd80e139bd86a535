"""Upgrading to sealed guest tokens (migration orders/0015): the bare SHA-256 each guest order held is sealed
with its ref, so the token the lab issued before the upgrade still opens its order; a bare hash written
after it (in the database) opens nothing."""

from __future__ import annotations

import pytest

from lab.lib.errors import NotFound
from lab.orders.guest_tokens import guest_token_hash
from lab.orders.models import Order
from lab.orders.selectors import order_access_check
from tests.builders import order_for
from tests.support.dba import dba
from tests.support.migrations import leaf_migrations, migrate_to

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("orders", "0014_erased_rows_blanked")]


def _opens(order: Order, token: str) -> bool:
    try:
        order_access_check(order=Order.objects.get(pk=order.pk), user=None, guest_token=token)
    except NotFound:
        return False
    return True


def test_a_guest_token_issued_before_the_upgrade_still_opens_its_order_and_a_bare_hash_after_it_does_not():
    latest = leaf_migrations("orders")
    issued = order_for(None, guest_email="guest@example.org")
    untokened = order_for(None, guest_email="other@example.org")
    migrate_to(BEFORE)
    try:
        # As the lab stored a guest's token before 0015: its bare SHA-256.
        dba(
            "UPDATE orders_order SET guest_token_hash = %s WHERE id = %s",
            guest_token_hash("issued-before"),
            issued.pk,
        )
    finally:
        migrate_to(latest)

    # the token issued before the upgrade still opens its order, another token does not
    assert (_opens(issued, "issued-before"), _opens(issued, "another")) == (True, False)
    assert Order.objects.get(pk=untokened.pk).guest_token_hash == ""
    assert not _opens(untokened, "")

    # a bare hash written after the upgrade (by a DBA, or a previous version's web process) opens nothing
    dba("UPDATE orders_order SET guest_token_hash = %s WHERE id = %s", guest_token_hash("planted"), issued.pk)
    assert (_opens(issued, "planted"), _opens(issued, "issued-before")) == (False, False)
