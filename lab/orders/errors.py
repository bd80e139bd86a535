"""Error codes of orders: photo intake, quotes, order creation, cancellation and Stripe payments.

Their HTTP statuses are mapped in api/errors.py; the values are the API's public `code` strings.
"""

from __future__ import annotations

from enum import StrEnum


class OrderError(StrEnum):
    ORDER_NOT_FOUND = "order_not_found"  # also someone else's order: it answers the same
    ORDER_NOT_CANCELLABLE = (
        "order_not_cancellable"  # its status allows no cancel (production started, or over)
    )
    # A shipping address change (PATCH orders/{ref}): the box is at the packing stage or gone, or the order
    # is cancelled (or its address was written outside the lab); a pickup order ships to no address.
    ORDER_ADDRESS_LOCKED = "order_address_locked"
    PICKUP_ORDER_HAS_NO_ADDRESS = "pickup_order_has_no_address"
    # Photos: intake, checked by decoding the whole image.
    ASSET_NOT_FOUND = "asset_not_found"  # also someone else's photo, or a guest photo another order used
    ASSET_NOT_READY = "asset_not_ready"  # still being fetched, failed, or purged
    PHOTO_STORE_UNAVAILABLE = "photo_store_unavailable"  # the photo store refused the write (full, failing)
    # The photo store's free space is at its reserve (LAB_STORAGE_RESERVE_MB), kept for rasters of paid orders
    # and the rest: new photos wait (details: retry_after_seconds).
    STORAGE_FULL = "storage_full"
    CHECKSUM_MISMATCH = "checksum_mismatch"  # the bytes do not match the md5/sha256 the client sent
    EMPTY_FILE = "empty_file"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"  # truncated, or fails to decode
    UNSUPPORTED_FORMAT = "unsupported_format"  # not JPEG, PNG, TIFF or HEIC
    UNSUPPORTED_COLOR_MODE = "unsupported_color_mode"
    DECOMPRESSION_BOMB = "decompression_bomb"  # more pixels than ASSET_MAX_PIXELS
    ICC_PROFILE_TOO_LARGE = "icc_profile_too_large"  # an embedded profile over ASSET_MAX_ICC_PROFILE_BYTES
    # A TIFF of several pages, an APNG of several frames, a HEIC of several top-level images: only the
    # first would print.
    IMAGE_HAS_SEVERAL_FRAMES = "image_has_several_frames"
    GPS_NOT_REMOVABLE = "gps_not_removable"  # location data where it cannot be removed in place
    # More JPEG segments, PNG chunks or TIFF strip/tile offsets than any photo has: each is walked in Python.
    TOO_MANY_METADATA_ITEMS = "too_many_metadata_items"
    # Quotes and order creation.
    EMPTY_ORDER = "empty_order"
    UNKNOWN_SKU = "unknown_sku"
    MIXED_CURRENCY = "mixed_currency"
    CURRENCY_NOT_SOLD = "currency_not_sold"  # a product priced in another currency than LAB_CURRENCY
    ORDER_TOTAL_TOO_LARGE = "order_total_too_large"  # over the largest amount one card payment can take
    ORDER_TOTAL_TOO_SMALL = "order_total_too_small"  # under the smallest amount one card payment can take
    GUEST_DETAILS_REQUIRED = "guest_details_required"  # an anonymous order without `guest`
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # the same key with a different request body
    # Payments (Stripe).
    PAYMENTS_NOT_CONFIGURED = "payments_not_configured"  # no Stripe keys on this lab
    PAYMENT_PROVIDER_UNAVAILABLE = "payment_provider_unavailable"  # the order is kept; retry with the key
    REFUND_FAILED = "refund_failed"  # the refund is decided and left pending for the retry sweep
    INVALID_SIGNATURE = "invalid_signature"  # a Stripe webhook's signature is missing, stale or wrong
    INVALID_PAYLOAD = "invalid_payload"  # a signed webhook body that is not JSON
    MALFORMED_EVENT = "malformed_event"  # signed JSON that is not a usable Stripe event
