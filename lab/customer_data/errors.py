"""Error codes of a customer's data over its life: erasure, the retention purge of photos, privacy receipts.

Their HTTP statuses are mapped in api/errors.py; the values are the API's public `code` strings.
"""

from __future__ import annotations

from enum import StrEnum


class CustomerDataError(StrEnum):
    ERASURE_BLOCKED_BY_OPEN_ORDERS = "erasure_blocked_by_open_orders"  # details: the orders still open
    # Stripe could not say whether an unpaid order's payment has reached it: nothing erased, retry later.
    ERASURE_PAYMENT_CHECK_UNAVAILABLE = "erasure_payment_check_unavailable"  # details: the order
    STAFF_ACCOUNT_NOT_ERASABLE = "staff_account_not_erasable"  # an administrator closes staff accounts
    ALREADY_ERASED = "already_erased"
    ERASE_THE_ACCOUNT = "erase_the_account"  # an account's order is erased with the account (DELETE me)
    ASSET_STILL_NEEDED = "asset_still_needed"  # a purge refused: an order may still print the photo
    RECEIPT_NOT_FOUND = "receipt_not_found"  # not there, or neither the owner nor the link's token asks
