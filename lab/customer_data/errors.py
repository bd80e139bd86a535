"""Error codes of a customer's data over its life: erasure and the retention purge of photos.

Their HTTP statuses are mapped in api/errors.py; the values are the API's public `code` strings.
"""

from __future__ import annotations

from enum import StrEnum


class CustomerDataError(StrEnum):
    ERASURE_BLOCKED_BY_OPEN_ORDERS = "erasure_blocked_by_open_orders"  # details: the orders still open
    STAFF_ACCOUNT_NOT_ERASABLE = "staff_account_not_erasable"  # an administrator closes staff accounts
    ALREADY_ERASED = "already_erased"
    ASSET_STILL_NEEDED = "asset_still_needed"  # a purge refused: an order may still print the photo
