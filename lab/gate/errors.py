"""Error codes of the gate app: the photo access gate (lab/gate/access.py) and the auditors' review queue.

Their HTTP statuses are mapped in api/errors.py; the values are the API's public `code` strings.
"""

from __future__ import annotations

from enum import StrEnum


class GateError(StrEnum):
    # The photo gate: each refusal is recorded, with its rule in the details.
    IMAGE_ACCESS_DENIED = "image_access_denied"  # refused for this person, purpose and context (the rule)
    IMAGE_NOT_FOUND = "image_not_found"  # no photo view at this path or variant (unknown_variant/_path)
    # A photo request another site started (Sec-Fetch-Site): refused unrecorded, the person did not make it.
    REQUEST_FROM_ANOTHER_SITE = "request_from_another_site"
    IMAGE_METHOD_NOT_ALLOWED = "image_method_not_allowed"  # a photo URL asked with another method than GET
    IMAGE_UNAVAILABLE = "image_unavailable"  # the photo was purged (its data key destroyed)
    ORDER_ITEM_NOT_FOUND = "order_item_not_found"  # a proof of an item position the order does not have
    AUDIT_UNAVAILABLE = (
        "audit_unavailable"  # the access could not be recorded, so it is refused (fail closed)
    )
    # The review queue.
    NOT_AN_AUDITOR = "not_an_auditor"
    NOTE_REQUIRED = "note_required"  # a sign-off needs a note
    REVIEW_ITEM_NOT_FOUND = "review_item_not_found"
    ALREADY_SIGNED_OFF = "already_signed_off"
    REVIEW_DAY_NOT_OVER = "review_day_not_over"  # a day's review is queued by hand only once the day is over
    OWN_RECORD = "own_record"  # an auditor may not sign off a review item about their own access
