"""The station's packing slip is served under the order's lock, its status read again there: an order taken
off the station between the scan's read and the lock (a hold, a reprint sent back to the floor) gets no slip,
and its customer may still change the address (`slip_served_at` unset)."""

from __future__ import annotations

from typing import Any

import pytest

from lab.lib.errors import Conflict
from lab.orders.models import Order
from lab.orders.states import OrderStatus
from lab.packing import scanning, station
from lab.packing.errors import PackingError
from tests.builders import hotfolder_printer, person, ready_to_pack_order

pytestmark = pytest.mark.django_db


def test_an_order_held_between_the_scans_read_and_the_lock_gets_no_slip(monkeypatch: pytest.MonkeyPatch):
    # given an order ready to pack, held by a supervisor (committed) just after the station's scan read it
    hotfolder_printer("minilab", sizes=["4x6"])
    order = ready_to_pack_order(lines=[("PRINT-4X6-LUSTRE", 1)])
    scanned = scanning.order_in

    def held_after_the_read(**kwargs: Any) -> Order:
        found = scanned(**kwargs)
        Order.objects.filter(pk=found.pk).update(status=OrderStatus.ON_HOLD)
        return found

    monkeypatch.setattr(station, "order_in", held_after_the_read)

    # when the packer asks for its slip, then it is refused under the lock, and nothing is recorded served (a
    # mutation review: without the status read again under the lock, the slip of a held order was served)
    with pytest.raises(Conflict) as refused:
        station.slip_pdf(code=order.ref, actor=person("packer"))
    assert refused.value.code == PackingError.ORDER_NOT_READY_TO_PACK
    assert Order.objects.get(pk=order.pk).slip_served_at is None
