"""Domain errors with stable machine-readable codes.

Services raise these; the API turns them into RFC 9457 problem+json and the staff pages into messages.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal with a stable `code`; `status` is the HTTP status the API maps it to."""

    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details


class NotFound(DomainError):
    status = 404


class PermissionDenied(DomainError):
    status = 403


class Conflict(DomainError):
    status = 409


class InvalidTransition(Conflict):
    """A state machine refused a move; `code` is always `invalid_transition`."""

    def __init__(self, *, machine: str, from_state: str, to_state: str) -> None:
        super().__init__(
            "invalid_transition",
            f"{machine} cannot move from {from_state} to {to_state}.",
            from_state=from_state,
            to_state=to_state,
        )


class UpstreamError(DomainError):
    """A service we depend on (Stripe, CUPS) failed; the request may be retried."""

    status = 502
