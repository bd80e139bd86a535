"""Error codes of the packing station: scanning, counting, packing, shipping and packing slips.

Their HTTP statuses are mapped in api/errors.py; the staff pages show these refusals as messages.
"""

from __future__ import annotations

from enum import StrEnum


class PackingError(StrEnum):
    NOT_AN_ORDER_CODE = "not_an_order_code"  # what was scanned or typed is not an order ref (PL-…)
    ORDER_NOT_READY_TO_PACK = "order_not_ready_to_pack"  # not ready to pack (or, for a slip, has none yet)
    ITEM_NOT_FOUND = "item_not_found"
    # A count or a pack posted without the token of the page it was made from (what the packer saw).
    PAGE_TOKEN_REQUIRED = "page_token_required"
    COUNT_MISMATCH = "count_mismatch"  # the packer's count is not the item's copies; nothing confirmed
    COPIES_NOT_PRINTED = "copies_not_printed"  # fewer printed copies than the item needs
    ITEMS_NOT_CONFIRMED = "items_not_confirmed"  # every item's count is confirmed before packing
    ORDER_NOT_PACKED = "order_not_packed"  # only a packed order is shipped
    INVALID_CARRIER = "invalid_carrier"  # not one of the carriers the lab ships with
    # A pickup order offered to a carrier (with a tracking number the customer would be mailed as theirs).
    COLLECTED_AT_THE_COUNTER = "collected_at_the_counter"
    SHIPS_BY_CARRIER = "ships_by_carrier"  # a delivery order handed over at the counter
    INVALID_TRACKING_NUMBER = "invalid_tracking_number"  # also: an order's code scanned in its place
    TRACKING_NUMBER_IN_USE = "tracking_number_in_use"  # already another order's: that label is another box's
    SLIP_NO_LONGER_SERVED = "slip_no_longer_served"  # shipped longer ago than PACKING_SHIPPED_SLIP_HOURS
    NO_ORDERS_TO_PACK = "no_orders_to_pack"  # the day's slips were asked for with no order ready
    # The shipping address was written in the database, not by the lab: no slip (the box's label) for it.
    ADDRESS_CHANGED_OUTSIDE_THE_LAB = "address_changed_outside_the_lab"
