"""Error codes of the audit module: the photo access gate and the auditors' review queue.

Their HTTP statuses are mapped in api/errors.py; the values are the API's public `code` strings.
"""

from __future__ import annotations

from enum import StrEnum


class AuditError(StrEnum):
    # Raised by the gate (lab/gate/access.py, which still spells them as strings until its rework lands).
    IMAGE_ACCESS_DENIED = "image_access_denied"  # the gate refused this purpose and context (details: rule)
    IMAGE_UNAVAILABLE = "image_unavailable"  # the photo was purged (its data key destroyed)
    AUDIT_UNAVAILABLE = (
        "audit_unavailable"  # the access could not be recorded, so it is refused (fail closed)
    )
    # The review queue.
    NOT_AN_AUDITOR = "not_an_auditor"
    NOTE_REQUIRED = "note_required"  # a sign-off needs a note
    REVIEW_ITEM_NOT_FOUND = "review_item_not_found"
    ALREADY_SIGNED_OFF = "already_signed_off"
    OWN_RECORD = "own_record"  # an auditor may not sign off a review item about their own access
