"""Domain errors: a stable machine-readable code (a member of its app's code enum) and a semantic kind.

Services raise these; which HTTP status a code answers with is decided in one table in api/errors.py, and
the staff pages turn them into messages. Codes used by several apps, or raised by lab.lib, are here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class CommonError(StrEnum):
    INVALID_TRANSITION = "invalid_transition"  # a state machine refused a move (details: from/to state)
    NOT_ALLOWED = "not_allowed"  # the person's role does not allow this action
    FILE_TOO_LARGE = "file_too_large"  # an upload or a fetched photo is over ASSET_MAX_BYTES
    # Outbound HTTP to a customer's URL (lab.lib.safe_http): the SSRF guard, then the fetch or the POST.
    URL_SCHEME_NOT_ALLOWED = "url_scheme_not_allowed"
    URL_INVALID = "url_invalid"
    URL_HOST_UNRESOLVABLE = "url_host_unresolvable"
    URL_TARGET_NOT_ALLOWED = "url_target_not_allowed"  # resolves to a private, loopback or link-local address
    URL_FETCH_STATUS = "url_fetch_status"  # the photo URL answered something other than 200
    URL_FETCH_FAILED = "url_fetch_failed"
    DELIVERY_FAILED = "delivery_failed"  # a customer's webhook endpoint could not be reached


class DomainError(Exception):
    """A refusal with a stable `code`; `details` go out with it (problem+json members, template context).

    The class is the kind of refusal (not found, gone, not allowed, conflict, upstream failure, or plainly
    an invalid request); the HTTP status is not the service's business (api/errors.py maps the code, the
    lab's own pages the kind: lab.gate.views.error_status).
    """

    def __init__(self, code: StrEnum, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class NotFound(DomainError):
    """The thing named does not exist, or is not the asker's (someone else's answers the same)."""


class Gone(DomainError):
    """The thing named existed and is gone for good (a purged photo: its data key is destroyed)."""


class MethodNotAllowed(DomainError):
    """The thing named is there, but is not served to this kind of request (another HTTP method)."""


class PermissionDenied(DomainError):
    """The person may not do this."""


class Conflict(DomainError):
    """The request is valid but conflicts with the current state of what it names."""


class InvalidTransition(Conflict):
    """A state machine refused a move; `code` is always `invalid_transition`."""

    def __init__(self, *, machine: str, from_state: str, to_state: str) -> None:
        super().__init__(
            CommonError.INVALID_TRANSITION,
            f"{machine} cannot move from {from_state} to {to_state}.",
            from_state=from_state,
            to_state=to_state,
        )


class UpstreamError(DomainError):
    """A service we depend on (Stripe, CUPS, the cache) failed or is not set up; a retry may succeed."""


class Unavailable(UpstreamError):
    """Something the request cannot go without is down for now (the audit log cannot be written), so it is
    refused rather than done halfway; a retry may succeed."""
